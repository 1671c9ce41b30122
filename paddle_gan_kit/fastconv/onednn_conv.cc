// Convolutions on the CPU through oneDNN, as three Paddle custom operators.
//
// Paddle's eager CPU convolution is im2col + one GEMM per sample; oneDNN (which the Paddle wheel
// ships as libdnnl.so.3) has direct convolution kernels for the same maths. The three operators
// are the three products of a convolution, each the adjoint of another, so Python chains them
// into convolution and transposed convolution differentiable to any order (fastconv/__init__.py):
//
//   pgk_conv_forward(X, W)        Y  = conv(X, W)                    X (N,IC,IH,IW), W (OC,IC,KH,KW)
//   pgk_conv_backward_data(DY, W) DX = conv^T(DY, W)                 DY (N,OC,OH,OW) -> (N,IC,IH,IW)
//   pgk_conv_backward_weights(X, DY) DW = correlation of X and DY    -> (OC,IC,KH,KW)
//
// and one for the activations between them (oneDNN's eltwise kernels, vectorised and threaded,
// where Paddle's CPU elementwise kernels run on one thread):
//
//   pgk_leaky_relu_mask(V, X)     V * (X > 0 ? 1 : slope)            any shape, V and X alike
//   pgk_multiply(A, B)            A * B                              any shape, A and B alike
//
// the first being leaky ReLU (slope 0: ReLU) for V = X and its input gradient for V = DY.
//
// Tensors stay plain NCHW / OIHW float32 in Paddle. Each primitive is created once per shape
// and kept; oneDNN chooses the memory formats its fastest kernels want (format "any"), and the
// reorders into and out of them are kept per shape too, so a step allocates nothing but scratch.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "paddle/extension.h"

namespace {

using dnnl::memory;
using Dims = memory::dims;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& Stream() {
  static dnnl::stream stream(Engine());
  return stream;
}

// The geometry of one convolution; every primitive is keyed by it.
struct Geometry {
  int64_t n, ic, ih, iw, oc, oh, ow, kh, kw, sh, sw, ph, pw;

  std::string Key(char kind) const {
    std::string key(1, kind);
    for (int64_t v : {n, ic, ih, iw, oc, oh, ow, kh, kw, sh, sw, ph, pw}) key += "," + std::to_string(v);
    return key;
  }
  Dims Src() const { return {n, ic, ih, iw}; }
  Dims Weights() const { return {oc, ic, kh, kw}; }
  Dims Dst() const { return {n, oc, oh, ow}; }
  Dims Strides() const { return {sh, sw}; }
  Dims Padding() const { return {ph, pw}; }
};

memory::desc Any(const Dims& dims) { return memory::desc(dims, memory::data_type::f32, memory::format_tag::any); }
memory::desc Plain(const Dims& dims) { return memory::desc(dims, memory::data_type::f32, memory::format_tag::abcd); }

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, Any(g.Src()),
      Any(g.Weights()), Any(g.Dst()), g.Strides(), g.Padding(), g.Padding());
}

// One argument of a primitive: the plain Paddle buffer and, when oneDNN wants another format,
// a kept internal buffer with the reorder between the two.
struct Argument {
  memory::desc plain, internal;
  bool reordered = false;
  std::unique_ptr<memory> buffer;   // the internal buffer (when reordered)
  std::unique_ptr<dnnl::reorder> to_internal, to_plain;

  Argument(const Dims& dims, const memory::desc& wanted, bool is_output) : plain(Plain(dims)), internal(wanted) {
    reordered = !(wanted == plain);
    if (!reordered) return;
    buffer.reset(new memory(wanted, Engine()));
    if (is_output) {
      to_plain.reset(new dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), wanted, Engine(), plain)));
    } else {
      to_internal.reset(new dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), plain, Engine(), wanted)));
    }
  }

  // The memory the primitive reads: the Paddle buffer itself, or its reordered copy.
  memory In(const float* data) {
    memory user(plain, Engine(), const_cast<float*>(data));
    if (!reordered) return user;
    to_internal->execute(Stream(), user, *buffer);
    return *buffer;
  }
  // The memory the primitive writes, then copied into the Paddle buffer by Out().
  memory Target(float* data) { return reordered ? *buffer : memory(plain, Engine(), data); }
  void Out(float* data) {
    if (!reordered) return;
    memory user(plain, Engine(), data);
    to_plain->execute(Stream(), *buffer, user);
  }
};

// A primitive for one geometry with its three arguments (two inputs, one output).
struct Kept {
  dnnl::primitive primitive;
  std::unique_ptr<Argument> a, b, out;
  int arg_a, arg_b, arg_out;
  std::mutex running;  // the internal buffers are shared: one execution at a time
};

