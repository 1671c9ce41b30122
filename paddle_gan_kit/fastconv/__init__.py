"""Fast CPU convolutions: oneDNN's direct kernels as Paddle custom operators, with fallback.

Paddle's eager CPU convolution is im2col plus one GEMM per sample. The Paddle wheel ships
oneDNN, whose direct convolution kernels do the same maths faster; ``onednn_conv.cc`` exposes
its three products (forward, backward-data, backward-weights) as custom operators, built once
per machine (``builder.py``). Each product's derivatives are the other two, so the PyLayers below
chain them into ``conv2d`` and ``conv2d_transpose`` differentiable to any order: the WGAN-GP
gradient penalty's double backward works through them.

The activations between the convolutions run on oneDNN too (:func:`leaky_relu`, also ReLU):
Paddle's CPU activation kernels and their gradients run on one thread, oneDNN's eltwise kernel
on all of them, and one operator, x * (x > 0 ? 1 : slope) with the mask held constant, serves
as the activation and every derivative of it. So does the WGAN-GP critic's per-sample layer
norm (:func:`layer_norm`): fused threaded loops for the normalisation, its Jacobian product and
its second derivative, and the per-channel scale and shift in one pass, where the
composition from Paddle's operators costs about twice as much in the penalty's double backward.

``configure("auto" | "onednn" | "paddle", device)`` chooses the backend once per process:
``auto`` uses oneDNN on the CPU when the build succeeds and a start-up self-check (a small
convolution and transposed convolution: outputs, input and weight gradients against Paddle's
own) passes, and Paddle's convolutions otherwise; the returned line says which and why. The
models' ``Conv2D``/``Conv2DTranspose`` (``models/layers.py``) call :func:`conv2d` /
:func:`conv2d_transpose`, which use the chosen backend.

A known limit on this backend: ``paddle.grad(loss, weights)`` for weights alone, while an input
of the convolution also requires gradients (a generator's images going into D), fails with
Paddle's "backward function should return None at 0 position": ``paddle.grad`` prunes that
input's gradient, and a PyLayer's backward cannot see which of its inputs were pruned. What the
toolkit runs works: ``backward()``, ``paddle.grad`` for all the leaves, and ``paddle.grad`` for
the input alone inside :func:`input_gradients_only` (the penalties). For code of your own that
takes weight gradients alone, detach the input or use Paddle's backend (``configure("paddle")``).
"""
from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle.autograd import PyLayer

from paddle_gan_kit.config import CONV_BACKEND_ENV
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.fastconv.builder import BuildError, build

BACKENDS = ("auto", "onednn", "paddle")
_state = {"backend": "paddle", "ops": None, "inputs_only": False}


def backend() -> str:
    """The convolution backend in use in this process: "onednn" or "paddle"."""
    return _state["backend"]


def _pair(value) -> list[int]:
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


# ---- the three products, chained so that each one's gradients are the other two -------------

def _wants(w) -> bool:
    """Whether a backward pass needs the weight gradient: not inside :func:`input_gradients_only`
    (``paddle.grad`` for the input alone prunes the weights, and a PyLayer must then return None)."""
    return not w.stop_gradient and not _state["inputs_only"]


@contextlib.contextmanager
def input_gradients_only():
    """Inside this block, backward passes through our convolutions compute no weight gradients:
    for ``paddle.grad(outputs, [x])`` taken for the input alone (the gradient penalty's and R1's
    inner gradient). The graph they build for a later double backward still reaches the weights.
    Nothing changes on Paddle's own convolutions."""
    previous = _state["inputs_only"]
    _state["inputs_only"] = True
    try:
        yield
    finally:
        _state["inputs_only"] = previous


# Each PyLayer carries the convolution's geometry: strides (2 values), pads (4: top, bottom, left,
# right) and the number of groups.

class _Forward(PyLayer):
    """Y = conv(X, W)."""

    @staticmethod
    def forward(ctx, x, w, strides, pads, groups):
        ctx.save_for_backward(x, w)
        ctx.geometry = (strides, pads, groups)
        return _state["ops"].pgk_conv_forward(x, w, strides, pads, groups)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensor()
        geometry = ctx.geometry
        dx = _BackwardData.apply(dy, w, list(x.shape[2:]), *geometry) if not x.stop_gradient else None
        dw = _BackwardWeights.apply(x, dy, list(w.shape[2:]), *geometry) if _wants(w) else None
        return dx, dw


