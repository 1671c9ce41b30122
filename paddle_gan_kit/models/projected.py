"""The projected discriminator (Projected GAN, Sauer et al. 2021): small discriminators on the
features of a frozen ImageNet network.

Images go through EfficientNet-Lite0 (``models/efficientnet_lite.py``, frozen, eval mode) at
``backbone_size`` pixels. Its feature maps at 1/4, 1/8, 1/16 and 1/32 of that side (the first
``backbone_levels`` of them) are mixed by fixed random 1x1 convolutions across channels (CCM)
and, with more than one level, by a fixed random top-down pyramid across scales (CSM: each level
plus the upsampled deeper one, then a 1x1 convolution, at twice the side). One small trainable
discriminator per level (strided 4x4 spectral-norm convolutions with ``d_norm`` and LeakyReLU
down to 8x8, then a 4x4 convolution to one logit per patch) scores the mixed maps. The random
projections are seeded like every net and saved in snapshots, so a resume is exact; they are
never trained (the paper: they keep D from focusing on a few features of the pretrained net).

The backbone is not a sublayer: it is not in the state dict (snapshots record its name and the
sha256 of its weights instead), has no trainable parameter, and ``train()`` never switches it
out of eval mode. When the images need no gradient (real images, and generated ones in D's
update) the frozen part runs without recording a graph.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import paddle
from paddle import nn

from paddle_gan_kit import fastconv
from paddle_gan_kit.models.dcgan import norm_layer
from paddle_gan_kit.models.efficientnet_lite import TAP_CHANNELS, TAP_STRIDES, EfficientNetLite0Features
from paddle_gan_kit.models.layers import LeakyReLU, SpectralConv2D, add_channel_bias

PROJECTION_CHANNELS = 64  # CCM's width at the first level, doubled at each deeper one (Projected GAN's cout)


@functools.lru_cache(maxsize=None)
def bilinear_matrix(out: int, side: int, align_corners: bool) -> np.ndarray:
    """(out, side) float32: row i holds the weights bilinear interpolation gives output pixel i
    along one axis, as ``F.interpolate(mode="bilinear")`` computes them (half-pixel centres, the
    source clamped at 0, or corners aligned)."""
    matrix = np.zeros((out, side), np.float64)
    for i in range(out):
        if align_corners:
            source = i * (side - 1) / (out - 1) if out > 1 else 0.0
        else:
            source = max((i + 0.5) * side / out - 0.5, 0.0)
        left = min(int(np.floor(source)), side - 1)
        right = min(left + 1, side - 1)
        weight = source - left
        matrix[i, left] += 1.0 - weight
        matrix[i, right] += weight
    return matrix.astype(np.float32)


def resize_bilinear(x, out: int, align_corners: bool = False):
    """Square maps (N, C, S, S) -> (N, C, out, out), bilinear, as two matrix products with the
    fixed interpolation matrix: equal to ``F.interpolate`` (a test holds it to 1e-6), and threaded
    on the CPU, forward and backward, where Paddle's interpolation runs on one thread."""
    matrix = paddle.to_tensor(bilinear_matrix(out, x.shape[-1], align_corners))
    return paddle.matmul(paddle.matmul(matrix, x), matrix, transpose_y=True)


