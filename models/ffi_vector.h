// Vector code shared by lamina's FFI kernels (models/*.cc): the ISA clones every kernel is
// built as, and a 16 x 16 block transpose done in vector registers.

#ifndef LAMINA_MODELS_FFI_VECTOR_H_
#define LAMINA_MODELS_FFI_VECTOR_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

// AVX-512, AVX2 and baseline builds of a function; the best the CPU has is picked when the
// library loads. Callees must be inlined into it ([[gnu::always_inline]]) to get the ISA too.
#define LAMINA_ISAS __attribute__((target_clones("avx512f", "avx2", "default")))

#pragma GCC push_options
#pragma GCC optimize("O3")

namespace lamina {

// 16 lanes of T; GCC lowers the shuffles below to the ISA's permutes.
typedef uint16_t Lanes16 __attribute__((vector_size(16 * sizeof(uint16_t))));
typedef uint32_t Lanes32 __attribute__((vector_size(16 * sizeof(uint32_t))));
typedef float LanesF __attribute__((vector_size(16 * sizeof(float))));
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
template <>
struct LanesOf<float> {
  using Type = LanesF;
};
template <typename T>
using Lanes = typename LanesOf<T>::Type;

// One butterfly step of a 16 x 16 transpose: rows a and b = a + K trade their off-diagonal
// K x K blocks. After K = 8, 4, 2, 1 the rows hold the columns.
template <int K, typename V, size_t... J>
[[gnu::always_inline]] inline void Swap(V& a, V& b, std::index_sequence<J...>) {
  const V low = __builtin_shufflevector(a, b, ((J & K) == 0 ? J : 16 + J - K)...);
  const V high = __builtin_shufflevector(a, b, ((J & K) == 0 ? J + K : 16 + J)...);
  a = low, b = high;
}

template <int K, typename V>
[[gnu::always_inline]] inline void Stage(V (&rows)[16]) {
  for (int i = 0; i < 16; ++i) {
    if ((i & K) == 0) Swap<K>(rows[i], rows[i + K], std::make_index_sequence<16>());
  }
}

constexpr int64_t kTransposeBlock = 16;

// out[c][r] = in[r][c] for the block of rows [r0, r0 + 16) and columns [c0, c0 + 16), cut at
// rows x cols; rows of in are ld_in apart, rows of out ld_out apart.
template <typename T>
LAMINA_ISAS void TransposeBlock(const T* __restrict in, int64_t ld_in, T* __restrict out, int64_t ld_out,
                                int64_t rows, int64_t cols, int64_t r0, int64_t c0) {
  const int64_t height = std::min(kTransposeBlock, rows - r0), width = std::min(kTransposeBlock, cols - c0);
  if (height < kTransposeBlock || width < kTransposeBlock) {
    for (int64_t r = 0; r < height; ++r) {
      for (int64_t c = 0; c < width; ++c) out[(c0 + c) * ld_out + r0 + r] = in[(r0 + r) * ld_in + c0 + c];
    }
    return;
  }
  Lanes<T> block[16];
  for (int r = 0; r < 16; ++r) std::memcpy(&block[r], in + (r0 + r) * ld_in + c0, sizeof(Lanes<T>));
  Stage<8>(block), Stage<4>(block), Stage<2>(block), Stage<1>(block);
  for (int c = 0; c < 16; ++c) std::memcpy(out + (c0 + c) * ld_out + r0, &block[c], sizeof(Lanes<T>));
}

// out[c][r] = in[r][c] for r < rows, c < cols, a block at a time.
template <typename T>
void Transpose(const T* in, int64_t ld_in, T* out, int64_t ld_out, int64_t rows, int64_t cols) {
  for (int64_t r0 = 0; r0 < rows; r0 += kTransposeBlock) {
    for (int64_t c0 = 0; c0 < cols; c0 += kTransposeBlock) TransposeBlock(in, ld_in, out, ld_out, rows, cols, r0, c0);
  }
}

}  // namespace lamina

#pragma GCC pop_options

#endif  // LAMINA_MODELS_FFI_VECTOR_H_
