"""The models' convolutions (on the process's convolution backend) and double-backward-capable norms.

``Conv2D`` and ``Conv2DTranspose`` keep ``nn.Conv2D``'s and ``nn.Conv2DTranspose``'s parameters
(names, shapes, initialisation, so snapshots load either way) but convolve through
``fastconv`` (oneDNN's kernels on the CPU when they built, else Paddle's own) and add the bias
through a (N, C, H*W) view: Paddle's CPU elementwise kernels are fast when the smaller operand
broadcasts along leading or trailing axes and several times slower for the (1, C, 1, 1)
broadcast ``nn.Conv2D`` uses (docs/speed.md has the numbers).
"""
from __future__ import annotations

import contextlib

import paddle
from paddle import nn

from paddle_gan_kit import fastconv


def add_channel_bias(x, bias):
    """``x`` (N, C, H, W) plus ``bias`` (C,) on every channel, through a (N, C, H*W) view."""
    n, c, h, w = x.shape
    return (x.reshape([n, c, h * w]) + bias.reshape([c, 1])).reshape([n, c, h, w])


class _ChannelBiasConv:
    """Shared by the two convs below: the conv without bias, then ``add_channel_bias``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias_attr=None):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         bias_attr=bias_attr)
        self.conv_stride, self.conv_padding = stride, padding

    def forward(self, x):
        out = self.convolve(x, self.weight, stride=self.conv_stride, padding=self.conv_padding)
        return out if self.bias is None else add_channel_bias(out, self.bias)


class Conv2D(_ChannelBiasConv, nn.Conv2D):
    """``nn.Conv2D`` (NCHW, same parameters) on the convolution backend, bias by ``add_channel_bias``."""

    convolve = staticmethod(fastconv.conv2d)


class Conv2DTranspose(_ChannelBiasConv, nn.Conv2DTranspose):
    """``nn.Conv2DTranspose`` (NCHW, same parameters) on the convolution backend, bias by
    ``add_channel_bias``."""

    convolve = staticmethod(fastconv.conv2d_transpose)


class UpsampleConv2D(Conv2D):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution (padding 1), computed as the
    one stride-2 transposed convolution it equals: (N, IC, H, W) -> (N, OC, 2H, 2W).

    Along each axis, output 2m is w0 x[m-1] + (w1 + w2) x[m] and output 2m+1 is (w0 + w1) x[m] +
    w2 x[m+1]: a 4x4 transposed convolution with kernel [w2, w1 + w2, w0 + w1, w0] = FOLD @ w,
    2.25x fewer multiply-adds than upsampling first and no 4x larger intermediate image. The
    parameters are ``Conv2D(IC, OC, 3, 1, 1)``'s.
    """

    # per axis, FOLD[s, t] = 1 where 3x3 tap t lands on transposed-conv tap s
    FOLD = [[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]

    def __init__(self, in_channels, out_channels, bias_attr=None):
        super().__init__(in_channels, out_channels, 3, 1, 1, bias_attr=bias_attr)
        self.register_buffer("fold", paddle.to_tensor(self.FOLD, dtype=self.weight.dtype), persistable=False)

    def forward(self, x):
        kernel = paddle.matmul(paddle.matmul(self.fold, self.weight), self.fold, transpose_y=True)  # (OC, IC, 4, 4)
        out = fastconv.conv2d_transpose(x, kernel.transpose([1, 0, 2, 3]), stride=2, padding=1)
        return out if self.bias is None else add_channel_bias(out, self.bias)


class LeakyReLU(nn.Layer):
    """``nn.LeakyReLU`` (slope 0: ``nn.ReLU``) on the convolution backend: oneDNN's threaded
    kernel, forward and every derivative, when convolutions run on oneDNN."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return fastconv.leaky_relu(x, self.negative_slope)


class ReLU(LeakyReLU):
    """``nn.ReLU`` on the convolution backend (``LeakyReLU`` with slope 0)."""

    def __init__(self):
        super().__init__(0.0)


_twice = {"depth": 0}


@contextlib.contextmanager
def differentiable_twice():
    """Forward passes inside this block will be differentiated twice (the gradient penalty's
    and R1's inner gradient): ``BatchNorm2D`` layers then normalise through primitives."""
    _twice["depth"] += 1
    try:
        yield
    finally:
        _twice["depth"] -= 1


class BatchNorm2D(nn.BatchNorm2D):
    """``nn.BatchNorm2D`` (same parameters, buffers and initialisation, so snapshots load
    either way) that, in training mode on the CPU inside ``differentiable_twice()``, is built
    from primitives: Paddle's CPU double-grad kernel of batch norm is slow and grows faster than
    the channels, which made R1 or a gradient penalty on the DCGAN discriminator many times
    slower per step (docs/speed.md has the numbers). Everywhere else (first-order passes, eval mode,
    the GPU) it is Paddle's fused kernel. Its output equals the fused kernel's within float
    rounding; it leaves the running statistics alone (updating them in place would invalidate
    the graph of the discriminator pass before it, which holds them), so those average the loss
    passes' batches only, not also the penalty's interpolates or R1's second look at the reals."""

    def forward(self, x):
        if _twice["depth"] and self.training and x.place.is_cpu_place():
            return self._primitive_forward(x)
        # named, not super(): Paddle 2.6's to_static (export) recompiles this method from its
        # source, which loses the __class__ cell a bare super() needs
        return nn.BatchNorm2D.forward(self, x)

    def inference_affine(self):
        """(scale, shift), C values each: the eval-mode normalisation as x * scale + shift,
        from the running statistics."""
        scale = self.weight * paddle.rsqrt(self._variance + self._epsilon)
        return scale, self.bias - self._mean * scale

    def _primitive_forward(self, x):
        # a (N, C, H*W) view with (C, 1) operands: Paddle's CPU elementwise kernels are several
        # times slower for the (1, C, 1, 1) broadcast (see ``add_channel_bias``)
        n, c, h, w = x.shape
        flat = x.reshape([n, c, h * w])
        mean = flat.mean(axis=[0, 2]).reshape([c, 1])
        centred = flat - mean
        var = (centred * centred).mean(axis=[0, 2]).reshape([c, 1])
        scale = paddle.rsqrt(var + self._epsilon) * self.weight.reshape([c, 1])
        return (centred * scale + self.bias.reshape([c, 1])).reshape([n, c, h, w])


CLASS_EMBEDDING = 128  # width of a conditional G's one class embedding (BigGAN's shared embedding)


class ClassConditionalBatchNorm2D(nn.Layer):
    """BatchNorm whose scale and shift come from the class: x_hat * (1 + gain(e)) + shift(e), with
    e (N, E) the class embedding and gain, shift linear maps of it (conditional BatchNorm, de Vries
    et al. 2017, as BigGAN derives every layer's from one shared embedding). Both maps start near
    zero (DCGAN's initialisation), so a new G is the unconditional one. (N, C, H, W) -> the same."""

    def __init__(self, channels: int, embedding: int = CLASS_EMBEDDING):
        super().__init__()
        # a fixed scale of 1 and shift of 0 (never trained) rather than none: paddle2onnx 1.x, the
        # ONNX converter of Paddle 2.6, aborts on a batch_norm without them
        fixed = dict(learning_rate=0.0, trainable=False)
        self.norm = nn.BatchNorm2D(channels, weight_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(1.0), **fixed),
                                   bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0), **fixed))
        self.gain, self.shift = nn.Linear(embedding, channels), nn.Linear(embedding, channels)

    def forward(self, x, e):
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        # through a (N, C, H*W) view: Paddle's CPU kernels broadcast along a trailing axis fast
        # and a (N, C, 1, 1) operand slowly; batch "0" is the input's, so an export keeps it dynamic
        flat = self.norm(x).reshape([0, c, h * w])
        out = flat * (1.0 + self.gain(e)).reshape([0, c, 1]) + self.shift(e).reshape([0, c, 1])
        return out.reshape([0, c, h, w])