std::mutex g_cache_lock;
std::unordered_map<std::string, std::unique_ptr<Kept>> g_cache;

Kept* Find(const std::string& key) {
  std::lock_guard<std::mutex> lock(g_cache_lock);
  auto it = g_cache.find(key);
  return it == g_cache.end() ? nullptr : it->second.get();
}

Kept* Keep(const std::string& key, std::unique_ptr<Kept> kept) {
  std::lock_guard<std::mutex> lock(g_cache_lock);
  auto& slot = g_cache[key];
  if (!slot) slot = std::move(kept);
  return slot.get();
}

Kept* ForwardPrimitive(const Geometry& g) {
  auto key = g.Key('f');
  if (Kept* kept = Find(key)) return kept;
  auto pd = ForwardDesc(g);
  std::unique_ptr<Kept> kept(new Kept{dnnl::convolution_forward(pd)});
  kept->a.reset(new Argument(g.Src(), pd.src_desc(), false));
  kept->b.reset(new Argument(g.Weights(), pd.weights_desc(), false));
  kept->out.reset(new Argument(g.Dst(), pd.dst_desc(), true));
  kept->arg_a = DNNL_ARG_SRC, kept->arg_b = DNNL_ARG_WEIGHTS, kept->arg_out = DNNL_ARG_DST;
  return Keep(key, std::move(kept));
}

Kept* BackwardDataPrimitive(const Geometry& g) {
  auto key = g.Key('d');
  if (Kept* kept = Find(key)) return kept;
  auto pd = dnnl::convolution_backward_data::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, Any(g.Src()), Any(g.Weights()), Any(g.Dst()), g.Strides(),
      g.Padding(), g.Padding(), ForwardDesc(g));
  std::unique_ptr<Kept> kept(new Kept{dnnl::convolution_backward_data(pd)});
  kept->a.reset(new Argument(g.Dst(), pd.diff_dst_desc(), false));
  kept->b.reset(new Argument(g.Weights(), pd.weights_desc(), false));
  kept->out.reset(new Argument(g.Src(), pd.diff_src_desc(), true));
  kept->arg_a = DNNL_ARG_DIFF_DST, kept->arg_b = DNNL_ARG_WEIGHTS, kept->arg_out = DNNL_ARG_DIFF_SRC;
  return Keep(key, std::move(kept));
}

Kept* BackwardWeightsPrimitive(const Geometry& g) {
  auto key = g.Key('w');
  if (Kept* kept = Find(key)) return kept;
  auto pd = dnnl::convolution_backward_weights::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, Any(g.Src()), Any(g.Weights()), Any(g.Dst()), g.Strides(),
      g.Padding(), g.Padding(), ForwardDesc(g));
  std::unique_ptr<Kept> kept(new Kept{dnnl::convolution_backward_weights(pd)});
  kept->a.reset(new Argument(g.Src(), pd.src_desc(), false));
  kept->b.reset(new Argument(g.Dst(), pd.diff_dst_desc(), false));
  kept->out.reset(new Argument(g.Weights(), pd.diff_weights_desc(), true));
  kept->arg_a = DNNL_ARG_SRC, kept->arg_b = DNNL_ARG_DIFF_DST, kept->arg_out = DNNL_ARG_DIFF_WEIGHTS;
  return Keep(key, std::move(kept));
}

void Run(Kept* kept, const paddle::Tensor& a, const paddle::Tensor& b, paddle::Tensor* out) {
  std::lock_guard<std::mutex> lock(kept->running);
  memory ma = kept->a->In(a.data<float>());
  memory mb = kept->b->In(b.data<float>());
  memory mo = kept->out->Target(out->data<float>());
  kept->primitive.execute(Stream(), {{kept->arg_a, ma}, {kept->arg_b, mb}, {kept->arg_out, mo}});
  kept->out->Out(out->data<float>());
  Stream().wait();
}

// Elementwise primitives on plain 1-D buffers of n elements, kept per key.
struct KeptElementwise {
  dnnl::primitive primitive;
  memory::desc desc;
};

std::mutex g_elementwise_lock;
std::unordered_map<std::string, std::unique_ptr<KeptElementwise>> g_elementwise;

template <typename Make>
KeptElementwise* Elementwise(const std::string& key, int64_t n, Make make) {
  std::lock_guard<std::mutex> lock(g_elementwise_lock);
  auto& slot = g_elementwise[key];
  if (!slot) {
    memory::desc desc({n}, memory::data_type::f32, memory::format_tag::a);
    slot.reset(new KeptElementwise{make(desc), desc});
  }
  return slot.get();
}

