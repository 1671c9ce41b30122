// Convolutions on the CPU through oneDNN, and the elementwise passes around them, as Paddle custom
// operators (14 of them, each built with PD_BUILD_OP below).
//
// Paddle's eager CPU convolution is im2col + one GEMM per sample; oneDNN (which the Paddle wheel
// ships as libdnnl.so.3) has direct convolution kernels for the same maths. The three convolution
// operators are the three products of a convolution, each the adjoint of another, so Python chains them
// into convolution and transposed convolution differentiable to any order (fastconv/__init__.py):
//
//   pgk_conv_forward(X, W)        Y  = conv(X, W)                    X (N,IC,IH,IW), W (OC,IC/G,KH,KW)
//   pgk_conv_backward_data(DY, W) DX = conv^T(DY, W)                 DY (N,OC,OH,OW) -> (N,IC,IH,IW)
//   pgk_conv_backward_weights(X, DY) DW = correlation of X and DY    -> (OC,IC/G,KH,KW)
//
// with attributes strides (2), pads (4: top, bottom, left, right, as Paddle orders them; TensorFlow's
// "SAME" padding at stride 2 is asymmetric) and groups G (G = IC = OC: a depthwise convolution).
//
// Into at most 4 channels (a generator's last layer, a discriminator's input gradient),
// pgk_conv_backward_data runs on its own vectorised loops instead (BackwardDataDirect), where
// oneDNN's kernels are several times slower than the forward (docs/speed.md).
//
// and one for the activations between them (oneDNN's eltwise kernels, vectorised and threaded,
// where Paddle's CPU elementwise kernels run on one thread):
//
//   pgk_leaky_relu_mask(V, X)     V * (X > 0 ? 1 : slope)            any shape, V and X alike
//
// which is leaky ReLU (slope 0: ReLU) for V = X and its input gradient for V = DY.
//
// The WGAN-GP critic's layer norm over each sample, with its derivatives to second order (plain
// loops over rows, threaded with OpenMP, the runtime the wheel's oneDNN uses; row statistics in
// double). For one row of D values, XH = (X - mean) * RSTD, RSTD = 1 / sqrt(var + eps), and
// J = RSTD * (I - 1 1^T / D - XH XH^T / D) is the (symmetric) Jacobian of XH:
//
//   pgk_layer_norm(X)             XH, RSTD                           X (N, ...): rows of D
//   pgk_layer_norm_grad(G, XH, RSTD)      J G
//   pgk_layer_norm_grad2(G, H, XH, RSTD)  d<H, J G>/dX = -RSTD^2 * ((mean(HG) - mean(H) mean(G)
//                                 - 3ab) XH + b (G - mean(G)) + a (H - mean(H))),
//                                 a = mean(G XH), b = mean(H XH)
//
// and the per-channel scale and shift after it (the scale's derivatives are each other):
//
//   pgk_channel_affine(X, W, B)   X * W[c] + B[c]                    X (N, C, ...), W, B (C values)
//   pgk_channel_scale(X, W)       X * W[c]
//   pgk_channel_dot(A, B)         sum over n and positions of A * B  -> (C)
//   pgk_channel_sum(A)            sum over n and positions of A      -> (C)
//
// and, for inference only (no gradient), an eval-mode BatchNorm folded into a scale and shift,
// with the activation after it, in one pass:
//
//   pgk_channel_affine_act(X, W, B)  V = X * W[c] + B[c]; V > 0 ? V : V * slope
//
// and, for the frozen network of the projected discriminator (its BatchNorm folded into the
// convolutions), a convolution with its bias and ReLU6 as one primitive (the bias and the clip as
// oneDNN post-ops, where the composition is a bias pass and an activation pass on Paddle's
// single-threaded elementwise kernels), and the clip's input gradient:
//
//   pgk_frozen_conv(X, W, B)      Y = min(max(conv(X, W) + B, 0), top)   (top 0: no clip)
//   pgk_clip_mask(G, Y)           G * (0 < Y < top)
//
// Tensors stay plain NCHW / OIHW float32 in Paddle. Each primitive is created once per shape
// and kept; oneDNN chooses the memory formats its fastest kernels want (format "any"), and the
// reorders into and out of them are kept per shape too, so a step allocates nothing but scratch.
#include <algorithm>
#include <cmath>
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

// The geometry of one convolution; every primitive is keyed by it. ph, pw pad the top and left,
// pb, pr the bottom and right; g is the number of groups.
struct Geometry {
  int64_t n, ic, ih, iw, oc, oh, ow, kh, kw, sh, sw, ph, pw, pb, pr, g;

