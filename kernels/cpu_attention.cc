// Fused softmax(q k^T / sqrt(H)) v on CPU, forward and backward, as XLA FFI handlers for
// kernels/cpu_attention.py.
//
// One task per (batch, key/value head) on XLA's own intra-op thread pool. A task copies its
// keys and values into float32 buffers (and transposed copies, so every inner loop runs along
// contiguous memory), then for each query head of its group computes the [T, S] scores, their
// softmax and the output with small register-blocked matmuls, in per-thread scratch that a
// short context (nanoGPT's 64) keeps in L1/L2; causal blocks that are all zeros are skipped.
// Only the log-sum-exp of each row is saved: the backward pass recomputes the probabilities,
// as flash attention does. Long contexts would want the keys in blocks too (not done: the
// scratch grows as T x S). Loops are plain C++ and GCC vector types of the ISA's width (16
// floats with AVX-512, 8 with AVX2 and FMA, 4 otherwise), the GEMMs' register tiles sized to each
// ISA's register file; every call runs the best build the CPU has (kernels/ffi_vector.h). One
// width for all had left AVX2 machines spilling a 4 x 4 tile of 16-float accumulators to the
// stack, slower than XLA's attention there.
//
// Layouts: q [B, T, N, H]; k, v [B, S, K, H], N a multiple of K (query head k * G + g reads
// key/value head k); o as q; lse [B, N, T] float32. q, k, v are float32 or bfloat16 (each its
// own); the maths is float32.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "ffi_parallel.h"
#include "ffi_vector.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using lamina::ParallelFor;

#pragma GCC optimize("O3")

namespace {

// A float32 or bfloat16 array, read and written as float32 (bfloat16 rounded to nearest even).
struct Floats {
  void* data;
  bool bf16;

  // out[0..n) = this[at..at + n): one branch per run, so each loop vectorizes.
  [[gnu::always_inline]] void Read(int64_t at, int64_t n, float* __restrict out) const {
    if (!bf16) {
      std::memcpy(out, static_cast<const float*>(data) + at, n * sizeof(float));
      return;
    }
    const uint16_t* in = static_cast<const uint16_t*>(data) + at;
    for (int64_t i = 0; i < n; ++i) out[i] = __builtin_bit_cast(float, static_cast<uint32_t>(in[i]) << 16);
  }

  [[gnu::always_inline]] void Write(int64_t at, int64_t n, const float* __restrict in) const {
    if (!bf16) {
      std::memcpy(static_cast<float*>(data) + at, in, n * sizeof(float));
      return;
    }
    uint16_t* out = static_cast<uint16_t*>(data) + at;
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t b = __builtin_bit_cast(uint32_t, in[i]);
      const bool nan = (b & 0x7fffffffu) > 0x7f800000u;
      out[i] = static_cast<uint16_t>((nan ? (b | 0x00400000u) : b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
    }
  }
};

Floats Of(const ffi::AnyBuffer& buffer) {
  return {const_cast<void*>(buffer.untyped_data()), buffer.element_type() == ffi::DataType::BF16};
}

struct Shape {
  int64_t batch, queries, keys, heads, kv_heads, head_dim;
  bool causal;
  int64_t Groups() const { return heads / kv_heads; }
  // Keys query row i sees: all, or 0..i when causal.
  int64_t Visible(int64_t i) const { return causal ? std::min(i + 1, keys) : keys; }
  int64_t Q(int64_t b, int64_t t, int64_t n) const { return ((b * queries + t) * heads + n) * head_dim; }
  int64_t KV(int64_t b, int64_t s, int64_t k) const { return ((b * keys + s) * kv_heads + k) * head_dim; }
};

// One FFI call's operands; the forward pass leaves the gradients unset.
struct Operands {
  Shape s;
  Floats q, k, v, o, d_o, dq, dk, dv;
  float* lse;                // the forward pass's result
  const float* saved_lse;    // the backward pass's input
};

// Which k each output row m of a GEMM sums over: causal attention's zeros left out.
enum class Range { kAll, kUpToRow, kFromRow };

// A vector build: floats per register and the GEMMs' register tile (rows x chunks of
// accumulators, which with a chunk of B and A's broadcast must fit in the register file).
struct Avx512 {  // 32 zmm: 4 x 4 accumulators
  static constexpr int kLanes = 16, kTileRows = 4, kTileChunks = 4;
};
struct Avx2 {  // 16 ymm: 4 x 3 accumulators
  static constexpr int kLanes = 8, kTileRows = 4, kTileChunks = 3;
};
struct Baseline {  // 16 xmm (SSE2, or NEON's first 16): 4 x 2 accumulators
  static constexpr int kLanes = 4, kTileRows = 4, kTileChunks = 2;
};

// The kernel for one vector build. Its functions carry no ISA of their own: each ISA's entry
// point (below) inlines them all.
template <typename Build>
struct Kernel {
  static constexpr int64_t kLanes = Build::kLanes;  // floats per vector chunk
  using Vec = lamina::Vector<float, kLanes>;
  using Ints = lamina::Vector<int32_t, kLanes>;

