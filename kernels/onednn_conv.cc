// oneDNN 2-D convolutions (NHWC activations, HWIO kernels, float32 or bfloat16) as XLA FFI
// handlers: the forward pass and both gradients, for kernels/onednn_conv.py. Each role (input,
// kernel, output) takes its buffer's dtype, so bf16 operands may give an f32 result; oneDNN
// accumulates in f32 either way (its AMX / AVX-512 BF16 kernels for bf16).
//
// Activations stay NHWC, which oneDNN's brgemm kernels read directly; only the kernel is
// reordered into the blocked layout the primitive picks (and its gradient back to HWIO),
// a copy far smaller than the activations. Primitives are built once per shape and kept;
// scratch memory is per calling thread, because XLA may run two convolutions at once.

#include <dlfcn.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

enum Pass { kForward, kBackwardData, kBackwardWeights };

struct Problem {
  memory::data_type x_dtype, w_dtype, y_dtype;  // of the input, kernel and output roles
  int64_t threads;  // oneDNN's OpenMP threads (0: all); kernels split their work by it when built
  int64_t n, h, w, ci, kh, kw, co, oh, ow, sh, sw, pt, pb, pl, pr;
  auto Tie() const {
    return std::tie(x_dtype, w_dtype, y_dtype, threads, n, h, w, ci, kh, kw, co, oh, ow, sh, sw, pt, pb, pl, pr);
  }
  bool operator<(const Problem& other) const { return Tie() < other.Tie(); }
};

struct Reorder {
  dnnl::primitive primitive;
  memory::desc scratch;
};

struct Primitive {
  dnnl::primitive primitive;
  memory::desc src, dst, scratch;
  memory::desc hwio, weights;  // the kernel as XLA holds it, and as the primitive wants it
  Reorder to_weights, to_hwio;  // used when the two layouts differ
  std::string implementation;  // oneDNN's name for the kernel it picked
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

Reorder MakeReorder(const memory::desc& from, const memory::desc& to, const dnnl::primitive_attr& attr) {
  dnnl::reorder::primitive_desc pd(Engine(), from, Engine(), to, attr);
  return {dnnl::reorder(pd), pd.scratchpad_desc()};
}

template <typename PrimitiveDesc>
void Finish(Primitive& p, const PrimitiveDesc& pd, const memory::desc& weights, const dnnl::primitive_attr& attr) {
  p.scratch = pd.scratchpad_desc();
  p.implementation = pd.impl_info_str();
  p.weights = weights;
  if (p.weights != p.hwio) {
    p.to_weights = MakeReorder(p.hwio, p.weights, attr);
    p.to_hwio = MakeReorder(p.weights, p.hwio, attr);
  }
}

std::unique_ptr<Primitive> Build(Pass pass, const Problem& q) {
  auto p = std::make_unique<Primitive>();
  p->src = memory::desc({q.n, q.ci, q.h, q.w}, q.x_dtype, memory::format_tag::nhwc);
  p->dst = memory::desc({q.n, q.co, q.oh, q.ow}, q.y_dtype, memory::format_tag::nhwc);
  p->hwio = memory::desc({q.co, q.ci, q.kh, q.kw}, q.w_dtype, memory::format_tag::hwio);
  const memory::desc any_weights({q.co, q.ci, q.kh, q.kw}, q.w_dtype, memory::format_tag::any);
  const memory::dims strides{q.sh, q.sw}, pad_low{q.pt, q.pl}, pad_high{q.pb, q.pr};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto algorithm = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc forward(Engine(), dnnl::prop_kind::forward_training, algorithm, p->src,
                                                    any_weights, p->dst, strides, pad_low, pad_high, attr);
  if (pass == kForward) {
    p->primitive = dnnl::convolution_forward(forward);
    Finish(*p, forward, forward.weights_desc(), attr);
  } else if (pass == kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(Engine(), algorithm, p->src, any_weights, p->dst, strides,
                                                       pad_low, pad_high, forward, attr);
    p->primitive = dnnl::convolution_backward_data(pd);
    Finish(*p, pd, pd.weights_desc(), attr);
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(Engine(), algorithm, p->src, any_weights, p->dst, strides,
                                                          pad_low, pad_high, forward, attr);
    p->primitive = dnnl::convolution_backward_weights(pd);
    Finish(*p, pd, pd.diff_weights_desc(), attr);
  }
  return p;
}

const Primitive& Cached(Pass pass, const Problem& q) {
  static std::mutex mutex;
  static std::map<std::pair<Pass, Problem>, std::unique_ptr<Primitive>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[{pass, q}];
  if (!slot) slot = Build(pass, q);
  return *slot;
}

// Thread-local scratch: each XLA worker thread runs one handler at a time.
void* Scratch(int slot, size_t bytes) {
  thread_local std::vector<char> buffers[3];
  if (buffers[slot].size() < bytes) buffers[slot].resize(bytes);
  return buffers[slot].data();
}

// Sets the calling thread's OpenMP team size for the oneDNN calls it makes (0: the size it
// started with). The symbol comes from the OpenMP runtime libdnnl loaded, if it has one.
void UseThreads(int64_t threads) {
  using SetNumThreads = void (*)(int);
  using GetMaxThreads = int (*)();
  static const auto set = reinterpret_cast<SetNumThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  static const auto get = reinterpret_cast<GetMaxThreads>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
  if (set == nullptr || get == nullptr) return;
  thread_local const int initial = get();
  set(threads > 0 ? static_cast<int>(threads) : initial);
}

void RunReorder(dnnl::stream& stream, const Reorder& r, memory& from, memory& to) {
  memory scratch(r.scratch, Engine(), Scratch(2, r.scratch.get_size()));
  r.primitive.execute(stream, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, {DNNL_ARG_SCRATCHPAD, scratch}});
}