  std::string Key(char kind) const {
    std::string key(1, kind);
    for (int64_t v : {n, ic, ih, iw, oc, oh, ow, kh, kw, sh, sw, ph, pw, pb, pr, g}) key += "," + std::to_string(v);
    return key;
  }
  Dims Src() const { return {n, ic, ih, iw}; }
  // oneDNN's weights: grouped ones as (G, OC/G, IC/G, KH, KW), the same memory as Paddle's (OC, IC/G, KH, KW)
  Dims Weights() const { return g == 1 ? Dims{oc, ic, kh, kw} : Dims{g, oc / g, ic / g, kh, kw}; }
  Dims WeightsTensor() const { return {oc, ic / g, kh, kw}; }
  Dims Dst() const { return {n, oc, oh, ow}; }
  Dims Strides() const { return {sh, sw}; }
  Dims PaddingL() const { return {ph, pw}; }
  Dims PaddingR() const { return {pb, pr}; }
  bool Symmetric() const { return ph == pb && pw == pr; }
};

memory::desc Any(const Dims& dims) { return memory::desc(dims, memory::data_type::f32, memory::format_tag::any); }
memory::desc Plain(const Dims& dims) {
  return memory::desc(dims, memory::data_type::f32, dims.size() == 5 ? memory::format_tag::abcde : memory::format_tag::abcd);
}

// Each kept primitive owns its scratchpad (allocated once with it): in oneDNN's default
// ("library") mode the same kernels ran 10-17% slower per call (one measurement, AVX-512 Xeon,
// DCGAN-32, read from ONEDNN_VERBOSE) than with a kept one, as PyTorch passes its own.
dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, Any(g.Src()),
      Any(g.Weights()), Any(g.Dst()), g.Strides(), g.PaddingL(), g.PaddingR(), UserScratchpad());
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
  memory scratchpad;
  std::unique_ptr<Argument> a, b, out;
  int arg_a, arg_b, arg_out;
  std::mutex running;  // the internal buffers are shared: one execution at a time
  memory::desc bias;   // pgk_frozen_conv's bias (C values), passed as it is; empty for the others
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
  std::unique_ptr<Kept> kept(new Kept{dnnl::convolution_forward(pd), memory(pd.scratchpad_desc(), Engine())});
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
      g.PaddingL(), g.PaddingR(), ForwardDesc(g), UserScratchpad());
  std::unique_ptr<Kept> kept(new Kept{dnnl::convolution_backward_data(pd), memory(pd.scratchpad_desc(), Engine())});
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
      g.PaddingL(), g.PaddingR(), ForwardDesc(g), UserScratchpad());
  std::unique_ptr<Kept> kept(new Kept{dnnl::convolution_backward_weights(pd), memory(pd.scratchpad_desc(), Engine())});
  kept->a.reset(new Argument(g.Src(), pd.src_desc(), false));
  kept->b.reset(new Argument(g.Dst(), pd.diff_dst_desc(), false));
  kept->out.reset(new Argument(g.Weights(), pd.diff_weights_desc(), true));
  kept->arg_a = DNNL_ARG_SRC, kept->arg_b = DNNL_ARG_DIFF_DST, kept->arg_out = DNNL_ARG_DIFF_WEIGHTS;
  return Keep(key, std::move(kept));
}

void Run(Kept* kept, const paddle::Tensor& a, const paddle::Tensor& b, paddle::Tensor* out,
         const float* bias = nullptr) {
  std::lock_guard<std::mutex> lock(kept->running);
  memory ma = kept->a->In(a.data<float>());
  memory mb = kept->b->In(b.data<float>());
  memory mo = kept->out->Target(out->data<float>());
  std::unordered_map<int, memory> args{
      {kept->arg_a, ma}, {kept->arg_b, mb}, {kept->arg_out, mo}, {DNNL_ARG_SCRATCHPAD, kept->scratchpad}};
  if (bias != nullptr) args.insert({DNNL_ARG_BIAS, memory(kept->bias, Engine(), const_cast<float*>(bias))});
  kept->primitive.execute(Stream(), args);
  kept->out->Out(out->data<float>());
  Stream().wait();
}

