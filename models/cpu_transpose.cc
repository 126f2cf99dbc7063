// A 2-D transpose out[C, R] = in[R, C] of 2- or 4-byte elements on CPU, as an XLA FFI handler
// for models/cpu_transpose.py.
//
// In 16 x 16 blocks transposed in vector registers (a butterfly of shuffles); panels of 32 rows
// are the tasks on XLA's own thread pool. Built for AVX-512, AVX2 and the baseline ISA, the best
// of which is picked when the library loads (target_clones).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "ffi_parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

#pragma GCC optimize("O3")

namespace {

#define LAMINA_ISAS __attribute__((target_clones("avx512f", "avx2", "default")))

constexpr int64_t kBlock = 16;

// 16 lanes of T; GCC lowers the shuffles below to the ISA's permutes.
typedef uint16_t Lanes16 __attribute__((vector_size(16 * sizeof(uint16_t))));
typedef uint32_t Lanes32 __attribute__((vector_size(16 * sizeof(uint32_t))));
template <typename T>
struct LanesOf;
template <>
struct LanesOf<uint16_t> {
  using Type = Lanes16;
};
template <>
struct LanesOf<uint32_t> {
  using Type = Lanes32;
};
template <typename T>
using Lanes = typename LanesOf<T>::Type;

// One butterfly step of a 16 x 16 transpose: rows a and b = a + K trade their off-diagonal
// K x K blocks. After K = 8, 4, 2, 1 the rows hold the columns.
template <int K, typename V, size_t... J>
inline void Swap(V& a, V& b, std::index_sequence<J...>) {
  const V low = __builtin_shufflevector(a, b, ((J & K) == 0 ? J : 16 + J - K)...);
  const V high = __builtin_shufflevector(a, b, ((J & K) == 0 ? J + K : 16 + J)...);
  a = low, b = high;
}

template <int K, typename V>
inline void Stage(V (&rows)[16]) {
  for (int i = 0; i < 16; ++i) {
    if ((i & K) == 0) Swap<K>(rows[i], rows[i + K], std::make_index_sequence<16>());
  }
}

// out[c][r] = in[r][c] for one 16 x 16 block at (r0, c0), whole or partial.
template <typename T>
LAMINA_ISAS void Block(const T* __restrict in, T* __restrict out, int64_t rows, int64_t cols, int64_t r0, int64_t c0) {
  const int64_t height = std::min(kBlock, rows - r0), width = std::min(kBlock, cols - c0);
  if (height < kBlock || width < kBlock) {
    for (int64_t r = 0; r < height; ++r) {
      for (int64_t c = 0; c < width; ++c) out[(c0 + c) * rows + r0 + r] = in[(r0 + r) * cols + c0 + c];
    }
    return;
  }
  Lanes<T> block[16];
  for (int r = 0; r < 16; ++r) std::memcpy(&block[r], in + (r0 + r) * cols + c0, sizeof(Lanes<T>));
  Stage<8>(block), Stage<4>(block), Stage<2>(block), Stage<1>(block);
  for (int c = 0; c < 16; ++c) std::memcpy(out + (c0 + c) * rows + r0, &block[c], sizeof(Lanes<T>));
}

// A panel of 32 rows: each column block writes its two 16-row halves back to back, so every
// output line gets 64 bytes (a whole cache line of bf16) at once.
constexpr int64_t kPanel = 2 * kBlock;

template <typename T>
void Panel(const T* __restrict in, T* __restrict out, int64_t rows, int64_t cols, int64_t r0) {
  for (int64_t c0 = 0; c0 < cols; c0 += kBlock) {
    for (int64_t r = r0; r < std::min(rows, r0 + kPanel); r += kBlock) Block(in, out, rows, cols, r, c0);
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
