// oneDNN 2-D convolutions (NHWC activations, HWIO kernels, float32) as XLA FFI handlers:
// the forward pass and both gradients, for models/onednn_conv.py.
//
// Activations stay NHWC, which oneDNN's brgemm kernels read directly; only the kernel is
// reordered into the blocked layout the primitive picks (and its gradient back to HWIO),
// a copy far smaller than the activations. Primitives are built once per shape and kept;
// scratch memory is per calling thread, because XLA may run two convolutions at once.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

enum Pass { kForward, kBackwardData, kBackwardWeights };

struct Problem {
  int64_t n, h, w, ci, kh, kw, co, oh, ow, sh, sw, pt, pb, pl, pr;
  auto Tie() const { return std::tie(n, h, w, ci, kh, kw, co, oh, ow, sh, sw, pt, pb, pl, pr); }
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
  p.weights = weights;
  if (p.weights != p.hwio) {
    p.to_weights = MakeReorder(p.hwio, p.weights, attr);
    p.to_hwio = MakeReorder(p.weights, p.hwio, attr);
  }
}

std::unique_ptr<Primitive> Build(Pass pass, const Problem& q) {
  const auto f32 = memory::data_type::f32;
  auto p = std::make_unique<Primitive>();
  p->src = memory::desc({q.n, q.ci, q.h, q.w}, f32, memory::format_tag::nhwc);
  p->dst = memory::desc({q.n, q.co, q.oh, q.ow}, f32, memory::format_tag::nhwc);
  p->hwio = memory::desc({q.co, q.ci, q.kh, q.kw}, f32, memory::format_tag::hwio);
  const memory::desc any_weights({q.co, q.ci, q.kh, q.kw}, f32, memory::format_tag::any);
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

void RunReorder(dnnl::stream& stream, const Reorder& r, memory& from, memory& to) {
  memory scratch(r.scratch, Engine(), Scratch(2, r.scratch.get_size()));
  r.primitive.execute(stream, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, {DNNL_ARG_SCRATCHPAD, scratch}});
}

// Operands by pass: forward (x, w) -> y; backward data (dy, w) -> dx; backward weights (x, dy) -> dw.
template <Pass pass>
ffi::Error Convolve(ffi::Buffer<ffi::F32, 4> a, ffi::Buffer<ffi::F32, 4> b, ffi::ResultBuffer<ffi::F32, 4> out,
                    ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding) {
  if (strides.size() != 2 || padding.size() != 4) {
    return ffi::Error::InvalidArgument("onednn_conv: strides must have 2 entries and padding 4");
  }
  const auto x = pass == kBackwardData ? out->dimensions() : a.dimensions();
  const auto k = pass == kBackwardWeights ? out->dimensions() : b.dimensions();
  const auto y = pass == kForward ? out->dimensions() : pass == kBackwardData ? a.dimensions() : b.dimensions();
  const Problem q{x[0], x[1], x[2], x[3], k[0], k[1], k[3], y[1], y[2], strides[0], strides[1],
                  padding[0], padding[1], padding[2], padding[3]};
  try {
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
      .Arg<ffi::Buffer<ffi::F32, 4>>()
      .Arg<ffi::Buffer<ffi::F32, 4>>()
      .Ret<ffi::Buffer<ffi::F32, 4>>()
      .Attr<ffi::Span<const int64_t>>("strides")
      .Attr<ffi::Span<const int64_t>>("padding");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(OneDnnConvForward, Convolve<kForward>, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(OneDnnConvBackwardData, Convolve<kBackwardData>, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(OneDnnConvBackwardWeights, Convolve<kBackwardWeights>, Binding());