// The frozen network's convolution: bias and clip fused into the forward-inference primitive.
Kept* FrozenPrimitive(const Geometry& g, float top) {
  auto key = g.Key('z') + "," + std::to_string(top);
  if (Kept* kept = Find(key)) return kept;
  dnnl::primitive_attr attr = UserScratchpad();
  if (top > 0) {
    dnnl::post_ops ops;
    ops.append_eltwise(dnnl::algorithm::eltwise_clip_v2, 0.f, top);
    attr.set_post_ops(ops);
  }
  memory::desc bias({g.oc}, memory::data_type::f32, memory::format_tag::a);
  auto pd = dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, Any(g.Src()), Any(g.Weights()),
      bias, Any(g.Dst()), g.Strides(), g.PaddingL(), g.PaddingR(), attr);
  std::unique_ptr<Kept> kept(new Kept{dnnl::convolution_forward(pd), memory(pd.scratchpad_desc(), Engine())});
  kept->a.reset(new Argument(g.Src(), pd.src_desc(), false));
  kept->b.reset(new Argument(g.Weights(), pd.weights_desc(), false));
  kept->out.reset(new Argument(g.Dst(), pd.dst_desc(), true));
  kept->arg_a = DNNL_ARG_SRC, kept->arg_b = DNNL_ARG_WEIGHTS, kept->arg_out = DNNL_ARG_DST;
  kept->bias = bias;
  return Keep(key, std::move(kept));
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

int64_t OutSide(int64_t in, int64_t k, int64_t s, int64_t before, int64_t after) {
  return (in + before + after - k) / s + 1;
}

int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// DX = conv^T(DY, W) into few channels (g.ic <= kDirectChannels): the generator's last layer
// (a transposed convolution into 1 or 3 image channels) and, in the gradient penalty, the
// discriminator's input gradient. oneDNN's backward-data kernels took 5-11x its forward kernel's
// time there for the same products (measured at DCGAN's shapes; its weight-gradient kernel stays
// at forward speed, and a version of it written like this one was 2-3x slower, so that one is
// oneDNN's everywhere); this takes 1.7-3.2x the forward time. Here, per sample, DX is split into
// its stride phases (iy = py + sh*qy, ix = px + sw*qx): each phase plane is a sum over oc and
// over the taps (ky, kx) of that phase of
// W[oc, i, ky, kx] * DY[n, oc] shifted by (cy, cx) = ((py + ph - ky) / sh, (px + pw - kx) / sw),
// both exact. With DY copied into a zero-padded plane of row length PW, a shift is an offset,
// so every tap is one long vectorised loop over a whole plane (rows of PW, the columns past the
// phase's own discarded). Any stride, padding and kernel.
constexpr int64_t kDirectChannels = 4;

struct Tap {
  int64_t offset, weight;  // into the padded DY plane; into W (oc = 0)
};

// On x86-64 with GCC, compiled for AVX-512, AVX2 and the build's baseline, chosen when the module
// loads (the baseline, SSE2, would leave these loops 4 floats wide); elsewhere for the baseline.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PGK_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define PGK_VECTOR_CLONES
#endif

// P[e] += sum over the taps t of W[t] * D[e + offset_t], e < length: four taps per pass.
PGK_VECTOR_CLONES
void AccumulateTaps(float* p, const float* d, const float* w, const std::vector<Tap>& taps, int64_t length) {
  size_t t = 0;
  for (; t + 4 <= taps.size(); t += 4) {
    const float w0 = w[taps[t].weight], w1 = w[taps[t + 1].weight], w2 = w[taps[t + 2].weight],
                w3 = w[taps[t + 3].weight];
    const float *d0 = d + taps[t].offset, *d1 = d + taps[t + 1].offset, *d2 = d + taps[t + 2].offset,
                *d3 = d + taps[t + 3].offset;
#pragma omp simd
    for (int64_t e = 0; e < length; ++e) p[e] += w0 * d0[e] + w1 * d1[e] + w2 * d2[e] + w3 * d3[e];
  }
  for (; t < taps.size(); ++t) {
    const float w0 = w[taps[t].weight];
    const float* d0 = d + taps[t].offset;
#pragma omp simd
    for (int64_t e = 0; e < length; ++e) p[e] += w0 * d0[e];
  }
}