// V * (X > 0 ? 1 : slope): oneDNN's ReLU backward with alpha = slope; X is its "src", V its
// "diff_dst".
KeptElementwise* MaskPrimitive(int64_t n, float slope) {
  return Elementwise("mask," + std::to_string(n) + "," + std::to_string(slope), n, [&](const memory::desc& d) {
    auto hint = dnnl::eltwise_forward::primitive_desc(Engine(), dnnl::prop_kind::forward_training,
                                                      dnnl::algorithm::eltwise_relu, d, d, slope, 0.f);
    return dnnl::primitive(dnnl::eltwise_backward(
        dnnl::eltwise_backward::primitive_desc(Engine(), dnnl::algorithm::eltwise_relu, d, d, d, slope, 0.f, hint)));
  });
}

// A * B: oneDNN's binary multiply.
KeptElementwise* MultiplyPrimitive(int64_t n) {
  return Elementwise("mul," + std::to_string(n), n, [&](const memory::desc& d) {
    return dnnl::primitive(dnnl::binary(dnnl::binary::primitive_desc(Engine(), dnnl::algorithm::binary_mul, d, d, d)));
  });
}

// Runs ``find(n)``'s primitive on two float32 CPU tensors of one shape into a new one.
template <typename Find>
paddle::Tensor RunElementwise(const paddle::Tensor& a, const paddle::Tensor& b, int arg_a, int arg_b, int arg_out,
                              Find find) {
  PD_CHECK(a.is_cpu() && b.is_cpu(), "inputs must be CPU tensors");
  PD_CHECK(a.dtype() == paddle::DataType::FLOAT32 && b.dtype() == paddle::DataType::FLOAT32, "inputs must be float32");
  PD_CHECK(a.shape() == b.shape(), "inputs must have the same shape");
  auto out = paddle::empty(a.shape(), paddle::DataType::FLOAT32, a.place());
  int64_t n = a.numel();
  if (n == 0) return out;
  KeptElementwise* kept = find(n);
  auto ac = a.contiguous(), bc = b.contiguous();
  memory ma(kept->desc, Engine(), const_cast<float*>(ac.data<float>()));
  memory mb(kept->desc, Engine(), const_cast<float*>(bc.data<float>()));
  memory mo(kept->desc, Engine(), out.data<float>());
  kept->primitive.execute(Stream(), {{arg_a, ma}, {arg_b, mb}, {arg_out, mo}});
  Stream().wait();
  return out;
}

void Check(const paddle::Tensor& t, const char* name) {
  PD_CHECK(t.is_cpu(), name, " must be a CPU tensor");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, name, " must be float32");
  PD_CHECK(t.shape().size() == 4, name, " must be 4-D (N, C, H, W)");
}

paddle::Tensor Empty(const Dims& dims, const paddle::Place& place) {
  return paddle::empty(std::vector<int64_t>(dims.begin(), dims.end()), paddle::DataType::FLOAT32, place);
}

int64_t OutSide(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

}  // namespace

std::vector<paddle::Tensor> ConvForward(const paddle::Tensor& x, const paddle::Tensor& w,
                                        const std::vector<int64_t>& strides, const std::vector<int64_t>& pads) {
  Check(x, "X");
  Check(w, "W");
  auto xs = x.shape(), ws = w.shape();
  Geometry g{xs[0], xs[1], xs[2], xs[3], ws[0], 0, 0, ws[2], ws[3], strides[0], strides[1], pads[0], pads[1]};
  g.oh = OutSide(g.ih, g.kh, g.sh, g.ph);
  g.ow = OutSide(g.iw, g.kw, g.sw, g.pw);
  auto y = Empty(g.Dst(), x.place());
  Run(ForwardPrimitive(g), x.contiguous(), w.contiguous(), &y);
  return {y};
}

std::vector<paddle::Tensor> ConvBackwardData(const paddle::Tensor& dy, const paddle::Tensor& w,
                                             const std::vector<int64_t>& strides, const std::vector<int64_t>& pads,
                                             const std::vector<int64_t>& in_hw) {
  Check(dy, "DY");
  Check(w, "W");
  auto ds = dy.shape(), ws = w.shape();
  Geometry g{ds[0], ws[1], in_hw[0], in_hw[1], ws[0], ds[2], ds[3], ws[2], ws[3], strides[0], strides[1], pads[0],
             pads[1]};
  auto dx = Empty(g.Src(), dy.place());
  Run(BackwardDataPrimitive(g), dy.contiguous(), w.contiguous(), &dx);
  return {dx};
}

