"""DCGAN weight initialisation (Radford et al. 2015): convs N(0, 0.02), norm scales N(1, 0.02), biases 0."""
from __future__ import annotations

import paddle
from paddle import nn

from paddle_gan_kit.models.layers import SampleLayerNorm

_CONVS = (nn.Conv2D, nn.Conv2DTranspose, nn.Linear)
_NORMS = (nn.BatchNorm2D, nn.InstanceNorm2D, nn.SyncBatchNorm, SampleLayerNorm)


def init_weights(model: nn.Layer) -> nn.Layer:
    """Initialise every conv/linear and norm layer of ``model`` in place; returns it."""
    conv_init = nn.initializer.Normal(mean=0.0, std=0.02)
    scale_init = nn.initializer.Normal(mean=1.0, std=0.02)
    zeros = nn.initializer.Constant(0.0)
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, _CONVS):
            conv_init(layer.weight)
            if layer.bias is not None:
                zeros(layer.bias)
        elif isinstance(layer, _NORMS):
            if getattr(layer, "weight", None) is not None:
                scale_init(layer.weight)
            if getattr(layer, "bias", None) is not None:
                zeros(layer.bias)
    return model


def count_parameters(model: nn.Layer) -> int:
    """Number of trainable scalars in ``model``."""
    return int(sum(int(paddle.numel(p)) for p in model.parameters() if not p.stop_gradient))
