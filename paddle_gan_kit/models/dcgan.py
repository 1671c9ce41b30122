"""DCGAN generator and discriminator for any square size s0*2^k, and the WGAN-GP critic.

One architecture family (Radford et al. 2015) for 28 (7*4), 32 (4*8), 64 (4*16), 96 (6*16),
128 (4*32) and 256 (4*64) pixels, 1 or 3 channels. Widths double at each stage away from the
image and are capped at ``max_channels``; for 64 px with width 64 this is exactly the paper's
nets with 512 instead of 1024 at the bottleneck (pytorch/examples dcgan uses the same).
"""
from __future__ import annotations

import paddle
from paddle import nn

from paddle_gan_kit.config import parse_size
from paddle_gan_kit.models.layers import (AddCoords, BatchNorm2D, Conv2D, Conv2DTranspose, LeakyReLU, MinibatchStd,
                                          NearestUpsample2x, ReLU, SampleLayerNorm, SelfAttention, SpectralConv2D,
                                          UpsampleConv2D, run_layers)


def stage_channels(k: int, base: int, max_channels: int) -> list[int]:
    """Widths of the k feature maps from image side to bottleneck: base*2^i, capped."""
    return [min(base * 2**i, max_channels) for i in range(k)]


def upsample_conv(c_in: int, c_out: int, upsample: str, bias: bool) -> list:
    """Double the side: a strided 4x4 transposed conv (DCGAN), or nearest-neighbour ("nearest")
    or bilinear ("bilinear") upsampling then a 3x3 conv, which avoids the transposed conv's
    checkerboard (Odena et al. 2016)."""
    bias_attr = None if bias else False
    if upsample == "transposed":
        return [Conv2DTranspose(c_in, c_out, 4, 2, 1, bias_attr=bias_attr)]  # (N, c_out, 2h, 2w)
    return [UpsampleConv2D(c_in, c_out, bias_attr=bias_attr, upsample=upsample)]  # (N, c_out, 2h, 2w)


def _projection(z_dim: int, width: int, s0: int) -> list:
    """z as a 1x1 map, projected to the s0 x s0 bottleneck by one transposed conv."""
    return [Conv2DTranspose(z_dim, width, s0, 1, 0, bias_attr=False),  # (N, width, s0, s0)
            BatchNorm2D(width), ReLU()]


def _up_block(c_in: int, c_out: int, upsample: str) -> list:
    """One inner generator stage: double the side, BatchNorm, ReLU -> (N, c_out, 2h, 2w)."""
    return [*upsample_conv(c_in, c_out, upsample, bias=False), BatchNorm2D(c_out), ReLU()]


def _coords(side: int, coords: bool) -> tuple[list, int]:
    """``AddCoords(side)`` as a layer list and the 2 channels it adds, or nothing."""
    return ([AddCoords(side)], 2) if coords else ([], 0)


class SelfModulation(nn.Layer):
    """Self-modulation (Chen et al. 2019): a BatchNorm's output x (N, C, H, W) scaled and shifted
    per sample by functions of that sample's latent z, x (1 + gamma(z)) + beta(z), where gamma and
    beta come from one MLP z -> ``hidden`` (ReLU) -> 2C. Global traits (a stone's one colour)
    then reach every stage directly from z instead of through the convolutions alone."""

    def __init__(self, z_dim: int, channels: int, hidden: int = 32):
        super().__init__()
        self.hidden, self.out = nn.Linear(z_dim, hidden), nn.Linear(hidden, 2 * channels)

    def forward(self, x, z):
        gamma, beta = paddle.chunk(self.out(paddle.nn.functional.relu(self.hidden(z))), 2, axis=1)  # (N, C) each
        n, c = gamma.shape
        # expanded to x's shape first: Paddle's CPU broadcasts of (N, C, 1, 1) are slow
        gamma = gamma.reshape([n, c, 1, 1]).expand(x.shape)
        beta = beta.reshape([n, c, 1, 1]).expand(x.shape)
        return x + x * gamma + beta


