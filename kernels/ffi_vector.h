// Vector code shared by lamina's FFI kernels (kernels/*.cc): the ISAs a kernel is built for and
// the choice between them, vectors of any width, and block transposes done in vector registers.

#ifndef LAMINA_MODELS_FFI_VECTOR_H_
#define LAMINA_MODELS_FFI_VECTOR_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#pragma GCC push_options
#pragma GCC optimize("O3")

namespace lamina {

// The instruction sets a kernel templated on its vector width is compiled for, best last: one
// entry point per ISA, each with LAMINA_TARGET_* (which also inlines every callee into it, so
// the whole kernel gets that ISA), picked per call by BestIsa().
enum class Isa { kBaseline, kAvx2, kAvx512 };

#if defined(__x86_64__)
#define LAMINA_TARGET_AVX512 __attribute__((target("avx512f"), flatten))
#define LAMINA_TARGET_AVX2 __attribute__((target("avx2,fma"), flatten))
#else  // built for the baseline ISA, never picked: BestIsa() is kBaseline there
#define LAMINA_TARGET_AVX512 __attribute__((flatten))
#define LAMINA_TARGET_AVX2 __attribute__((flatten))
#endif
#define LAMINA_TARGET_BASELINE __attribute__((flatten))

// The best ISA this CPU runs, capped by $LAMINA_MAX_CPU_ISA (baseline, avx2 or avx512, as
// oneDNN's ONEDNN_MAX_CPU_ISA; kernels/ffi_build.py checks the name) so that one machine can
// test every build it can run.
inline Isa BestIsa() {
  static const Isa best = [] {
    Isa isa = Isa::kBaseline;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) {
      isa = Isa::kAvx512;
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      isa = Isa::kAvx2;
    }
#endif
    const char* cap = std::getenv("LAMINA_MAX_CPU_ISA");
    if (cap != nullptr && std::strcmp(cap, "baseline") == 0) isa = Isa::kBaseline;
    if (cap != nullptr && std::strcmp(cap, "avx2") == 0) isa = std::min(isa, Isa::kAvx2);
    return isa;
  }();
  return best;
}

}  // namespace lamina

// BestIsa() for kernels/ffi_build.py to report: 0 baseline, 1 AVX2, 2 AVX-512.
extern "C" __attribute__((visibility("default"), used)) inline int LaminaBestIsa() {
  return static_cast<int>(lamina::BestIsa());
}

namespace lamina {

// The entry point of the build BestIsa() names.
template <typename F>
F BestBuild(F avx512, F avx2, F baseline) {
  switch (BestIsa()) {
    case Isa::kAvx512:
      return avx512;
    case Isa::kAvx2:
      return avx2;
    default:
      return baseline;
  }
}

// N lanes of T as one value: GCC lowers its arithmetic and shuffles to the vectors the
// function's target ISA has (an AVX-512 register holds 16 floats, an AVX2 one 8).
template <typename T, int N>
struct VectorOf {
  typedef T Type __attribute__((vector_size(N * sizeof(T))));
};
template <typename T, int N>
using Vector = typename VectorOf<T, N>::Type;

// One butterfly step of an N x N transpose: rows a and b = a + K trade their off-diagonal
// K x K blocks. After K = N / 2, ..., 2, 1 the rows hold the columns.
template <int K, int N, typename V, std::size_t... J>
[[gnu::always_inline]] inline void Swap(V& a, V& b, std::index_sequence<J...>) {
  const V low = __builtin_shufflevector(a, b, ((J & K) == 0 ? J : N + J - K)...);
  const V high = __builtin_shufflevector(a, b, ((J & K) == 0 ? J + K : N + J)...);
  a = low, b = high;
}

template <int K, int N, typename V>
[[gnu::always_inline]] inline void Stages(V (&rows)[N]) {
  for (int i = 0; i < N; ++i) {
    if ((i & K) == 0) Swap<K, N>(rows[i], rows[i + K], std::make_index_sequence<N>());
  }
  if constexpr (K > 1) Stages<K / 2, N>(rows);
}

// The edge of the blocks a build with vector registers of kRegisterBytes transposes T in: a
// row per register (at most 16), so that the block stays in registers: 16 x 16 with AVX-512,
// 8 x 8 floats with AVX2, whose 16 registers a 16 x 16 float block would overflow.
template <int kRegisterBytes, typename T>
constexpr int kTransposeEdge = std::min<int>(16, kRegisterBytes / sizeof(T));

// out[c][r] = in[r][c] for the N x N block of rows [r0, r0 + N) and columns [c0, c0 + N), cut
// at rows x cols; rows of in are ld_in apart, rows of out ld_out apart.
template <int N, typename T>
[[gnu::always_inline]] inline void TransposeBlock(const T* __restrict in, int64_t ld_in, T* __restrict out,
                                                  int64_t ld_out, int64_t rows, int64_t cols, int64_t r0,
                                                  int64_t c0) {
  const int64_t height = std::min<int64_t>(N, rows - r0), width = std::min<int64_t>(N, cols - c0);
  if (height < N || width < N) {
    for (int64_t r = 0; r < height; ++r) {
      for (int64_t c = 0; c < width; ++c) out[(c0 + c) * ld_out + r0 + r] = in[(r0 + r) * ld_in + c0 + c];
    }
    return;
  }
  using Row = Vector<T, N>;
  Row block[N];
  for (int r = 0; r < N; ++r) std::memcpy(&block[r], in + (r0 + r) * ld_in + c0, sizeof(Row));
  Stages<N / 2, N>(block);
  for (int c = 0; c < N; ++c) std::memcpy(out + (c0 + c) * ld_out + r0, &block[c], sizeof(Row));
}

// out[c][r] = in[r][c] for r < rows, c < cols, an N x N block at a time.
template <int N, typename T>
[[gnu::always_inline]] inline void Transpose(const T* in, int64_t ld_in, T* out, int64_t ld_out, int64_t rows,
                                             int64_t cols) {
  for (int64_t r0 = 0; r0 < rows; r0 += N) {
    for (int64_t c0 = 0; c0 < cols; c0 += N) TransposeBlock<N>(in, ld_in, out, ld_out, rows, cols, r0, c0);
  }
}

}  // namespace lamina

#pragma GCC pop_options

#endif  // LAMINA_MODELS_FFI_VECTOR_H_