// Operands by pass: forward (x, w) -> y; backward data (dy, w) -> dx; backward weights (x, dy) -> dw.
template <Pass pass>
ffi::Error Convolve(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
                    ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding, int64_t threads) {
  if (strides.size() != 2 || padding.size() != 4) {
    return ffi::Error::InvalidArgument("onednn_conv: strides must have 2 entries and padding 4");
  }
  for (const auto dtype : {a.element_type(), b.element_type(), out->element_type()}) {
    if (dtype != ffi::DataType::F32 && dtype != ffi::DataType::BF16) {
      return ffi::Error::InvalidArgument("onednn_conv: operands must be float32 or bfloat16");
    }
  }
  if (a.dimensions().size() != 4 || b.dimensions().size() != 4 || out->dimensions().size() != 4) {
    return ffi::Error::InvalidArgument("onednn_conv: operands must be 4-D");
  }
  const ffi::AnyBuffer* x_buffer = pass == kBackwardData ? &*out : &a;
  const ffi::AnyBuffer* w_buffer = pass == kBackwardWeights ? &*out : &b;
  const ffi::AnyBuffer* y_buffer = pass == kForward ? &*out : pass == kBackwardData ? &a : &b;
  const auto x = x_buffer->dimensions(), k = w_buffer->dimensions(), y = y_buffer->dimensions();
  const auto onednn_type = [](const ffi::AnyBuffer* buffer) {
    return buffer->element_type() == ffi::DataType::F32 ? memory::data_type::f32 : memory::data_type::bf16;
  };
  const Problem q{onednn_type(x_buffer), onednn_type(w_buffer), onednn_type(y_buffer), threads,
                  x[0], x[1], x[2], x[3], k[0], k[1], k[3], y[1], y[2], strides[0], strides[1],
                  padding[0], padding[1], padding[2], padding[3]};
  try {
    UseThreads(threads);
    const Primitive& p = Cached(pass, q);
    dnnl::stream stream(Engine());
    const bool reorder = p.weights != p.hwio;
    memory hwio(p.hwio, Engine(), pass == kBackwardWeights ? out->untyped_data() : b.untyped_data());
    memory weights = reorder ? memory(p.weights, Engine(), Scratch(1, p.weights.get_size())) : hwio;
    memory scratch(p.scratch, Engine(), Scratch(0, p.scratch.get_size()));
    if (pass == kForward) {
      if (reorder) RunReorder(stream, p.to_weights, hwio, weights);
      memory src(p.src, Engine(), a.untyped_data()), dst(p.dst, Engine(), out->untyped_data());
      p.primitive.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst},
                                   {DNNL_ARG_SCRATCHPAD, scratch}});
    } else if (pass == kBackwardData) {
      if (reorder) RunReorder(stream, p.to_weights, hwio, weights);
      memory diff_dst(p.dst, Engine(), a.untyped_data()), diff_src(p.src, Engine(), out->untyped_data());
      p.primitive.execute(stream, {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_WEIGHTS, weights},
                                   {DNNL_ARG_DIFF_SRC, diff_src}, {DNNL_ARG_SCRATCHPAD, scratch}});
    } else {
      memory src(p.src, Engine(), a.untyped_data()), diff_dst(p.dst, Engine(), b.untyped_data());
      p.primitive.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst},
                                   {DNNL_ARG_DIFF_WEIGHTS, weights}, {DNNL_ARG_SCRATCHPAD, scratch}});
      if (reorder) RunReorder(stream, p.to_hwio, weights, hwio);
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn_conv: ") + e.what());
  }
  return ffi::Error::Success();
}

auto Binding() {
  return ffi::Ffi::Bind()
      .Arg<ffi::AnyBuffer>()
      .Arg<ffi::AnyBuffer>()
      .Ret<ffi::AnyBuffer>()
      .Attr<ffi::Span<const int64_t>>("strides")
      .Attr<ffi::Span<const int64_t>>("padding")
      .Attr<int64_t>("threads");
}

}  // namespace

// The implementation oneDNN picks for a small bfloat16 forward convolution here, e.g.
// "brgconv:avx512_core_amx", or "ref:any" where the CPU has no bfloat16 kernels.
extern "C" const char* LaminaOneDnnBf16Implementation() {
  static const std::string name = [] {
    try {
      const auto bf16 = memory::data_type::bf16;
      const Problem q{bf16, bf16, memory::data_type::f32, 0, 8, 8, 8, 32, 3, 3, 32, 8, 8, 1, 1, 1, 1, 1, 1};
      return Cached(kForward, q).implementation;
    } catch (const dnnl::error& e) {
      return std::string("unavailable: ") + e.what();
    }
  }();
  return name.c_str();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(OneDnnConvForward, Convolve<kForward>, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(OneDnnConvBackwardData, Convolve<kBackwardData>, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(OneDnnConvBackwardWeights, Convolve<kBackwardWeights>, Binding());