void BackwardDataDirect(const Geometry& g, const float* dy, const float* w, float* dx) {
  // phase planes: rows_q x cols_q (the largest phase); shifts cy in [cy0, cy1], cx in [cx0, cx1]
  const int64_t rows_q = (g.ih + g.sh - 1) / g.sh, cols_q = (g.iw + g.sw - 1) / g.sw;
  const int64_t cy0 = FloorDiv(g.ph - (g.kh - 1), g.sh), cy1 = FloorDiv(g.sh - 1 + g.ph, g.sh);
  const int64_t cx0 = FloorDiv(g.pw - (g.kw - 1), g.sw), cx1 = FloorDiv(g.sw - 1 + g.pw, g.sw);
  const int64_t top = std::max<int64_t>(0, -cy0), left = std::max<int64_t>(0, -cx0);
  const int64_t bottom = std::max<int64_t>(0, rows_q + cy1 - g.oh) + 1;  // + 1: the last row's tail
  const int64_t pw = left + std::max(g.ow, cols_q + cx1);
  const int64_t prows = top + std::max(g.oh, rows_q + cy1) + bottom, plane = prows * pw, length = rows_q * pw;
  // the taps of each phase
  std::vector<std::vector<Tap>> taps(g.sh * g.sw);
  for (int64_t py = 0; py < g.sh; ++py)
    for (int64_t px = 0; px < g.sw; ++px)
      for (int64_t ky = 0; ky < g.kh; ++ky)
        for (int64_t kx = 0; kx < g.kw; ++kx) {
          const int64_t u = py + g.ph - ky, v = px + g.pw - kx, cy = FloorDiv(u, g.sh), cx = FloorDiv(v, g.sw);
          if (cy * g.sh != u || cx * g.sw != v) continue;  // the tap does not reach this phase
          taps[py * g.sw + px].push_back({(cy + top) * pw + cx + left, ky * g.kw + kx});
        }
#pragma omp parallel
  {
    std::vector<float> padded(g.oc * plane, 0.f), phase(length);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.n; ++n) {
      for (int64_t oc = 0; oc < g.oc; ++oc)
        for (int64_t oy = 0; oy < g.oh; ++oy)
          std::copy_n(dy + ((n * g.oc + oc) * g.oh + oy) * g.ow, g.ow,
                      padded.data() + oc * plane + (oy + top) * pw + left);
      for (int64_t i = 0; i < g.ic; ++i)
        for (int64_t py = 0; py < g.sh && py < g.ih; ++py)
          for (int64_t px = 0; px < g.sw && px < g.iw; ++px) {
            std::fill(phase.begin(), phase.end(), 0.f);
            for (int64_t oc = 0; oc < g.oc; ++oc)
              AccumulateTaps(phase.data(), padded.data() + oc * plane, w + (oc * g.ic + i) * g.kh * g.kw,
                             taps[py * g.sw + px], length);
            float* out = dx + (n * g.ic + i) * g.ih * g.iw;
            for (int64_t iy = py, qy = 0; iy < g.ih; iy += g.sh, ++qy)
              for (int64_t ix = px, qx = 0; ix < g.iw; ix += g.sw, ++qx) out[iy * g.iw + ix] = phase[qy * pw + qx];
          }
    }
  }
}

}  // namespace

Geometry Make(int64_t n, int64_t ic, int64_t ih, int64_t iw, int64_t oc, int64_t oh, int64_t ow, int64_t kh, int64_t kw,
              const std::vector<int64_t>& strides, const std::vector<int64_t>& pads, int64_t groups) {
  PD_CHECK(strides.size() == 2 && pads.size() == 4, "strides take 2 values and pads 4 (top, bottom, left, right)");
  PD_CHECK(groups >= 1 && ic % groups == 0 && oc % groups == 0, "the channels must divide into the groups");
  return Geometry{n, ic, ih, iw, oc, oh, ow, kh, kw, strides[0], strides[1], pads[0], pads[2], pads[1], pads[3], groups};
}

std::vector<paddle::Tensor> ConvForward(const paddle::Tensor& x, const paddle::Tensor& w,
                                        const std::vector<int64_t>& strides, const std::vector<int64_t>& pads,
                                        int64_t groups) {
  Check(x, "X");
  Check(w, "W");
  auto xs = x.shape(), ws = w.shape();
  Geometry g = Make(xs[0], xs[1], xs[2], xs[3], ws[0], 0, 0, ws[2], ws[3], strides, pads, groups);
  g.oh = OutSide(g.ih, g.kh, g.sh, g.ph, g.pb);
  g.ow = OutSide(g.iw, g.kw, g.sw, g.pw, g.pr);
  auto y = Empty(g.Dst(), x.place());
  Run(ForwardPrimitive(g), x.contiguous(), w.contiguous(), &y);
  return {y};
}

std::vector<paddle::Tensor> ConvBackwardData(const paddle::Tensor& dy, const paddle::Tensor& w,
                                             const std::vector<int64_t>& strides, const std::vector<int64_t>& pads,
                                             const std::vector<int64_t>& in_hw, int64_t groups) {
  Check(dy, "DY");
  Check(w, "W");
  auto ds = dy.shape(), ws = w.shape();
  Geometry g = Make(ds[0], ws[1] * groups, in_hw[0], in_hw[1], ws[0], ds[2], ds[3], ws[2], ws[3], strides, pads, groups);
  auto dx = Empty(g.Src(), dy.place());
  if (g.ic <= kDirectChannels && g.g == 1 && g.Symmetric()) {
    const auto dyc = dy.contiguous(), wc = w.contiguous();
    BackwardDataDirect(g, dyc.data<float>(), wc.data<float>(), dx.data<float>());
  } else {
    Run(BackwardDataPrimitive(g), dy.contiguous(), w.contiguous(), &dx);
  }
  return {dx};
}