class _BackwardData(PyLayer):
    """DX = conv^T(DY, W): the input gradient of a convolution, and a transposed convolution."""

    @staticmethod
    def forward(ctx, dy, w, in_hw, strides, pads, groups):
        ctx.save_for_backward(dy, w)
        ctx.geometry = (strides, pads, groups)
        return _state["ops"].pgk_conv_backward_data(dy, w, strides, pads, in_hw, groups)

    @staticmethod
    def backward(ctx, g):
        dy, w = ctx.saved_tensor()
        geometry = ctx.geometry
        d_dy = _Forward.apply(g, w, *geometry) if not dy.stop_gradient else None
        dw = _BackwardWeights.apply(g, dy, list(w.shape[2:]), *geometry) if _wants(w) else None
        return d_dy, dw


class _BackwardWeights(PyLayer):
    """DW = the weight gradient of a convolution with input X and output gradient DY."""

    @staticmethod
    def forward(ctx, x, dy, k_hw, strides, pads, groups):
        ctx.save_for_backward(x, dy)
        ctx.geometry = (strides, pads, groups)
        return _state["ops"].pgk_conv_backward_weights(x, dy, strides, pads, k_hw, groups)

    @staticmethod
    def backward(ctx, g):
        x, dy = ctx.saved_tensor()
        geometry = ctx.geometry
        dx = _BackwardData.apply(dy, g, list(x.shape[2:]), *geometry) if not x.stop_gradient else None
        d_dy = _Forward.apply(x, g, *geometry) if not dy.stop_gradient else None
        return dx, d_dy