std::vector<paddle::Tensor> ConvBackwardWeights(const paddle::Tensor& x, const paddle::Tensor& dy,
                                                const std::vector<int64_t>& strides,
                                                const std::vector<int64_t>& pads, const std::vector<int64_t>& k_hw) {
  Check(x, "X");
  Check(dy, "DY");
  auto xs = x.shape(), ds = dy.shape();
  Geometry g{xs[0], xs[1], xs[2], xs[3], ds[1], ds[2], ds[3], k_hw[0], k_hw[1], strides[0], strides[1], pads[0],
             pads[1]};
  auto dw = Empty(g.Weights(), x.place());
  Run(BackwardWeightsPrimitive(g), x.contiguous(), dy.contiguous(), &dw);
  return {dw};
}

std::vector<paddle::Tensor> LeakyReluMask(const paddle::Tensor& v, const paddle::Tensor& x, float slope) {
  return {RunElementwise(x, v, DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC,
                         [&](int64_t n) { return MaskPrimitive(n, slope); })};
}

std::vector<paddle::Tensor> Multiply(const paddle::Tensor& a, const paddle::Tensor& b) {
  return {RunElementwise(a, b, DNNL_ARG_SRC_0, DNNL_ARG_SRC_1, DNNL_ARG_DST, MultiplyPrimitive)};
}

std::vector<std::vector<int64_t>> SameShape(const std::vector<int64_t>& vs, const std::vector<int64_t>&) { return {vs}; }

std::vector<std::vector<int64_t>> ConvForwardShape(const std::vector<int64_t>& xs, const std::vector<int64_t>& ws,
                                                   const std::vector<int64_t>& strides,
                                                   const std::vector<int64_t>& pads) {
  return {{xs[0], ws[0], OutSide(xs[2], ws[2], strides[0], pads[0]), OutSide(xs[3], ws[3], strides[1], pads[1])}};
}

std::vector<std::vector<int64_t>> ConvBackwardDataShape(const std::vector<int64_t>& ds, const std::vector<int64_t>& ws,
                                                        const std::vector<int64_t>&, const std::vector<int64_t>&,
                                                        const std::vector<int64_t>& in_hw) {
  return {{ds[0], ws[1], in_hw[0], in_hw[1]}};
}

std::vector<std::vector<int64_t>> ConvBackwardWeightsShape(const std::vector<int64_t>& xs,
                                                           const std::vector<int64_t>& ds,
                                                           const std::vector<int64_t>&, const std::vector<int64_t>&,
                                                           const std::vector<int64_t>& k_hw) {
  return {{ds[1], xs[1], k_hw[0], k_hw[1]}};
}

std::vector<paddle::DataType> FirstDtype(const paddle::DataType& a, const paddle::DataType&) { return {a}; }

PD_BUILD_OP(pgk_conv_forward)
    .Inputs({"X", "W"})
    .Outputs({"Y"})
    .Attrs({"strides: std::vector<int64_t>", "pads: std::vector<int64_t>"})
    .SetKernelFn(PD_KERNEL(ConvForward))
    .SetInferShapeFn(PD_INFER_SHAPE(ConvForwardShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));

PD_BUILD_OP(pgk_conv_backward_data)
    .Inputs({"DY", "W"})
    .Outputs({"DX"})
    .Attrs({"strides: std::vector<int64_t>", "pads: std::vector<int64_t>", "in_hw: std::vector<int64_t>"})
    .SetKernelFn(PD_KERNEL(ConvBackwardData))
    .SetInferShapeFn(PD_INFER_SHAPE(ConvBackwardDataShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));

PD_BUILD_OP(pgk_conv_backward_weights)
    .Inputs({"X", "DY"})
    .Outputs({"DW"})
    .Attrs({"strides: std::vector<int64_t>", "pads: std::vector<int64_t>", "k_hw: std::vector<int64_t>"})
    .SetKernelFn(PD_KERNEL(ConvBackwardWeights))
    .SetInferShapeFn(PD_INFER_SHAPE(ConvBackwardWeightsShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));

PD_BUILD_OP(pgk_leaky_relu_mask)
    .Inputs({"V", "X"})
    .Outputs({"Y"})
    .Attrs({"slope: float"})
    .SetKernelFn(PD_KERNEL(LeakyReluMask))
    .SetInferShapeFn(PD_INFER_SHAPE(SameShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));

PD_BUILD_OP(pgk_multiply)
    .Inputs({"A", "B"})
    .Outputs({"Y"})
    .SetKernelFn(PD_KERNEL(Multiply))
    .SetInferShapeFn(PD_INFER_SHAPE(SameShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));
