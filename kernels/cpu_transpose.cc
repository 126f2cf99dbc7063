// A 2-D transpose out[C, R] = in[R, C] of 2- or 4-byte elements on CPU, as an XLA FFI handler
// for kernels/cpu_transpose.py.
//
// In square blocks transposed in vector registers, a row per register (kernels/ffi_vector.h:
// 16 x 16 with AVX-512, 8 x 8 floats or 16 x 16 bf16 with AVX2), in the best build this CPU
// runs; panels of 32 rows are the tasks on XLA's own thread pool.

#include <algorithm>
#include <cstdint>

#include "ffi_parallel.h"
#include "ffi_vector.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

#pragma GCC optimize("O3")

namespace {

// A panel of 32 rows: each column block writes its row blocks back to back, so every output
// line gets 64 bytes (a whole cache line of bf16) at once.
constexpr int64_t kPanel = 32;

struct Job {
  const void* in;
  void* out;
  int64_t rows, cols;
  bool wide;  // 4-byte elements, else 2-byte
};

template <int kRegisterBytes, typename T>
void Panel(const Job& job, int64_t r0) {
  constexpr int kEdge = lamina::kTransposeEdge<kRegisterBytes, T>;
  const T* __restrict in = static_cast<const T*>(job.in);
  T* __restrict out = static_cast<T*>(job.out);
  for (int64_t c0 = 0; c0 < job.cols; c0 += kEdge) {
    for (int64_t r = r0; r < std::min(job.rows, r0 + kPanel); r += kEdge) {
      lamina::TransposeBlock<kEdge>(in, job.cols, out, job.rows, job.rows, job.cols, r, c0);
    }
  }
}

template <int kRegisterBytes>
void RunPanel(const Job& job, int64_t panel) {
  const int64_t r0 = panel * kPanel;
  job.wide ? Panel<kRegisterBytes, uint32_t>(job, r0) : Panel<kRegisterBytes, uint16_t>(job, r0);
}

LAMINA_TARGET_AVX512 void PanelAvx512(const Job& job, int64_t panel) { RunPanel<64>(job, panel); }
LAMINA_TARGET_AVX2 void PanelAvx2(const Job& job, int64_t panel) { RunPanel<32>(job, panel); }
LAMINA_TARGET_BASELINE void PanelBaseline(const Job& job, int64_t panel) { RunPanel<16>(job, panel); }

ffi::Error Transpose2D(ffi::ThreadPool pool, ffi::AnyBuffer in, ffi::Result<ffi::AnyBuffer> out) {
  const auto dims = in.dimensions(), out_dims = out->dimensions();
  if (dims.size() != 2 || out_dims.size() != 2 || out_dims[0] != dims[1] || out_dims[1] != dims[0] ||
      in.element_type() != out->element_type()) {
    return ffi::Error::InvalidArgument("cpu_transpose: in [R, C] and out [C, R] of one dtype");
  }
  const int64_t elements = dims[0] * dims[1];
  const size_t bytes = in.size_bytes() / std::max<int64_t>(1, elements);
  if (elements == 0) return ffi::Error::Success();
  if (bytes != 2 && bytes != 4) return ffi::Error::InvalidArgument("cpu_transpose: elements of 2 or 4 bytes only");
  const Job job{in.untyped_data(), out->untyped_data(), dims[0], dims[1], bytes == 4};
  const auto panel = lamina::BestBuild(PanelAvx512, PanelAvx2, PanelBaseline);
  lamina::ParallelFor(pool, (job.rows + kPanel - 1) / kPanel, [&](int64_t i) { panel(job, i); });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminaTranspose2D, Transpose2D,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>());