class Generator(nn.Layer):
    """z (N, z_dim) float32 -> images (N, C, size, size) float32 in [-1, 1] (tanh).

    ``upsample``: "transposed" (DCGAN's strided transposed convs), "nearest" or "bilinear"
    (upsample, then a 3x3 conv). ``self_modulation``: every BatchNorm's output is modulated by
    the latent (``SelfModulation``). ``attention``: a ``SelfAttention`` block after the stage
    whose maps have that side (0: none). ``coords``: every upsampling conv also sees its
    input's pixel coordinates (``AddCoords``, CoordConv).
    """

    def __init__(self, size: int = 64, channels: int = 3, z_dim: int = 100,
                 base_channels: int = 64, max_channels: int = 512, upsample: str = "transposed",
                 self_modulation: bool = False, attention: int = 0, coords: bool = False):
        super().__init__()
        s0, k = parse_size(size)
        self.size, self.channels, self.z_dim = size, channels, z_dim
        widths = stage_channels(k, base_channels, max_channels)[::-1]  # bottleneck first
        layers = _projection(z_dim, widths[0], s0)  # (N, w0, s0, s0)
        if attention == s0:
            layers.append(SelfAttention(widths[0]))
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            add, extra = _coords(s0 * 2 ** i, coords)
            layers += [*add, *_up_block(c_in + extra, c_out, upsample)]  # (N, c_out, 2h, 2w)
            if attention == s0 * 2 ** (i + 1):
                layers.append(SelfAttention(c_out))
        add, extra = _coords(size // 2, coords)
        layers += [
            *add,
            *upsample_conv(widths[-1] + extra, channels, upsample, bias=True),  # (N, C, size, size)
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)
        self.modulations = nn.LayerList([SelfModulation(z_dim, layer.weight.shape[0]) for layer in layers
                                         if isinstance(layer, BatchNorm2D)]) if self_modulation else None

    def forward(self, z):
        x = z.reshape([z.shape[0], self.z_dim, 1, 1])  # (N, z_dim, 1, 1)
        if self.modulations is None:
            return run_layers(self.net, x)  # (N, C, size, size)
        modulations = iter(self.modulations)
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, BatchNorm2D):
                x = next(modulations)(x, z)
        return x  # (N, C, size, size)


class SkipGenerator(nn.Layer):
    """The generator with skip outputs (StyleGAN2's "skip" generator, Karras et al. 2020): every
    resolution from s0 up adds its own 1x1 RGB output, upsampled and summed, before the tanh.
    Colour and layout come from the low resolutions early in training, detail from the high
    ones later. z (N, z_dim) -> images (N, C, size, size) in [-1, 1]; ``upsample`` as Generator.
    """

    def __init__(self, size: int = 64, channels: int = 3, z_dim: int = 100,
                 base_channels: int = 64, max_channels: int = 512, upsample: str = "nearest"):
        super().__init__()
        s0, k = parse_size(size)
        self.size, self.channels, self.z_dim = size, channels, z_dim
        widths = stage_channels(k, base_channels, max_channels)[::-1]  # bottleneck first
        self.project = nn.Sequential(*_projection(z_dim, widths[0], s0))  # (N, w0, s0, s0)
        self.blocks = nn.LayerList([nn.Sequential(*_up_block(c_in, c_out, upsample))
                                    for c_in, c_out in zip(widths[:-1], widths[1:])])  # each doubles the side
        self.to_rgb = nn.LayerList([Conv2D(w, channels, 1) for w in widths])  # one per resolution
        self.last = nn.Sequential(*upsample_conv(widths[-1], channels, upsample, bias=True))  # (N, C, size, size)
        self.up = NearestUpsample2x()

    def forward(self, z):
        x = run_layers(self.project, z.reshape([z.shape[0], self.z_dim, 1, 1]))  # (N, w0, s0, s0)
        rgb = self.to_rgb[0](x)  # (N, C, s0, s0)
        for block, to_rgb in zip(self.blocks, self.to_rgb[1:]):
            x = run_layers(block, x)  # (N, w, 2h, 2w)
            rgb = self.up(rgb) + to_rgb(x)
        return paddle.tanh(self.up(rgb) + self.last(x))  # (N, C, size, size)