class FixedConv1x1(nn.Layer):
    """A 1x1 convolution with a bias, drawn as PyTorch initialises ``nn.Conv2d`` (uniform in
    +-1/sqrt(fan_in)) and never trained: (N, c_in, H, W) -> (N, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(c_in)
        uniform = nn.initializer.Uniform(-bound, bound)
        self.weight = self.create_parameter([c_out, c_in, 1, 1], default_initializer=uniform)
        self.bias = self.create_parameter([c_out], is_bias=True, default_initializer=uniform)
        self.weight.stop_gradient = self.bias.stop_gradient = True

    def forward(self, x):
        fused = fastconv.frozen_conv(x, self.weight, self.bias)  # one oneDNN primitive with its bias
        return fused if fused is not None else add_channel_bias(fastconv.conv2d(x, self.weight), self.bias)


class FeatureProjection(nn.Layer):
    """CCM and CSM of Projected GAN: the backbone's maps (level i: ``channels[i]`` at side s_i)
    -> mixed maps. One level: CCM alone, (N, 64, s_0, s_0). More: level i comes out with
    64 * (1, 1, 2, 4)[i] channels at side 2 s_i (each fusion upsamples bilinearly, as the paper)."""

    def __init__(self, channels: tuple):
        super().__init__()
        levels = len(channels)
        mixed = [PROJECTION_CHANNELS * 2 ** i for i in range(levels)]  # CCM: 64, 128, 256, 512
        self.ccm = nn.LayerList([FixedConv1x1(c, m) for c, m in zip(channels, mixed)])
        # CSM: fusion i takes mixed[i] channels (plus the deeper fusion's output, the same width)
        # and halves them, except at the first level
        self.out_channels = [mixed[0]] + [m // 2 for m in mixed[1:]] if levels > 1 else mixed
        self.csm = nn.LayerList([FixedConv1x1(m, o) for m, o in zip(mixed, self.out_channels)]) if levels > 1 else None

    def forward(self, features: list) -> list:
        mixed = [ccm(f) for ccm, f in zip(self.ccm, features)]
        if self.csm is None:
            return mixed
        out, deeper = [None] * len(mixed), None
        for i in reversed(range(len(mixed))):
            x = mixed[i] if deeper is None else mixed[i] + deeper  # (N, mixed[i], s_i, s_i)
            x = resize_bilinear(x, 2 * x.shape[-1], align_corners=True)  # (N, ., 2 s_i, 2 s_i)
            out[i] = deeper = self.csm[i](x)  # (N, out_channels[i], 2 s_i, 2 s_i)
        return out


CLASS_MAP = 64  # a conditional head's per-patch class projection width (Projected GAN's cmap_dim)


class PatchHead(nn.Layer):
    """One level's discriminator: (N, c_in, side, side) -> logits (N, p * p). Strided 4x4
    spectral-norm convs with ``norm`` and LeakyReLU(0.2) halve the side down to 8 (widths from
    ``width``, doubling, capped at ``max_channels``), then a 4x4 conv (the side itself below 4)
    gives one logit per patch: 5x5 patches from 8x8, one from 4x4 or smaller. With
    ``n_classes`` that conv gives ``CLASS_MAP`` channels per patch instead, projected on the
    class's embedding (Projected GAN's conditional heads, a projection D per patch)."""

    def __init__(self, c_in: int, side: int, width: int, max_channels: int, norm: str, n_classes: int = 0):
        super().__init__()
        layers = []
        while side > 8:
            layers += [SpectralConv2D(c_in, width, 4, 2, 1, bias_attr=False if norm != "spectral" else None),
                       norm_layer(norm, width), LeakyReLU(0.2)]  # (N, width, side / 2, side / 2)
            c_in, side, width = width, side // 2, min(width * 2, max_channels)
        layers.append(SpectralConv2D(c_in, CLASS_MAP if n_classes else 1, min(4, side), 1, 0))  # (N, 1 or M, p, p)
        self.main = nn.Sequential(*layers)
        unit = nn.initializer.Normal(0.0, 1.0)
        self.embed = nn.Embedding(n_classes, CLASS_MAP, weight_attr=unit) if n_classes else None

    def forward(self, x, labels=None):
        out = self.main(x)  # (N, 1 or M, p, p)
        n = x.shape[0]
        if self.embed is None:
            return out.reshape([n, -1])
        e = self.embed(labels).reshape([n, CLASS_MAP, 1, 1]).expand(out.shape)
        return (out * e).sum(axis=1).reshape([n, -1]) * (1.0 / math.sqrt(CLASS_MAP))


class ProjectedDiscriminator(nn.Layer):
    """Images (N, C, size, size) in [-1, 1] -> one logit per image and patch of every level,
    (N * P,): the losses average over them, as Projected GAN's do.

    ``features``: the frozen backbone (``efficientnet_lite.load_features``), whose ``levels`` it
    uses; ``backbone_size``: the side images are resized to (bilinear) before it, a multiple of
    32; gray images are repeated to RGB. ``width``, ``max_channels`` and ``norm`` shape the heads.
    """

    def __init__(self, features: EfficientNetLite0Features, size: int, channels: int, backbone_size: int,
                 width: int = 64, max_channels: int = 512, norm: str = "batch", n_classes: int = 0):
        super().__init__()
        self.size, self.channels, self.backbone_size = size, channels, backbone_size
        self._frozen = [features]  # a list, so not a sublayer: see the module's docstring
        levels = features.levels
        self.project = FeatureProjection(TAP_CHANNELS[:levels])
        grow = 2 if levels > 1 else 1  # the pyramid doubles every side
        sides = [backbone_size // stride * grow for stride in TAP_STRIDES[:levels]]
        self.heads = nn.LayerList([PatchHead(c, side, width, max_channels, norm, n_classes)
                                   for c, side in zip(self.project.out_channels, sides)])

    @property
    def backbone(self) -> EfficientNetLite0Features:
        return self._frozen[0]

    def backbone_input(self, x):
        """(N, C, size, size) -> (N, 3, backbone_size, backbone_size) in [-1, 1]."""
        if self.channels == 1:
            x = paddle.concat([x, x, x], axis=1)
        if x.shape[-1] != self.backbone_size:
            x = resize_bilinear(x, self.backbone_size)
        return x

    def mixed_features(self, x) -> list:
        """The projected backbone maps of images (N, C, size, size), one per level."""
        if x.stop_gradient:  # nothing upstream needs a gradient: the frozen part keeps no graph
            with paddle.no_grad():
                return self.project(self.backbone(self.backbone_input(x)))
        return self.project(self.backbone(self.backbone_input(x)))

    def forward(self, x=None, labels=None, features=None):
        """Logits (N * P,) of images ``x``, or of their ``mixed_features`` when given instead;
        ``labels`` int64 (N,) for a conditional D."""
        features = self.mixed_features(x) if features is None else features
        logits = [head(f, labels) for head, f in zip(self.heads, features)]  # (N, p_i^2) each
        return paddle.concat(logits, axis=1).reshape([-1])  # (N * P,)