std::vector<paddle::Tensor> ConvBackwardWeights(const paddle::Tensor& x, const paddle::Tensor& dy,
                                                const std::vector<int64_t>& strides,
                                                const std::vector<int64_t>& pads, const std::vector<int64_t>& k_hw,
                                                int64_t groups) {
  Check(x, "X");
  Check(dy, "DY");
  auto xs = x.shape(), ds = dy.shape();
  Geometry g = Make(xs[0], xs[1], xs[2], xs[3], ds[1], ds[2], ds[3], k_hw[0], k_hw[1], strides, pads, groups);
  auto dw = Empty(g.WeightsTensor(), x.place());
  Run(BackwardWeightsPrimitive(g), x.contiguous(), dy.contiguous(), &dw);
  return {dw};
}

std::vector<paddle::Tensor> FrozenConv(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor& b,
                                       const std::vector<int64_t>& strides, const std::vector<int64_t>& pads,
                                       int64_t groups, float top) {
  Check(x, "X");
  Check(w, "W");
  auto xs = x.shape(), ws = w.shape();
  Geometry g = Make(xs[0], xs[1], xs[2], xs[3], ws[0], 0, 0, ws[2], ws[3], strides, pads, groups);
  PD_CHECK(b.numel() == g.oc && b.is_cpu() && b.dtype() == paddle::DataType::FLOAT32, "B must hold OC floats");
  g.oh = OutSide(g.ih, g.kh, g.sh, g.ph, g.pb);
  g.ow = OutSide(g.iw, g.kw, g.sw, g.pw, g.pr);
  auto y = Empty(g.Dst(), x.place());
  const auto bc = b.contiguous();
  Run(FrozenPrimitive(g, top), x.contiguous(), w.contiguous(), &y, bc.data<float>());
  return {y};
}

std::vector<paddle::Tensor> ClipMask(const paddle::Tensor& grad, const paddle::Tensor& y, float top) {
  PD_CHECK(grad.shape() == y.shape(), "G and Y must have one shape");
  const auto gc = grad.contiguous(), yc = y.contiguous();
  auto out = paddle::empty(grad.shape(), paddle::DataType::FLOAT32, grad.place());
  const float *gp = gc.data<float>(), *yp = yc.data<float>();
  float* o = out.data<float>();
  const int64_t n = grad.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) o[i] = (yp[i] > 0.f && yp[i] < top) ? gp[i] : 0.f;
  return {out};
}

std::vector<paddle::Tensor> LeakyReluMask(const paddle::Tensor& v, const paddle::Tensor& x, float slope) {
  return {RunElementwise(x, v, DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC,
                         [&](int64_t n) { return MaskPrimitive(n, slope); })};
}

// ---- layer norm and channel scale ----------------------------------------------------------------

void CheckFloat(const paddle::Tensor& t, const char* name) {
  PD_CHECK(t.is_cpu(), name, " must be a CPU tensor");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, name, " must be float32");
  PD_CHECK(t.shape().size() >= 2, name, " must have a batch axis and at least one more");
}

// The sum of a row of d values, or of its products with another (b), in double; b may be null.
double RowSum(const float* a, const float* b, int64_t d) {
  double sum = 0.0;
  if (b == nullptr) {
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < d; ++j) sum += a[j];
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < d; ++j) sum += static_cast<double>(a[j]) * b[j];
  }
  return sum;
}

std::vector<paddle::Tensor> LayerNorm(const paddle::Tensor& x, float epsilon) {
  CheckFloat(x, "X");
  const auto xc = x.contiguous();
  const int64_t n = x.shape()[0], d = x.numel() / n;
  auto xh = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  auto rstd = paddle::empty({n}, paddle::DataType::FLOAT32, x.place());
  const float* in = xc.data<float>();
  float* out = xh.data<float>();
  float* r = rstd.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = in + i * d;
    float* o = out + i * d;
    const float mean = static_cast<float>(RowSum(row, nullptr, d) / d);
    for (int64_t j = 0; j < d; ++j) o[j] = row[j] - mean;
    const float s = static_cast<float>(1.0 / std::sqrt(RowSum(o, o, d) / d + epsilon));
    for (int64_t j = 0; j < d; ++j) o[j] *= s;
    r[i] = s;
  }
  return {xh, rstd};
}