  static int64_t Padded(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

  static Vec Load(const float* p) {
    Vec v;
    std::memcpy(&v, p, sizeof(Vec));
    return v;
  }

  static void Store(float* p, const Vec& v) { std::memcpy(p, &v, sizeof(Vec)); }

  // exp(x) for x <= 0, lane by lane: 2^n * p(r), relative error about 2e-7. x is clamped at -87
  // (exp(-87) ~ 1.6e-38, the smallest normal float), so -inf gives that, not 0.
  static Vec Exp(Vec x) {
    x = x < -87.f ? Vec{} - 87.f : x;
    // Round to nearest by the float format itself (|x * log2(e)| < 2^22); no -ffast-math here
    // to fold the two additions away.
    const Vec n = (x * 1.44269504f + 12582912.f) - 12582912.f;
    const Vec r = x - n * 0.693145752f - n * 1.42860677e-6f;
    Vec p = r * 1.98756912e-4f + 1.39819994e-3f;
    p = p * r + 8.33345205e-3f;
    p = p * r + 4.16664720e-2f;
    p = p * r + 1.66666672e-1f;
    p = p * r + 5.00000000e-1f;
    p = p * r * r + r + 1.f;
    return reinterpret_cast<Vec>(reinterpret_cast<Ints>(p) + (__builtin_convertvector(n, Ints) << 23));
  }

  // v op (v with lanes kHalf apart swapped), lane by lane.
  template <int kHalf, typename Op, std::size_t... J>
  static Vec Halve(Vec v, Op op, std::index_sequence<J...>) {
    return op(v, __builtin_shufflevector(v, v, static_cast<int>(J ^ kHalf)...));
  }

  // A lane-wise op folded over the lanes, halving each step.
  template <typename Op>
  static float Fold(Vec v, Op op) {
    constexpr auto lanes = std::make_index_sequence<kLanes>();
    if constexpr (kLanes > 8) v = Halve<8>(v, op, lanes);
    if constexpr (kLanes > 4) v = Halve<4>(v, op, lanes);
    v = Halve<2>(v, op, lanes);
    v = Halve<1>(v, op, lanes);
    return v[0];
  }

  template <std::size_t... J>
  static Vec Iota(std::index_sequence<J...>) {
    return Vec{static_cast<float>(J)...};
  }

  static Vec Maximum(Vec a, Vec b) { return a > b ? a : b; }
  static Vec Plus(Vec a, Vec b) { return a + b; }

  // The R x (C * kLanes) block of C at (m, n0) set to (or, kAccumulate, increased by) the sum over
  // k in [begin, end) of A[m + r][k] B[k][n0 ...], A read as stored [rows][depth] or, kTransposed,
  // as [depth][rows]. Its R * C accumulators stay in registers; each B load serves R rows, each A
  // value C chunks.
  template <int R, int C, bool kTransposed, bool kAccumulate>
  static void Block(const float* __restrict a, int64_t lda, const float* __restrict b, int64_t ldb,
                    float* __restrict c, int64_t ldc, int64_t m, int64_t n0, int64_t begin, int64_t end) {
    Vec acc[R][C];
    for (int r = 0; r < R; ++r) {
      for (int j = 0; j < C; ++j) acc[r][j] = kAccumulate ? Load(c + (m + r) * ldc + n0 + j * kLanes) : Vec{};
    }
    for (int64_t k = begin; k < end; ++k) {
      Vec row[C];
      for (int j = 0; j < C; ++j) row[j] = Load(b + k * ldb + n0 + j * kLanes);
      for (int r = 0; r < R; ++r) {
        const float w = kTransposed ? a[k * lda + m + r] : a[(m + r) * lda + k];
        for (int j = 0; j < C; ++j) acc[r][j] += w * row[j];
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int j = 0; j < C; ++j) Store(c + (m + r) * ldc + n0 + j * kLanes, acc[r][j]);
    }
  }

  // The k a block of rows [m, m + count) sums over: causal attention's exact zeros skipped (a
  // block takes the union of its rows' ranges; the zeros in it add nothing).
  static void KRange(Range range, int64_t m, int64_t count, int64_t depth, int64_t& begin, int64_t& end) {
    begin = range == Range::kFromRow ? m : 0;
    end = range == Range::kUpToRow ? std::min(m + count, depth) : depth;
  }

  template <int R, bool kTransposed, bool kAccumulate>
  static void Rows(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m,
                   int64_t depth, int64_t width, Range range, bool lower) {
    constexpr int kWide = Build::kTileChunks;
    int64_t begin, end;
    KRange(range, m, R, depth, begin, end);
    if (lower) width = std::min(width, Padded(m + R));
    int64_t n0 = 0;
    for (; n0 + kWide * kLanes <= width; n0 += kWide * kLanes) {
      Block<R, kWide, kTransposed, kAccumulate>(a, lda, b, ldb, c, ldc, m, n0, begin, end);
    }
    if constexpr (kWide > 2) {
      for (; n0 + 2 * kLanes <= width; n0 += 2 * kLanes) {
        Block<R, 2, kTransposed, kAccumulate>(a, lda, b, ldb, c, ldc, m, n0, begin, end);
      }
    }
    for (; n0 < width; n0 += kLanes) Block<R, 1, kTransposed, kAccumulate>(a, lda, b, ldb, c, ldc, m, n0, begin, end);
  }

  // C[m][:] = sum_k A[m][k] B[k][:] (+= with kAccumulate) for m < rows, k < depth (or k <= m, or
  // k >= m), over `width` columns, a multiple of kLanes; every row is contiguous. kTransposed: A is
  // stored [depth][rows]. `lower`: only the column chunks that hold some n <= m (causal scores; the
  // rest is left as it was).
  template <bool kTransposed, bool kAccumulate = false>
  static void Gemm(const float* __restrict a, int64_t lda, const float* __restrict b, int64_t ldb,
                   float* __restrict c, int64_t ldc, int64_t rows, int64_t depth, int64_t width, Range range,
                   bool lower = false) {
    constexpr int kTall = Build::kTileRows;
    int64_t m = 0;
    for (; m + kTall <= rows; m += kTall) {
      Rows<kTall, kTransposed, kAccumulate>(a, lda, b, ldb, c, ldc, m, depth, width, range, lower);
    }
    for (; m < rows; ++m) Rows<1, kTransposed, kAccumulate>(a, lda, b, ldb, c, ldc, m, depth, width, range, lower);
  }

  // out[j][i] = in[i][j] for i < rows, j < cols, and 0 for rows <= i < ld_out (the padding).
  static void TransposePadded(const float* in, int64_t ld_in, float* out, int64_t ld_out, int64_t rows,
                              int64_t cols) {
    lamina::Transpose<kLanes>(in, ld_in, out, ld_out, rows, cols);
    for (int64_t j = 0; j < cols; ++j) std::fill(out + j * ld_out + rows, out + (j + 1) * ld_out, 0.f);
  }

  // A float32 scratch matrix per calling thread and slot, rows x cols, its contents undefined.
  static float* Scratch(int slot, int64_t rows, int64_t cols) {
    thread_local std::vector<float> buffers[13];
    auto& buffer = buffers[slot];
    if (buffer.size() < static_cast<size_t>(rows * cols)) buffer.resize(rows * cols);
    return buffer.data();
  }

  static float* Zeroed(int slot, int64_t rows, int64_t cols) {
    float* buffer = Scratch(slot, rows, cols);
    std::fill(buffer, buffer + rows * cols, 0.f);
    return buffer;
  }

  // rows x head_dim of one head of `x` (rows strided `row_stride` apart from `at`) into a
  // [rows][Padded(H)] matrix, its padding columns zero.
  static void Gather(const Floats& x, int64_t at, int64_t row_stride, int64_t rows, int64_t head_dim, float* out) {
    const int64_t ld = Padded(head_dim);
    for (int64_t r = 0; r < rows; ++r) {
      x.Read(at + r * row_stride, head_dim, out + r * ld);
      std::fill(out + r * ld + head_dim, out + (r + 1) * ld, 0.f);
    }
  }

  static void Scatter(const float* in, int64_t rows, int64_t head_dim, const Floats& x, int64_t at,
                      int64_t row_stride) {
    const int64_t ld = Padded(head_dim);
    for (int64_t r = 0; r < rows; ++r) x.Write(at + r * row_stride, head_dim, in + r * ld);
  }

  // Row-wise softmax of scores [T][ld] in place over the visible keys (the rest set to 0);
  // writes each row's log-sum-exp. With `lse_in`, uses those instead: P = exp(S - lse).
  static void Softmax(const Shape& s, float* __restrict scores, int64_t ld, float* __restrict lse,
                      const float* __restrict lse_in) {
    const Vec lanes = Iota(std::make_index_sequence<kLanes>());
    const Vec minus_infinity = Vec{} - std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < s.queries; ++i) {
      float* row = scores + i * ld;
      const int64_t visible = s.Visible(i), chunks_end = Padded(visible);
      // Lanes of the last chunk past the visible keys count as -inf scores.
      const float first_of_last = static_cast<float>(chunks_end - kLanes);
      const Vec last = lanes + first_of_last < static_cast<float>(visible) ? Vec{} : minus_infinity;
      float shift;
      if (lse_in != nullptr) {
        shift = lse_in[i];
      } else {
        Vec top = minus_infinity;
        for (int64_t j = 0; j < chunks_end; j += kLanes) {
          top = Maximum(top, Load(row + j) + (j + kLanes == chunks_end ? last : Vec{}));
        }
        shift = Fold(top, Maximum);
      }
      Vec sum{};
      for (int64_t j = 0; j < chunks_end; j += kLanes) {
        const Vec x = Load(row + j) + (j + kLanes == chunks_end ? last : Vec{});
        const Vec p = x == minus_infinity ? Vec{} : Exp(x - shift);
        Store(row + j, p);
        sum += p;
      }
      std::fill(row + chunks_end, row + ld, 0.f);
      if (lse_in == nullptr) {
        const float total = Fold(sum, Plus), inverse = 1.f / total;
        for (int64_t j = 0; j < chunks_end; j += kLanes) Store(row + j, Load(row + j) * inverse);
        lse[i] = shift + std::log(total);
      }
    }
  }