def run_layers(layers, x, embedding=None):
    """``x`` through ``layers`` in order, as ``nn.Sequential`` does (a
    ``ClassConditionalBatchNorm2D`` also reads the class ``embedding`` (N, E)), except in inference (no
    gradients being recorded, eval mode): there a ``BatchNorm2D`` followed by a ``ReLU`` or
    ``LeakyReLU`` runs as one threaded pass on the oneDNN backend (``fastconv.affine_activation``:
    the normalisation folded into a per-channel scale and shift, then the activation), where
    the two layers would be two passes over the tensor. Equal to the layers' output within
    float rounding; the layers, their parameters and the state dict are unchanged."""
    layers = list(layers)
    inference = not paddle.is_grad_enabled()
    i = 0
    while i < len(layers):
        layer, after = layers[i], layers[i + 1] if i + 1 < len(layers) else None
        if inference and isinstance(layer, BatchNorm2D) and not layer.training and isinstance(after, LeakyReLU):
            fused = fastconv.affine_activation(x, *layer.inference_affine(), after.negative_slope)
            if fused is not None:
                x, i = fused, i + 2
                continue
        x, i = (layer(x, embedding) if isinstance(layer, ClassConditionalBatchNorm2D) else layer(x)), i + 1
    return x


class SampleLayerNorm(nn.Layer):
    """Layer norm over (C, H, W) of each sample, with a per-channel scale and shift.

    ``nn.LayerNorm`` and ``nn.GroupNorm`` have no double-grad kernel in Paddle 3.3 ("doesn't
    have any grad op"), and the WGAN-GP gradient penalty differentiates through the critic
    twice. On the oneDNN backend it runs on ``fastconv.layer_norm``'s fused operators, which
    have analytic first and second derivatives; elsewhere it is written from Paddle's
    primitives. Input and output (N, C, H, W).
    """

    def __init__(self, channels: int, epsilon: float = 1e-5):
        super().__init__()
        self.epsilon = epsilon
        self.weight = self.create_parameter(
            [1, channels, 1, 1], default_initializer=nn.initializer.Constant(1.0)
        )
        self.bias = self.create_parameter(
            [1, channels, 1, 1], is_bias=True, default_initializer=nn.initializer.Constant(0.0)
        )

    def forward(self, x):
        fused = fastconv.layer_norm(x, self.weight, self.bias, self.epsilon)  # None unless on oneDNN
        if fused is not None:
            return fused
        # Every broadcast is a matrix product with a constant vector (means) or an outer product
        # (the per-sample and per-channel factors spread to full size), so every elementwise
        # operation is between tensors of one shape. Paddle's CPU matmul is threaded and its
        # derivatives are matmuls; its broadcasting elementwise kernels, and their double grads,
        # reduce on one thread (docs/speed.md). Two passes (centre, then square) keep the
        # variance free of E[x^2] - E[x]^2 cancellation.
        n, c, h, w = x.shape
        d = c * h * w
        mean_of = paddle.full([d, 1], 1.0 / d, dtype=x.dtype)  # (D, 1)
        flat = x.reshape([n, d])
        centred = flat - spread(paddle.matmul(flat, mean_of), d)  # (N, D)
        inv_std = paddle.rsqrt(paddle.matmul(centred * centred, mean_of) + self.epsilon)  # (N, 1)
        scale = paddle.matmul(inv_std, channel_row(self.weight, h * w))  # (N, D)
        shift = paddle.matmul(paddle.ones([n, 1], dtype=x.dtype), channel_row(self.bias, h * w))  # (N, D)
        return (centred * scale + shift).reshape([n, c, h, w])