std::vector<paddle::Tensor> LayerNormGrad(const paddle::Tensor& g, const paddle::Tensor& xh,
                                          const paddle::Tensor& rstd) {
  CheckFloat(g, "G");
  const auto gc = g.contiguous();
  const int64_t n = g.shape()[0], d = g.numel() / n;
  PD_CHECK(xh.numel() == g.numel() && rstd.numel() == n, "G, XH and RSTD do not match");
  auto dx = paddle::empty(g.shape(), paddle::DataType::FLOAT32, g.place());
  const float *gp = gc.data<float>(), *xp = xh.data<float>(), *r = rstd.data<float>();
  float* out = dx.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float *gr = gp + i * d, *xr = xp + i * d;
    float* o = out + i * d;
    const float g_mean = static_cast<float>(RowSum(gr, nullptr, d) / d);
    const float a = static_cast<float>(RowSum(gr, xr, d) / d);
    const float s = r[i];
    for (int64_t j = 0; j < d; ++j) o[j] = s * (gr[j] - g_mean - xr[j] * a);
  }
  return {dx};
}

std::vector<paddle::Tensor> LayerNormGrad2(const paddle::Tensor& g, const paddle::Tensor& h, const paddle::Tensor& xh,
                                           const paddle::Tensor& rstd) {
  CheckFloat(g, "G");
  CheckFloat(h, "H");
  const auto gc = g.contiguous(), hc = h.contiguous();
  const int64_t n = g.shape()[0], d = g.numel() / n;
  PD_CHECK(h.numel() == g.numel() && xh.numel() == g.numel() && rstd.numel() == n, "G, H, XH and RSTD do not match");
  auto q = paddle::empty(g.shape(), paddle::DataType::FLOAT32, g.place());
  const float *gp = gc.data<float>(), *hp = hc.data<float>(), *xp = xh.data<float>(), *r = rstd.data<float>();
  float* out = q.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float *gr = gp + i * d, *hr = hp + i * d, *xr = xp + i * d;
    float* o = out + i * d;
    const double g_mean = RowSum(gr, nullptr, d) / d, h_mean = RowSum(hr, nullptr, d) / d;
    const double a = RowSum(gr, xr, d) / d, b = RowSum(hr, xr, d) / d, hg = RowSum(hr, gr, d) / d;
    const double s2 = static_cast<double>(r[i]) * r[i];
    const float cx = static_cast<float>(-s2 * (hg - h_mean * g_mean - 3.0 * a * b));
    const float cg = static_cast<float>(-s2 * b), ch = static_cast<float>(-s2 * a);
    const float c0 = static_cast<float>(s2 * (b * g_mean + a * h_mean));
    for (int64_t j = 0; j < d; ++j) o[j] = cx * xr[j] + cg * gr[j] + ch * hr[j] + c0;
  }
  return {q};
}

// X * W[c] + B[c] (B null: no shift) into a new tensor; with ``activate``, then V where V > 0,
// else V * slope (slope 0: ReLU), in the same pass. The inner loops carry omp simd: without it
// -O2 leaves them scalar (and the activation with a branch per element).
paddle::Tensor ChannelAffineInto(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor* b,
                                 bool activate = false, float slope = 0.f) {
  CheckFloat(x, "X");
  const auto xc = x.contiguous(), wc = w.contiguous();
  const int64_t n = x.shape()[0], c = x.shape()[1], d = x.numel() / (n * c);
  PD_CHECK(w.numel() == c && (b == nullptr || b->numel() == c), "W and B must hold one value per channel of X");
  auto y = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  const paddle::Tensor bc = b == nullptr ? wc : b->contiguous();
  const float *xp = xc.data<float>(), *wp = wc.data<float>(), *bp = b == nullptr ? nullptr : bc.data<float>();
  float* out = y.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < n * c; ++k) {
    const float scale = wp[k % c], shift = bp == nullptr ? 0.f : bp[k % c];
    const float* xr = xp + k * d;
    float* o = out + k * d;
    if (!activate) {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) o[j] = xr[j] * scale + shift;
    } else if (slope == 0.f) {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) o[j] = std::max(xr[j] * scale + shift, 0.f);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) {
        const float v = xr[j] * scale + shift;  // v where v > 0, else v * slope, without a branch
        o[j] = std::max(v, 0.f) + slope * std::min(v, 0.f);
      }
    }
  }
  return y;
}

std::vector<paddle::Tensor> ChannelAffine(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor& b) {
  return {ChannelAffineInto(x, w, &b)};
}

std::vector<paddle::Tensor> ChannelScale(const paddle::Tensor& x, const paddle::Tensor& w) {
  return {ChannelAffineInto(x, w, nullptr)};
}