  // One (batch, key/value head): its keys and values, and each query head of its group.
  struct Head {
    const Shape& s;
    int64_t b, kh, hp, sp;
    float scale;
    float *k, *kt, *v, *vt;

    // The forward pass reads kt and v; the backward pass kt, k and vt.
    Head(const Shape& shape, const Floats& keys, const Floats& values, int64_t task, bool backward)
        : s(shape), b(task / shape.kv_heads), kh(task % shape.kv_heads), hp(Padded(shape.head_dim)),
          sp(Padded(shape.keys)), scale(1.f / std::sqrt(static_cast<float>(shape.head_dim))) {
      k = Scratch(0, sp, hp), v = Scratch(1, sp, hp), kt = Scratch(2, hp, sp), vt = Scratch(3, hp, sp);
      const int64_t stride = s.kv_heads * s.head_dim;
      Gather(keys, s.KV(b, 0, kh), stride, s.keys, s.head_dim, k);
      Gather(values, s.KV(b, 0, kh), stride, s.keys, s.head_dim, v);
      std::fill(v + s.keys * hp, v + sp * hp, 0.f);  // padding keys: P is 0 there, and 0 * garbage may not be
      TransposePadded(k, hp, kt, sp, s.keys, hp);
      if (backward) TransposePadded(v, hp, vt, sp, s.keys, hp);
      for (int64_t i = 0; i < hp * sp; ++i) kt[i] *= scale;  // so q kt is the scaled scores
    }