class _LeakyMask(PyLayer):
    """V * (X > 0 ? 1 : slope) for a constant X: linear in V, so its gradient is itself."""

    @staticmethod
    def forward(ctx, v, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return _state["ops"].pgk_leaky_relu_mask(v, x, slope)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensor()
        return _LeakyMask.apply(g, x, ctx.slope), None


class _Kept:
    """Tensors a PyLayer keeps for its backward without making them inputs (constants there)."""

    def __init__(self, *tensors):
        self.tensors = tensors


class _LayerNorm(PyLayer):
    """XH = (X - mean) / sqrt(var + eps) over each sample's values (rows of an (N, D) view)."""

    @staticmethod
    def forward(ctx, x, epsilon):
        xh, rstd = _state["ops"].pgk_layer_norm(x, epsilon)
        ctx.save_for_backward(x)
        # a detached view, not the output itself: the output's grad node holds this context, so
        # keeping the output here would be a cycle through Paddle's C++ graph that no garbage
        # collector frees (every penalty step's activations leaked so)
        ctx.kept = _Kept(xh.detach(), rstd)
        return xh

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensor()
        return _LayerNormGrad.apply(g, x, ctx.kept)


class _LayerNormGrad(PyLayer):
    """DX = J G, the layer norm's input gradient (J: the normalisation's symmetric Jacobian at
    X). Linear in G, so its G-gradient is J H again; its X-gradient, the second derivative of the
    normalisation, is one more operator. That one is not differentiable further: derivatives to
    second order, what the gradient penalty and R1 take, and no third."""

    @staticmethod
    def forward(ctx, g, x, kept):
        ctx.save_for_backward(g, x)
        ctx.kept = kept
        return _state["ops"].pgk_layer_norm_grad(g, *kept.tensors)

    @staticmethod
    def backward(ctx, h):
        g, x = ctx.saved_tensor()
        d_g = _LayerNormGrad.apply(h, x, ctx.kept) if not g.stop_gradient else None
        d_x = _state["ops"].pgk_layer_norm_grad2(g, h, *ctx.kept.tensors) if not x.stop_gradient else None
        return d_g, d_x


class _FrozenConv(PyLayer):
    """Y = clip(conv(X, W) + B, 0, top) (top 0: no clip) for constant W and B, one oneDNN
    primitive; the gradient reaches X alone, to first order (the frozen network of the projected
    D, which no penalty differentiates twice)."""

    @staticmethod
    def forward(ctx, x, w, b, strides, pads, groups, top):
        y = _state["ops"].pgk_frozen_conv(x, w, b, strides, pads, groups, top)
        # a detached view of the output, not the output itself (see _LayerNorm: no cycle through
        # the output's grad node)
        ctx.kept = _Kept(w, y.detach())
        ctx.geometry = (strides, pads, list(x.shape[2:]), groups, top)
        return y

    @staticmethod
    def backward(ctx, g):
        w, y = ctx.kept.tensors
        strides, pads, in_hw, groups, top = ctx.geometry
        if top > 0:
            g = _state["ops"].pgk_clip_mask(g, y, top)
        return _state["ops"].pgk_conv_backward_data(g, w, strides, pads, in_hw, groups), None, None


def _scale_gradients(g, x, w):
    """The gradients of X * W[c] with respect to X and W, differentiable in turn."""
    dx = _ChannelScale.apply(g, w) if not x.stop_gradient else None
    dw = _ChannelDot.apply(g, x).reshape(w.shape) if _wants(w) else None
    return dx, dw


class _ChannelAffine(PyLayer):
    """X * W[c] + B[c] on each channel c of X (N, C, ...); W and B hold C values each."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w, b)
        return _state["ops"].pgk_channel_affine(x, w, b)

    @staticmethod
    def backward(ctx, g):
        x, w, b = ctx.saved_tensor()
        db = _ChannelSum.apply(g).reshape(b.shape) if _wants(b) else None
        return (*_scale_gradients(g, x, w), db)


class _ChannelScale(PyLayer):
    """X * W[c] on each channel c of X (N, C, ...); W holds C values."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return _state["ops"].pgk_channel_scale(x, w)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensor()
        return _scale_gradients(g, x, w)


class _ChannelSum(PyLayer):
    """(C,): the sum of A over the samples and positions of each channel."""

    @staticmethod
    def forward(ctx, a):
        ctx.shape = a.shape
        return _state["ops"].pgk_channel_sum(a)

    @staticmethod
    def backward(ctx, g):
        return g.reshape([1, -1] + [1] * (len(ctx.shape) - 2)).expand(ctx.shape)


class _ChannelDot(PyLayer):
    """(C,): the sum of A * B over the samples and positions of each channel."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _state["ops"].pgk_channel_dot(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensor()
        return (_ChannelScale.apply(b, g) if not a.stop_gradient else None,
                _ChannelScale.apply(a, g) if not b.stop_gradient else None)


# ---- what the models call --------------------------------------------------------------------

def _ours(x) -> bool:
    """oneDNN takes float32 tensors on the CPU when it is the backend; Paddle takes the rest."""
    return _state["backend"] == "onednn" and x.dtype == paddle.float32 and x.place.is_cpu_place()


def _pads(padding) -> list[int]:
    """An int, (H, W) or (top, bottom, left, right) padding as the four values, Paddle's order."""
    if isinstance(padding, int):
        return [padding] * 4
    values = [int(p) for p in padding]
    return [values[0], values[0], values[1], values[1]] if len(values) == 2 else values


def conv2d(x, weight, stride=1, padding=0, groups: int = 1):
    """A convolution without bias, as ``F.conv2d``: x (N, IC, H, W), weight (OC, IC / groups, KH,
    KW); ``padding`` an int, (H, W), or Paddle's (top, bottom, left, right)."""
    if not _ours(x):
        given = padding if isinstance(padding, int) or len(padding) == 2 else list(padding)
        return F.conv2d(x, weight, None, stride=stride, padding=given, groups=groups)
    return _Forward.apply(x, weight, _pair(stride), _pads(padding), int(groups))


def frozen_conv(x, weight, bias, stride=1, padding=0, groups: int = 1, clip: float = 0.0):
    """``min(max(conv2d(x, weight) + bias, 0), clip)`` (``clip`` 0: no clip; 6: ReLU6) for a
    frozen layer (no gradient for ``weight`` or ``bias``) as one oneDNN primitive, its input
    gradient to first order; None on Paddle's backend, where the caller composes it."""
    if not _ours(x):
        return None
    return _FrozenConv.apply(x, weight, bias, _pair(stride), _pads(padding), int(groups), float(clip))


def conv2d_transpose(x, weight, stride=1, padding=0):
    """A transposed convolution without bias: x (N, IC, H, W), weight (IC, OC, KH, KW) (Paddle's
    ``Conv2DTranspose`` layout), as ``F.conv2d_transpose`` without output padding."""
    if not _ours(x):
        return F.conv2d_transpose(x, weight, None, stride=stride, padding=padding)
    strides, pads = _pair(stride), _pair(padding)
    out_hw = [(x.shape[2 + i] - 1) * strides[i] - 2 * pads[i] + weight.shape[2 + i] for i in range(2)]
    return _BackwardData.apply(x, weight, out_hw, strides, _pads(pads), 1)


def leaky_relu(x, slope: float = 0.01):
    """Leaky ReLU, ``F.leaky_relu(x, slope)``; slope 0 is ReLU. On the oneDNN backend, forward
    and every derivative are one threaded pass each: y = x * m(x) and dy/dx = m(x) with
    m(x) = 1 where x > 0, else ``slope``, held constant. At exactly 0 the gradient is ``slope``
    (oneDNN's convention, and Paddle's for ReLU; Paddle's leaky_relu takes 1 there)."""
    if not _ours(x):
        return F.leaky_relu(x, slope) if slope else F.relu(x)
    return _LeakyMask.apply(x, x.detach(), float(slope))


def layer_norm(x, weight, bias, epsilon: float = 1e-5):
    """Layer norm over each sample's (C, H, W), then a per-channel scale and shift: ``x``
    (N, C, H, W), ``weight`` and ``bias`` (C values each). On the oneDNN backend, fused
    threaded operators with analytic derivatives to second order (enough for the gradient
    penalty and R1); None on Paddle's backend, where the caller composes it from Paddle's
    operators."""
    if not _ours(x):
        return None
    return _ChannelAffine.apply(_LayerNorm.apply(x, float(epsilon)), weight, bias)


def affine_activation(x, scale, shift, slope: float):
    """Inference only (no gradient flows through it): ``x * scale[c] + shift[c]`` on every
    channel c of ``x`` (N, C, ...), then leaky ReLU with ``slope`` (0: ReLU), in one threaded
    pass on the oneDNN backend; None elsewhere, where the caller runs its layers one by one."""
    if not _ours(x):
        return None
    return _state["ops"].pgk_channel_affine_act(x, scale, shift, float(slope))


# ---- choosing the backend ----------------------------------------------------------------------

def self_check() -> str | None:
    """None when oneDNN's convolution and transposed convolution give Paddle's outputs, input
    gradients and weight gradients on small random inputs (to 1e-4); else what differs."""
    rng = np.random.default_rng(0)

    def depthwise(fn):  # a 5x5 depthwise convolution with TensorFlow's "SAME" padding at stride 2
        return lambda x, w, stride, padding: fn(x, w, stride=stride, padding=[1, 2, 1, 2], groups=6)

    cases = [(conv2d, F.conv2d, (2, 3, 9, 9), (4, 3, 4, 4)),
             (conv2d_transpose, F.conv2d_transpose, (2, 4, 5, 5), (4, 3, 4, 4)),
             (depthwise(conv2d), depthwise(F.conv2d), (2, 6, 8, 8), (6, 1, 5, 5))]
    for ours, reference, x_shape, w_shape in cases:
        x_np, w_np = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
        results = []
        for fn in (ours, reference):
            x = paddle.to_tensor(x_np, stop_gradient=False)
            w = paddle.to_tensor(w_np, stop_gradient=False)
            y = fn(x, w, stride=2, padding=1)
            probe = paddle.to_tensor(np.linspace(-1, 1, int(np.prod(y.shape)), dtype=np.float32).reshape(y.shape))
            dx, dw = paddle.grad((y * probe).sum(), [x, w])
            results.append([y.numpy(), dx.numpy(), dw.numpy()])
        for what, a, b in zip(("output", "input gradient", "weight gradient"), *results):
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=1e-5):
                return f"{ours.__name__} {what} differs from Paddle's"
    return None