// Inference only (no gradient): an eval-mode BatchNorm (W, B folded from its running
// statistics) and the activation after it, which would otherwise be two passes over the tensor.
std::vector<paddle::Tensor> ChannelAffineAct(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor& b,
                                             float slope) {
  return {ChannelAffineInto(x, w, &b, true, slope)};
}

// Per channel, the sum over samples and positions of A, or of A * B (B null: of A alone).
paddle::Tensor ChannelReduce(const paddle::Tensor& a, const paddle::Tensor* b) {
  CheckFloat(a, "A");
  PD_CHECK(b == nullptr || a.shape() == b->shape(), "A and B must have one shape");
  const auto ac = a.contiguous();
  const paddle::Tensor bc = b == nullptr ? ac : b->contiguous();
  const int64_t n = a.shape()[0], c = a.shape()[1], d = a.numel() / (n * c);
  auto y = paddle::empty({c}, paddle::DataType::FLOAT32, a.place());
  const float *ap = ac.data<float>(), *bp = b == nullptr ? nullptr : bc.data<float>();
  float* out = y.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t offset = (i * c + ch) * d;
      sum += RowSum(ap + offset, bp == nullptr ? nullptr : bp + offset, d);
    }
    out[ch] = static_cast<float>(sum);
  }
  return y;
}

std::vector<paddle::Tensor> ChannelSum(const paddle::Tensor& a) { return {ChannelReduce(a, nullptr)}; }

std::vector<paddle::Tensor> ChannelDot(const paddle::Tensor& a, const paddle::Tensor& b) {
  CheckFloat(b, "B");
  return {ChannelReduce(a, &b)};
}

std::vector<std::vector<int64_t>> SameShape(const std::vector<int64_t>& vs, const std::vector<int64_t>&) { return {vs}; }

std::vector<std::vector<int64_t>> ConvForwardShape(const std::vector<int64_t>& xs, const std::vector<int64_t>& ws,
                                                   const std::vector<int64_t>& strides,
                                                   const std::vector<int64_t>& pads, int64_t) {
  return {{xs[0], ws[0], OutSide(xs[2], ws[2], strides[0], pads[0], pads[1]),
           OutSide(xs[3], ws[3], strides[1], pads[2], pads[3])}};
}

std::vector<std::vector<int64_t>> ConvBackwardDataShape(const std::vector<int64_t>& ds, const std::vector<int64_t>& ws,
                                                        const std::vector<int64_t>&, const std::vector<int64_t>&,
                                                        const std::vector<int64_t>& in_hw, int64_t groups) {
  return {{ds[0], ws[1] * groups, in_hw[0], in_hw[1]}};
}

std::vector<std::vector<int64_t>> ConvBackwardWeightsShape(const std::vector<int64_t>& xs,
                                                           const std::vector<int64_t>& ds,
                                                           const std::vector<int64_t>&, const std::vector<int64_t>&,
                                                           const std::vector<int64_t>& k_hw, int64_t groups) {
  return {{ds[1], xs[1] / groups, k_hw[0], k_hw[1]}};
}

std::vector<paddle::DataType> FirstDtype(const paddle::DataType& a, const paddle::DataType&) { return {a}; }

std::vector<std::vector<int64_t>> FrozenConvShape(const std::vector<int64_t>& xs, const std::vector<int64_t>& ws,
                                                  const std::vector<int64_t>&, const std::vector<int64_t>& strides,
                                                  const std::vector<int64_t>& pads, int64_t groups, float) {
  return ConvForwardShape(xs, ws, strides, pads, groups);
}

std::vector<std::vector<int64_t>> LayerNormShape(const std::vector<int64_t>& xs) { return {xs, {xs[0]}}; }
std::vector<paddle::DataType> LayerNormDtype(const paddle::DataType& a) { return {a, a}; }
std::vector<std::vector<int64_t>> FirstShape3(const std::vector<int64_t>& gs, const std::vector<int64_t>&,
                                              const std::vector<int64_t>&) { return {gs}; }
std::vector<paddle::DataType> FirstDtype3(const paddle::DataType& a, const paddle::DataType&,
                                          const paddle::DataType&) { return {a}; }
std::vector<std::vector<int64_t>> FirstShape4(const std::vector<int64_t>& gs, const std::vector<int64_t>&,
                                              const std::vector<int64_t>&, const std::vector<int64_t>&) { return {gs}; }
std::vector<paddle::DataType> FirstDtype4(const paddle::DataType& a, const paddle::DataType&,
                                          const paddle::DataType&, const paddle::DataType&) { return {a}; }