    Range Causal(Range range) const { return s.causal ? range : Range::kAll; }
    int64_t QueryHead(int64_t g) const { return kh * s.Groups() + g; }
    int64_t QueryAt(int64_t g) const { return s.Q(b, 0, QueryHead(g)); }
    int64_t QueryStride() const { return s.heads * s.head_dim; }
    int64_t LseAt(int64_t g) const { return (b * s.heads + QueryHead(g)) * s.queries; }

    // The probabilities [T][sp] of query rows q [T][hp].
    float* Probabilities(const float* q, float* lse, const float* lse_in) const {
      float* p = Scratch(5, s.queries, sp);
      Gemm<false>(q, hp, kt, sp, p, sp, s.queries, hp, sp, Range::kAll, s.causal);
      Softmax(s, p, sp, lse, lse_in);
      return p;
    }
  };

  // dP [T][sp] -> dS = scale * P * (dP - rowsum(dO * O)), in place, over each row's chunks of
  // visible keys (the causal dP GEMM leaves the others unwritten) and 0 past them.
  static void ScoreGradients(const Shape& s, const float* __restrict p, const float* __restrict d_out,
                             const float* __restrict out, int64_t hp, int64_t sp, float scale,
                             float* __restrict d_scores) {
    for (int64_t i = 0; i < s.queries; ++i) {
      Vec products{};
      for (int64_t d = 0; d < hp; d += kLanes) products += Load(d_out + i * hp + d) * Load(out + i * hp + d);
      const float delta = Fold(products, Plus);
      const int64_t chunks_end = Padded(s.Visible(i));
      float* row = d_scores + i * sp;
      for (int64_t j = 0; j < chunks_end; j += kLanes) {
        Store(row + j, Load(p + i * sp + j) * (Load(row + j) - delta) * scale);
      }
      std::fill(row + chunks_end, row + sp, 0.f);
    }
  }