def spread(column, d: int):
    """A column (N, 1) repeated along D columns, (N, D), as an outer product."""
    return paddle.matmul(column, paddle.ones([1, d], dtype=column.dtype))


def channel_row(per_channel, hw: int):
    """Per-channel values (C elements, any shape) each repeated over H*W positions: (1, C*H*W),
    as an outer product."""
    return paddle.matmul(per_channel.reshape([-1, 1]), paddle.ones([1, hw], dtype=per_channel.dtype)).reshape([1, -1])


class NearestUpsample2x(nn.Layer):
    """Double height and width by repeating each pixel (nearest neighbour): (N, C, H, W) ->
    (N, C, 2H, 2W). Built from expand and reshape rather than ``interpolate``, so an exported
    generator converts to ONNX (paddle2onnx 2.1 rejects the interpolate op's float scales)."""

    def forward(self, x):
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        x = paddle.expand(x.unsqueeze([3, 5]), [-1, -1, -1, 2, -1, 2])  # (N, C, H, 2, W, 2)
        return x.reshape([0, c, h * 2, w * 2])


class SpectralConv2D(Conv2D):
    """``Conv2D`` whose weight is divided by its largest singular value (spectral normalisation,
    Miyato et al. 2018), estimated by one power iteration per training forward.

    Written from primitives (Paddle's ``spectral_norm`` has no double-grad kernel, and the
    gradient penalty and R1 differentiate through D twice): sigma = u^T W v with the power
    iteration's u and v held constant, so W / sigma is differentiable to any order. ``sn_u`` is
    a buffer: it is in the state dict, so snapshots keep the power iteration's state.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        out_channels = self.weight.shape[0]
        u = paddle.randn([out_channels])
        self.register_buffer("sn_u", u / (paddle.linalg.norm(u) + 1e-12), persistable=True)

    def _uv(self, w_mat):
        """The power iteration's unit vectors (u (OC,), v (D,)), updated in training mode."""
        with paddle.no_grad():
            u = self.sn_u
            v = _unit(paddle.matmul(w_mat, u, transpose_x=True))
            if self.training:
                u = _unit(paddle.matmul(w_mat, v))
                paddle.assign(u, output=self.sn_u)
                v = _unit(paddle.matmul(w_mat, u, transpose_x=True))
        return u, v

    def normalized_weight(self):
        """W / sigma(W), (OC, IC, KH, KW)."""
        w_mat = self.weight.reshape([self.weight.shape[0], -1])  # (OC, IC*KH*KW)
        u, v = self._uv(w_mat)
        sigma = (u * paddle.matmul(w_mat, v)).sum()
        return self.weight / sigma

    def forward(self, x):
        out = self.convolve(x, self.normalized_weight(), stride=self.conv_stride, padding=self.conv_padding)
        return out if self.bias is None else add_channel_bias(out, self.bias)


def _unit(v):
    return v / (paddle.linalg.norm(v) + 1e-12)
