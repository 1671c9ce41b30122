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
from paddle_gan_kit.models.layers import (CLASS_EMBEDDING, BatchNorm2D, ClassConditionalBatchNorm2D, Conv2D,
                                          Conv2DTranspose, LeakyReLU, ReLU, SampleLayerNorm, SpectralConv2D,
                                          UpsampleConv2D, run_layers)


def stage_channels(k: int, base: int, max_channels: int) -> list[int]:
    """Widths of the k feature maps from image side to bottleneck: base*2^i, capped."""
    return [min(base * 2**i, max_channels) for i in range(k)]


def upsample_conv(c_in: int, c_out: int, upsample: str, bias: bool) -> list:
    """Double the side: a strided 4x4 transposed conv (DCGAN), or nearest-neighbour upsampling
    then a 3x3 conv ("nearest"), which avoids the transposed conv's checkerboard (Odena et al.
    2016)."""
    bias_attr = None if bias else False
    if upsample == "transposed":
        return [Conv2DTranspose(c_in, c_out, 4, 2, 1, bias_attr=bias_attr)]  # (N, c_out, 2h, 2w)
    return [UpsampleConv2D(c_in, c_out, bias_attr=bias_attr)]  # (N, c_out, 2h, 2w)


class Generator(nn.Layer):
    """z (N, z_dim) float32 -> images (N, C, size, size) float32 in [-1, 1] (tanh).

    z as a 1x1 map is projected to the s0 x s0 bottleneck by one transposed conv, then every
    stage doubles the side: ``upsample`` "transposed" (DCGAN's strided transposed convs) or
    "nearest" (upsample, then a 3x3 conv), each followed by BatchNorm and ReLU but the last.
    With ``n_classes`` the BatchNorms are class-conditional (``ClassConditionalBatchNorm2D``)
    and ``forward(z, labels)`` takes int64 (N,) labels, or ``embedding`` (N, E) in their place
    (a walk between classes interpolates those: ``class_embedding``).
    """

    def __init__(self, size: int = 64, channels: int = 3, z_dim: int = 100,
                 base_channels: int = 64, max_channels: int = 512, upsample: str = "transposed",
                 n_classes: int = 0):
        super().__init__()
        s0, k = parse_size(size)
        self.size, self.channels, self.z_dim, self.n_classes = size, channels, z_dim, n_classes
        widths = stage_channels(k, base_channels, max_channels)[::-1]  # bottleneck first
        norm = ClassConditionalBatchNorm2D if n_classes else BatchNorm2D
        layers = [Conv2DTranspose(z_dim, widths[0], s0, 1, 0, bias_attr=False),  # (N, w0, s0, s0)
                  norm(widths[0]), ReLU()]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [*upsample_conv(c_in, c_out, upsample, bias=False),  # (N, c_out, 2h, 2w)
                       norm(c_out), ReLU()]
        layers += [*upsample_conv(widths[-1], channels, upsample, bias=True),  # (N, C, size, size)
                   nn.Tanh()]
        self.net = nn.Sequential(*layers)
        # unit-scale class vectors (BigGAN's shared embedding), read through the BatchNorms' small maps
        self.embed = nn.Embedding(n_classes, CLASS_EMBEDDING, weight_attr=nn.initializer.Normal(0.0, 1.0)) \
            if n_classes else None
        if n_classes:  # how much of the class G hears (0 to 1: condition_fade); kept in snapshots
            self.register_buffer("condition_weight", paddle.ones([1]))

    def class_embedding(self, labels):
        """int64 (N,) labels -> their embeddings (N, E), what the conditional BatchNorms read
        (scaled by ``condition_weight``: zero is the unconditional G)."""
        return self.embed(labels) * self.condition_weight

    def forward(self, z, labels=None, embedding=None):
        x = z.reshape([z.shape[0], self.z_dim, 1, 1])  # (N, z_dim, 1, 1)
        if self.embed is not None and embedding is None:
            embedding = self.class_embedding(labels)  # (N, E)
        return run_layers(self.net, x, embedding)  # (N, C, size, size)


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
    al. 2018), with no normalisation layer. With ``n_classes``, ``forward(x, labels)`` adds the
    projection term <embed(y), phi(x)> (Miyato & Koyama 2018), phi(x) the last feature map summed
    over its positions.
    """

    def __init__(self, size: int = 64, channels: int = 3, base_channels: int = 64,
                 max_channels: int = 512, norm: str = "batch", n_classes: int = 0):
        super().__init__()
        s0, k = parse_size(size)
        self.size, self.channels = size, channels
        widths = stage_channels(k, base_channels, max_channels)
        conv = SpectralConv2D if norm == "spectral" else Conv2D
        layers = [conv(channels, widths[0], 4, 2, 1),  # (N, w0, size/2, size/2)
                  LeakyReLU(0.2)]
        has_norm = norm not in ("none", "spectral")
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [conv(c_in, c_out, 4, 2, 1, bias_attr=False if has_norm else None),  # halves the side
                       norm_layer(norm, c_out),
                       LeakyReLU(0.2)]
        layers.append(conv(widths[-1], 1, s0, 1, 0))  # (N, 1, 1, 1)
        self.net = nn.Sequential(*layers)
        # the projection starts small beside the unconditional logit, as DCGAN's weights do
        self.embed = nn.Embedding(n_classes, widths[-1], weight_attr=nn.initializer.Normal(0.0, 0.02)) \
            if n_classes else None
        if n_classes:  # the projection term's weight (0 to 1: condition_fade); kept in snapshots
            self.register_buffer("condition_weight", paddle.ones([1]))

    def forward(self, x, labels=None):
        if self.embed is None:
            return self.net(x).reshape([-1])  # (N,)
        layers = list(self.net)
        features = x
        for layer in layers[:-1]:
            features = layer(features)  # ... (N, w, s0, s0)
        logits = layers[-1](features).reshape([-1])  # (N,)
        return logits + projection(self.embed(labels), features.sum(axis=[2, 3])) * self.condition_weight


def projection(embedding, features):
    """Miyato & Koyama's projection term: <embedding, features> per sample, (N, E) x (N, E) -> (N,)."""
    return (embedding * features).sum(axis=1)
