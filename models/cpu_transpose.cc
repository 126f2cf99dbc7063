// A 2-D transpose out[C, R] = in[R, C] of 2- or 4-byte elements on CPU, as an XLA FFI handler
// for models/cpu_transpose.py.
//
// In 16 x 16 blocks transposed in vector registers (models/ffi_vector.h); panels of 32 rows are
// the tasks on XLA's own thread pool.

#include <algorithm>
#include <cstdint>

#include "ffi_parallel.h"
#include "ffi_vector.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// A panel of 32 rows: each column block writes its two 16-row halves back to back, so every
// output line gets 64 bytes (a whole cache line of bf16) at once.
constexpr int64_t kPanel = 2 * lamina::kTransposeBlock;

template <typename T>
void Panel(const T* __restrict in, T* __restrict out, int64_t rows, int64_t cols, int64_t r0) {
  for (int64_t c0 = 0; c0 < cols; c0 += lamina::kTransposeBlock) {
    for (int64_t r = r0; r < std::min(rows, r0 + kPanel); r += lamina::kTransposeBlock) {
      lamina::TransposeBlock(in, cols, out, rows, rows, cols, r, c0);
    }
  }
}

template <typename T>
void Transpose(ffi::ThreadPool& pool, const ffi::AnyBuffer& in, ffi::AnyBuffer& out, int64_t rows, int64_t cols) {
  const T* from = static_cast<const T*>(in.untyped_data());
  T* to = static_cast<T*>(out.untyped_data());
  lamina::ParallelFor(pool, (rows + kPanel - 1) / kPanel,
                      [&](int64_t panel) { Panel(from, to, rows, cols, panel * kPanel); });
}

ffi::Error Transpose2D(ffi::ThreadPool pool, ffi::AnyBuffer in, ffi::Result<ffi::AnyBuffer> out) {
  const auto dims = in.dimensions(), out_dims = out->dimensions();
  if (dims.size() != 2 || out_dims.size() != 2 || out_dims[0] != dims[1] || out_dims[1] != dims[0] ||
      in.element_type() != out->element_type()) {
    return ffi::Error::InvalidArgument("cpu_transpose: in [R, C] and out [C, R] of one dtype");
  }
  const size_t bytes = in.size_bytes() / std::max<int64_t>(1, dims[0] * dims[1]);
  if (bytes == 2) {
    Transpose<uint16_t>(pool, in, *out, dims[0], dims[1]);
  } else if (bytes == 4) {
    Transpose<uint32_t>(pool, in, *out, dims[0], dims[1]);
  } else if (dims[0] * dims[1] != 0) {
    return ffi::Error::InvalidArgument("cpu_transpose: elements of 2 or 4 bytes only");
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminaTranspose2D, Transpose2D,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>());