  static void Forward(const Operands& x, int64_t task) {
    const Shape& s = x.s;
    const Head head(s, x.k, x.v, task, false);
    for (int64_t g = 0; g < s.Groups(); ++g) {
      float* rows = Scratch(4, s.queries, head.hp);
      Gather(x.q, head.QueryAt(g), head.QueryStride(), s.queries, s.head_dim, rows);
      const float* p = head.Probabilities(rows, x.lse + head.LseAt(g), nullptr);
      float* out = Scratch(6, s.queries, head.hp);
      Gemm<false>(p, head.sp, head.v, head.hp, out, head.hp, s.queries, s.keys, head.hp,
                  head.Causal(Range::kUpToRow));
      Scatter(out, s.queries, s.head_dim, x.o, head.QueryAt(g), head.QueryStride());
    }
  }

  // dS = P * (dP - rowsum(dO * O)); dq = scale dS k; dk += scale dS^T q; dv += P^T dO.
  static void Backward(const Operands& x, int64_t task) {
    const Shape& s = x.s;
    const Head head(s, x.k, x.v, task, true);
    const int64_t t = s.queries, hp = head.hp, sp = head.sp;
    float* grad_k = Zeroed(7, sp, hp);
    float* grad_v = Zeroed(8, sp, hp);
    for (int64_t g = 0; g < s.Groups(); ++g) {
      float* rows_q = Scratch(4, t, hp);
      float* rows_do = Scratch(6, t, hp);
      float* rows_o = Scratch(9, t, hp);
      Gather(x.q, head.QueryAt(g), head.QueryStride(), t, s.head_dim, rows_q);
      Gather(x.d_o, head.QueryAt(g), head.QueryStride(), t, s.head_dim, rows_do);
      Gather(x.o, head.QueryAt(g), head.QueryStride(), t, s.head_dim, rows_o);
      float* p = head.Probabilities(rows_q, nullptr, x.saved_lse + head.LseAt(g));
      Gemm<true, true>(p, sp, rows_do, hp, grad_v, hp, s.keys, t, hp, head.Causal(Range::kFromRow));  // P^T dO
      float* d_scores = Scratch(11, t, sp);
      Gemm<false>(rows_do, hp, head.vt, sp, d_scores, sp, t, hp, sp, Range::kAll, s.causal);  // dP
      ScoreGradients(s, p, rows_do, rows_o, hp, sp, head.scale, d_scores);
      float* grad_q = Scratch(12, t, hp);
      Gemm<false>(d_scores, sp, head.k, hp, grad_q, hp, t, s.keys, hp, head.Causal(Range::kUpToRow));
      Scatter(grad_q, t, s.head_dim, x.dq, head.QueryAt(g), head.QueryStride());
      Gemm<true, true>(d_scores, sp, rows_q, hp, grad_k, hp, s.keys, t, hp, head.Causal(Range::kFromRow));  // dS^T q
    }
    const int64_t stride = s.kv_heads * s.head_dim;
    Scatter(grad_k, s.keys, s.head_dim, x.dk, s.KV(head.b, 0, head.kh), stride);
    Scatter(grad_v, s.keys, s.head_dim, x.dv, s.KV(head.b, 0, head.kh), stride);
  }

