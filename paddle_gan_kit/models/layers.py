"""Layers the critic needs that Paddle's own cannot provide under double backward."""
from __future__ import annotations

import paddle
from paddle import nn


class SampleLayerNorm(nn.Layer):
    """Layer norm over (C, H, W) of each sample, with a per-channel scale and shift.

    Written from ``mean``/``var`` primitives because ``nn.LayerNorm`` and ``nn.GroupNorm``
    have no double-grad kernel in Paddle 3.3 ("doesn't have any grad op"), and the WGAN-GP
    gradient penalty differentiates through the critic twice. Input and output (N, C, H, W).
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
        mean = paddle.mean(x, axis=[1, 2, 3], keepdim=True)  # (N, 1, 1, 1)
        centred = x - mean
        var = paddle.mean(centred * centred, axis=[1, 2, 3], keepdim=True)  # (N, 1, 1, 1)
        return centred * paddle.rsqrt(var + self.epsilon) * self.weight + self.bias
