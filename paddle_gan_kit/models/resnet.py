"""Residual generator and discriminator (the SNGAN / WGAN-GP CIFAR ResNets, Miyato et al. 2018,
Gulrajani et al. 2017), generalised to any square size s0*2^k like the DCGAN nets.

Each stage is a pre-activation residual block: G's blocks double the side (BatchNorm, ReLU,
upsample-conv, BatchNorm, ReLU, 3x3 conv, plus a 1x1-conv upsampled shortcut); D's halve it
(3x3 conv, norm, ReLU, 3x3 conv, norm, 2x2 average pool, plus a 1x1-conv pooled shortcut), and D
ends in ReLU, a sum over positions and one linear score. Widths follow ``stage_channels`` as in
the DCGAN nets, so ``g_channels``/``d_channels`` and ``max_channels`` mean the same. Every part of
D is built from operations Paddle differentiates twice (convs, ReLU, average pooling, sum), so the
gradient penalty and R1 work through it.
"""
from __future__ import annotations

from paddle import nn
from paddle.nn import functional as F

from paddle_gan_kit.config import parse_size
from paddle_gan_kit.models.dcgan import norm_layer, stage_channels, upsample_conv
from paddle_gan_kit.models.layers import Conv2D, Conv2DTranspose, NearestUpsample2x, ReLU, SpectralConv2D


def avg_pool2x(x):
    """2x2 average pooling, (N, C, H, W) -> (N, C, H/2, W/2): Paddle's kernel, which has a
    double-grad kernel (tested against reshape-and-mean pooling) and is faster on the CPU than a
    mean over a (N, C, H/2, 2, W/2, 2) view."""
    return F.avg_pool2d(x, 2)


class UpBlock(nn.Layer):
    """(N, c_in, h, w) -> (N, c_out, 2h, 2w): BN-ReLU-upconv-BN-ReLU-conv3x3 + upsampled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, upsample: str):
        super().__init__()
        self.main = nn.Sequential(nn.BatchNorm2D(c_in), ReLU(),
                                  *upsample_conv(c_in, c_out, upsample, bias=False),  # (N, c_out, 2h, 2w)
                                  nn.BatchNorm2D(c_out), ReLU(),
                                  Conv2D(c_out, c_out, 3, 1, 1))
        # a 1x1 conv commutes with nearest upsampling: convolve first, on 4x fewer positions
        self.shortcut = Conv2D(c_in, c_out, 1)
        self.up = NearestUpsample2x()

    def forward(self, x):
        return self.main(x) + self.up(self.shortcut(x))


class ResNetGenerator(nn.Layer):
    """z (N, z_dim) -> images (N, C, size, size) in [-1, 1]: z projected to s0 x s0, k residual
    up blocks (the last keeps the width), BatchNorm, ReLU, a 3x3 conv to C channels and tanh.
    ``upsample`` as ``Generator``'s ("nearest" is SNGAN's)."""

    def __init__(self, size: int = 32, channels: int = 3, z_dim: int = 100,
                 base_channels: int = 64, max_channels: int = 512, upsample: str = "nearest"):
        super().__init__()
        s0, k = parse_size(size)
        self.size, self.channels, self.z_dim = size, channels, z_dim
        widths = stage_channels(k, base_channels, max_channels)[::-1]  # bottleneck first
        outs = widths[1:] + widths[-1:]
        self.project = Conv2DTranspose(z_dim, widths[0], s0, 1, 0)  # (N, w0, s0, s0): a linear layer
        self.blocks = nn.Sequential(*[UpBlock(c_in, c_out, upsample) for c_in, c_out in zip(widths, outs)])
        self.to_image = nn.Sequential(nn.BatchNorm2D(widths[-1]), ReLU(),
                                      Conv2D(widths[-1], channels, 3, 1, 1), nn.Tanh())  # (N, C, size, size)

    def forward(self, z):
        x = self.project(z.reshape([z.shape[0], self.z_dim, 1, 1]))  # (N, w0, s0, s0)
        return self.to_image(self.blocks(x))  # (N, C, size, size)


class DownBlock(nn.Layer):
    """(N, c_in, h, w) -> (N, c_out, h/2, w/2): [ReLU-]conv3x3-norm-ReLU-conv3x3-norm-avgpool +
    1x1-conv pooled shortcut. The first block (``first``) sees the image: no ReLU before its first
    conv and no norm after it (as DCGAN's first D layer), and it pools before its shortcut conv."""

    def __init__(self, c_in: int, c_out: int, norm: str, first: bool):
        super().__init__()
        conv = SpectralConv2D if norm == "spectral" else Conv2D
        layers = [] if first else [ReLU()]
        layers += [conv(c_in, c_out, 3, 1, 1), nn.Identity() if first else norm_layer(norm, c_out), ReLU(),
                   conv(c_out, c_out, 3, 1, 1), norm_layer(norm, c_out)]
        self.main = nn.Sequential(*layers)
        self.shortcut = conv(c_in, c_out, 1)
        self.first = first

    def forward(self, x):
        short = self.shortcut(avg_pool2x(x)) if self.first else avg_pool2x(self.shortcut(x))
        return avg_pool2x(self.main(x)) + short


class ResNetDiscriminator(nn.Layer):
    """Images (N, C, size, size) -> one score per image, (N,): k residual down blocks to
    s0 x s0, ReLU, a sum over positions, one linear layer. ``norm`` as ``Discriminator``'s
    ("spectral" with the hinge loss is SNGAN's; the WGAN-GP critic takes "layer", "instance" or
    "none")."""

    def __init__(self, size: int = 32, channels: int = 3, base_channels: int = 64,
                 max_channels: int = 512, norm: str = "batch"):
        super().__init__()
        s0, k = parse_size(size)
        self.size, self.channels = size, channels
        widths = stage_channels(k, base_channels, max_channels)
        ins = [channels] + widths[:-1]
        self.blocks = nn.Sequential(*[DownBlock(c_in, c_out, norm, i == 0)
                                      for i, (c_in, c_out) in enumerate(zip(ins, widths))])  # (N, w, s0, s0)
        self.relu = ReLU()
        conv = SpectralConv2D if norm == "spectral" else Conv2D
        self.score = conv(widths[-1], 1, 1)  # a linear layer on (N, w, 1, 1)

    def forward(self, x):
        h = self.relu(self.blocks(x))  # (N, w, s0, s0)
        pooled = h.sum(axis=[2, 3], keepdim=True)  # (N, w, 1, 1)
        return self.score(pooled).reshape([-1])  # (N,)