def norm_layer(kind: str, channels: int) -> nn.Layer:
    """D's normalisation after a conv: ``kind`` as ``Discriminator``'s ``norm`` (an identity for
    "none" and "spectral", whose normalisation is in the conv)."""
    if kind == "batch":
        return BatchNorm2D(channels)
    if kind == "layer":
        return SampleLayerNorm(channels)
    if kind == "instance":
        return nn.InstanceNorm2D(channels)
    if kind in ("none", "spectral"):
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class Discriminator(nn.Layer):
    """Images (N, C, size, size) in [-1, 1] -> one logit/score per image, shape (N,).

    ``norm="batch"`` is the DCGAN discriminator (BatchNorm after every conv but the first);
    the WGAN-GP critic uses ``"layer"``, ``"instance"`` or ``"none"``: the gradient penalty
    is per sample, and batch norm would mix samples (Gulrajani et al. 2017, section 4).
    ``"spectral"`` divides every conv's weight by its spectral norm instead (SNGAN, Miyato et
    al. 2018), with no normalisation layer. ``mbstd_group`` > 0 adds a minibatch standard
    deviation channel (``MinibatchStd``) before the last conv. ``attention``: a
    ``SelfAttention`` block after the conv stage whose output has that side (0: none).
    ``reconstruct``: a ``decoder`` from the last feature map (N, w, s0, s0) to images (N, C,
    4 s0, 4 s0) in [-1, 1], for the self-supervised loss of FastGAN (Liu et al. 2021);
    ``forward(x, reconstruct=True)`` returns the logits and that reconstruction. ``coords``:
    every strided conv also sees its input's pixel coordinates (``AddCoords``, CoordConv).
    """

    def __init__(self, size: int = 64, channels: int = 3, base_channels: int = 64,
                 max_channels: int = 512, norm: str = "batch", mbstd_group: int = 0, attention: int = 0,
                 reconstruct: bool = False, coords: bool = False):
        super().__init__()
        s0, k = parse_size(size)
        self.size, self.channels = size, channels
        widths = stage_channels(k, base_channels, max_channels)
        conv = SpectralConv2D if norm == "spectral" else Conv2D
        add, extra = _coords(size, coords)
        layers = [
            *add,
            conv(channels + extra, widths[0], 4, 2, 1),  # (N, w0, size/2, size/2)
            LeakyReLU(0.2),
        ]
        if attention == size // 2:
            layers.append(SelfAttention(widths[0], conv))
        has_norm = norm not in ("none", "spectral")
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            add, extra = _coords(size // 2 ** (i + 1), coords)
            layers += [
                *add,
                conv(c_in + extra, c_out, 4, 2, 1, bias_attr=False if has_norm else None),  # halves
                norm_layer(norm, c_out),
                LeakyReLU(0.2),
            ]
            if attention == size // 2 ** (i + 2):
                layers.append(SelfAttention(c_out, conv))
        if mbstd_group:
            layers.append(MinibatchStd(mbstd_group))  # (N, w + 1, s0, s0)
        layers.append(conv(widths[-1] + (1 if mbstd_group else 0), 1, s0, 1, 0))  # (N, 1, 1, 1)
        self.net = nn.Sequential(*layers)
        self.body_length = len(layers) - (2 if mbstd_group else 1)  # the layers up to the last feature map
        self.decoder = None
        if reconstruct:
            c = widths[-1]
            self.decoder = nn.Sequential(
                UpsampleConv2D(c, c // 2, upsample="nearest"), LeakyReLU(0.2),  # (N, c/2, 2 s0, 2 s0)
                UpsampleConv2D(c // 2, c // 4, upsample="nearest"), LeakyReLU(0.2),  # (N, c/4, 4 s0, 4 s0)
                Conv2D(c // 4, channels, 3, 1, 1), nn.Tanh())  # (N, C, 4 s0, 4 s0)

    def forward(self, x, reconstruct: bool = False):
        if not reconstruct:
            return self.net(x).reshape([-1])  # (N,)
        layers = list(self.net)
        features = run_layers(layers[:self.body_length], x)  # (N, w, s0, s0)
        logits = run_layers(layers[self.body_length:], features).reshape([-1])  # (N,)
        return logits, self.decoder(features)


class MultiScaleDiscriminator(nn.Layer):
    """Several DCGAN discriminators, each on the images average-pooled by another factor of 2
    (pix2pixHD's multi-scale D, Wang et al. 2018): the full-size one judges detail, the smaller
    ones whole shapes and colours, and their gradients reach G's output through the pooling.
    Images (N, C, size, size) -> the logits of every scale, concatenated: (scales * N,), so a
    loss's mean is the mean over the scales, and a penalty's gradient that of their sum.
    ``kwargs`` as ``Discriminator``'s (not ``reconstruct``)."""

    def __init__(self, size: int, channels: int, base_channels: int, max_channels: int, norm: str,
                 mbstd_group: int = 0, scales: int = 2, **kwargs):
        super().__init__()
        self.size, self.channels = size, channels
        self.scales = nn.LayerList([Discriminator(size // 2 ** i, channels, base_channels, max_channels, norm,
                                                  mbstd_group, **kwargs) for i in range(scales)])

    def forward(self, x):
        logits = []
        for i, discriminator in enumerate(self.scales):
            if i:
                x = paddle.nn.functional.avg_pool2d(x, 2)  # (N, C, size / 2^i, size / 2^i); has a double grad
            logits.append(discriminator(x))
        return paddle.concat(logits)  # (scales * N,)