def configure(choice: str, device: str, progress=None) -> str:
    """Choose the convolution backend for this process; returns one line saying which and why.

    ``choice``: "auto" (oneDNN on the CPU when it builds and checks out, else Paddle),
    "onednn" (a one-line error where it cannot work) or "paddle". ``device``: Paddle's device
    string; oneDNN is for the CPU only.
    """
    if choice not in BACKENDS:
        raise GanKitError(f"unknown conv backend {choice!r}; choose one of {', '.join(BACKENDS)}")
    _state["backend"] = "paddle"
    if choice == "paddle":
        return "convolutions: Paddle's own (conv_backend paddle)"
    reason = None
    if not device.startswith("cpu"):
        reason = f"oneDNN convolutions are for the CPU and this run is on {device}"
    else:
        try:
            _state["ops"] = build(progress)
            _state["backend"] = "onednn"
            reason = self_check()
        except BuildError as exc:
            reason = str(exc)
        if reason is not None:
            _state["backend"] = "paddle"
    if reason is None:
        return "convolutions: oneDNN (direct kernels, built for this machine; conv_backend auto|onednn|paddle)"
    if choice == "onednn":
        raise GanKitError(f"--conv-backend onednn: {reason}; use --conv-backend auto or paddle")
    return f"convolutions: Paddle's own, because {reason}"


def configure_from_flag(choice: str | None) -> str:
    """``configure`` for the command-line tools that generate images: ``choice`` from their
    ``--conv-backend`` flag, else $PADDLE_GAN_KIT_CONV_BACKEND, else auto; on Paddle's device."""
    choice = choice or os.environ.get(CONV_BACKEND_ENV) or "auto"
    return configure(choice, paddle.device.get_device(), progress=lambda line: print(line, file=sys.stderr))


@contextlib.contextmanager
def using(name: str):
    """Run the block on backend ``name`` ("paddle" for exports, which must not contain our
    operators), then restore the process's backend."""
    previous = _state["backend"]
    if name == "onednn" and _state["ops"] is None:
        raise GanKitError("oneDNN convolutions were never built in this process; call fastconv.configure first")
    _state["backend"] = name
    try:
        yield
    finally:
        _state["backend"] = previous