  static void Run(const Operands& x, int64_t task, bool backward) {
    backward ? Backward(x, task) : Forward(x, task);
  }
};

// One task of a call in each build's ISA; every function of the kernel is inlined into these.
LAMINA_TARGET_AVX512 void RunAvx512(const Operands& x, int64_t task, bool backward) {
  Kernel<Avx512>::Run(x, task, backward);
}
LAMINA_TARGET_AVX2 void RunAvx2(const Operands& x, int64_t task, bool backward) {
  Kernel<Avx2>::Run(x, task, backward);
}
LAMINA_TARGET_BASELINE void RunBaseline(const Operands& x, int64_t task, bool backward) {
  Kernel<Baseline>::Run(x, task, backward);
}

// Every (batch, key/value head) of a call, on XLA's pool, in the best build this CPU runs.
void RunAll(ffi::ThreadPool& pool, const Operands& x, bool backward) {
  const auto run = lamina::BestBuild(RunAvx512, RunAvx2, RunBaseline);
  ParallelFor(pool, x.s.batch * x.s.kv_heads, [&](int64_t task) { run(x, task, backward); });
}

ffi::Error Check(const ffi::AnyBuffer& q, const ffi::AnyBuffer& k, const ffi::AnyBuffer& v, Shape& shape,
                 bool causal) {
  for (const auto* buffer : {&q, &k, &v}) {
    const auto type = buffer->element_type();
    if (type != ffi::DataType::F32 && type != ffi::DataType::BF16) {
      return ffi::Error::InvalidArgument("cpu_attention: q, k and v must be float32 or bfloat16");
    }
    if (buffer->dimensions().size() != 4) return ffi::Error::InvalidArgument("cpu_attention: q, k, v must be 4-D");
  }
  const auto qd = q.dimensions(), kd = k.dimensions();
  shape = {qd[0], qd[1], kd[1], qd[2], kd[2], qd[3], causal};
  if (kd[0] != qd[0] || kd[3] != qd[3] || shape.kv_heads == 0 || shape.heads % shape.kv_heads != 0 ||
      !std::equal(kd.begin(), kd.end(), v.dimensions().begin(), v.dimensions().end())) {
    return ffi::Error::InvalidArgument("cpu_attention: q [B, T, N, H] and k, v [B, S, K, H] with K dividing N");
  }
  return ffi::Error::Success();
}

ffi::Error AttentionForward(ffi::ThreadPool pool, ffi::AnyBuffer q, ffi::AnyBuffer k, ffi::AnyBuffer v,
                            ffi::Result<ffi::AnyBuffer> o, ffi::Result<ffi::Buffer<ffi::F32>> lse, bool causal) {
  Operands x{};
  if (auto error = Check(q, k, v, x.s, causal); error.failure()) return error;
  x.q = Of(q), x.k = Of(k), x.v = Of(v), x.o = Of(*o), x.lse = lse->typed_data();
  RunAll(pool, x, false);
  return ffi::Error::Success();
}

ffi::Error AttentionBackward(ffi::ThreadPool pool, ffi::AnyBuffer q, ffi::AnyBuffer k, ffi::AnyBuffer v,
                             ffi::AnyBuffer o, ffi::Buffer<ffi::F32> lse, ffi::AnyBuffer d_o,
                             ffi::Result<ffi::AnyBuffer> dq, ffi::Result<ffi::AnyBuffer> dk,
                             ffi::Result<ffi::AnyBuffer> dv, bool causal) {
  Operands x{};
  if (auto error = Check(q, k, v, x.s, causal); error.failure()) return error;
  x.q = Of(q), x.k = Of(k), x.v = Of(v), x.o = Of(o), x.d_o = Of(d_o);
  x.dq = Of(*dq), x.dk = Of(*dk), x.dv = Of(*dv), x.saved_lse = lse.typed_data();
  RunAll(pool, x, true);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminaAttentionForward, AttentionForward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("causal"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminaAttentionBackward, AttentionBackward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("causal"));