std::vector<std::vector<int64_t>> ChannelDotShape(const std::vector<int64_t>& as, const std::vector<int64_t>&) {
  return {{as[1]}};
}
std::vector<std::vector<int64_t>> ChannelSumShape(const std::vector<int64_t>& as) { return {{as[1]}}; }
std::vector<paddle::DataType> OneDtype(const paddle::DataType& a) { return {a}; }

PD_BUILD_OP(pgk_conv_forward)
    .Inputs({"X", "W"})
    .Outputs({"Y"})
    .Attrs({"strides: std::vector<int64_t>", "pads: std::vector<int64_t>", "groups: int64_t"})
    .SetKernelFn(PD_KERNEL(ConvForward))
    .SetInferShapeFn(PD_INFER_SHAPE(ConvForwardShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));

PD_BUILD_OP(pgk_frozen_conv)
    .Inputs({"X", "W", "B"})
    .Outputs({"Y"})
    .Attrs({"strides: std::vector<int64_t>", "pads: std::vector<int64_t>", "groups: int64_t", "top: float"})
    .SetKernelFn(PD_KERNEL(FrozenConv))
    .SetInferShapeFn(PD_INFER_SHAPE(FrozenConvShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype3));

PD_BUILD_OP(pgk_clip_mask)
    .Inputs({"G", "Y"})
    .Outputs({"DX"})
    .Attrs({"top: float"})
    .SetKernelFn(PD_KERNEL(ClipMask))
    .SetInferShapeFn(PD_INFER_SHAPE(SameShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));

PD_BUILD_OP(pgk_conv_backward_data)
    .Inputs({"DY", "W"})
    .Outputs({"DX"})
    .Attrs({"strides: std::vector<int64_t>", "pads: std::vector<int64_t>", "in_hw: std::vector<int64_t>",
            "groups: int64_t"})
    .SetKernelFn(PD_KERNEL(ConvBackwardData))
    .SetInferShapeFn(PD_INFER_SHAPE(ConvBackwardDataShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));

PD_BUILD_OP(pgk_conv_backward_weights)
    .Inputs({"X", "DY"})
    .Outputs({"DW"})
    .Attrs({"strides: std::vector<int64_t>", "pads: std::vector<int64_t>", "k_hw: std::vector<int64_t>",
            "groups: int64_t"})
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

PD_BUILD_OP(pgk_layer_norm)
    .Inputs({"X"})
    .Outputs({"XH", "RSTD"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(LayerNorm))
    .SetInferShapeFn(PD_INFER_SHAPE(LayerNormShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LayerNormDtype));

PD_BUILD_OP(pgk_layer_norm_grad)
    .Inputs({"G", "XH", "RSTD"})
    .Outputs({"DX"})
    .SetKernelFn(PD_KERNEL(LayerNormGrad))
    .SetInferShapeFn(PD_INFER_SHAPE(FirstShape3))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype3));

PD_BUILD_OP(pgk_layer_norm_grad2)
    .Inputs({"G", "H", "XH", "RSTD"})
    .Outputs({"DX"})
    .SetKernelFn(PD_KERNEL(LayerNormGrad2))
    .SetInferShapeFn(PD_INFER_SHAPE(FirstShape4))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype4));

PD_BUILD_OP(pgk_channel_affine)
    .Inputs({"X", "W", "B"})
    .Outputs({"Y"})
    .SetKernelFn(PD_KERNEL(ChannelAffine))
    .SetInferShapeFn(PD_INFER_SHAPE(FirstShape3))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype3));

PD_BUILD_OP(pgk_channel_affine_act)
    .Inputs({"X", "W", "B"})
    .Outputs({"Y"})
    .Attrs({"slope: float"})
    .SetKernelFn(PD_KERNEL(ChannelAffineAct))
    .SetInferShapeFn(PD_INFER_SHAPE(FirstShape3))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype3));

PD_BUILD_OP(pgk_channel_sum)
    .Inputs({"A"})
    .Outputs({"Y"})
    .SetKernelFn(PD_KERNEL(ChannelSum))
    .SetInferShapeFn(PD_INFER_SHAPE(ChannelSumShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(OneDtype));

PD_BUILD_OP(pgk_channel_scale)
    .Inputs({"X", "W"})
    .Outputs({"Y"})
    .SetKernelFn(PD_KERNEL(ChannelScale))
    .SetInferShapeFn(PD_INFER_SHAPE(SameShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));

PD_BUILD_OP(pgk_channel_dot)
    .Inputs({"A", "B"})
    .Outputs({"Y"})
    .SetKernelFn(PD_KERNEL(ChannelDot))
    .SetInferShapeFn(PD_INFER_SHAPE(ChannelDotShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstDtype));
