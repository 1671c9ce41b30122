"""The nets, built from a resolved ``TrainConfig``: ``build_generator(cfg)`` and
``build_discriminator(cfg)`` (the DCGAN discriminator or the WGAN-GP critic, by ``cfg.d_norm``)."""
from __future__ import annotations

import numpy as np

from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.models.dcgan import (Discriminator, Generator, MultiScaleDiscriminator, SelfModulation,
                                         SkipGenerator)
from paddle_gan_kit.models.init import count_parameters, init_weights
from paddle_gan_kit.models.resnet import ResNetDiscriminator, ResNetGenerator


def build_generator(cfg):
    """The generator for ``cfg`` (architecture, size, channels, z_dim, widths, upsampling, skip
    outputs, self-modulation, self-attention or CoordConv inputs), initialised."""
    kind = ResNetGenerator if cfg.g_arch == "resnet" else SkipGenerator if cfg.g_skip else Generator
    extra = {"self_modulation": True} if cfg.g_self_modulation else {}
    if cfg.g_attention:
        extra["attention"] = cfg.g_attention
    if cfg.g_coords:
        extra["coords"] = True
    return init_weights(kind(cfg.size, cfg.channels, cfg.z_dim, cfg.g_channels, cfg.max_channels, cfg.g_upsample,
                             **extra))


def build_discriminator(cfg):
    """The discriminator/critic for ``cfg``: the DCGAN layout (or ``cfg.d_arch`` "resnet"'s
    residual blocks) with ``cfg.d_norm`` after every inner conv (BatchNorm for DCGAN; layer,
    instance or no norm for a WGAN-GP critic), or spectrally normalised convs; a minibatch
    standard deviation channel when ``cfg.d_mbstd``; self-attention when ``cfg.d_attention``; a
    reconstruction decoder when ``cfg.d_recon_weight``; CoordConv inputs when ``cfg.d_coords``;
    ``cfg.d_scales`` of them on ever smaller copies of the images when it is above 1."""
    kind = ResNetDiscriminator if cfg.d_arch == "resnet" else Discriminator
    extra = {"attention": cfg.d_attention} if cfg.d_attention else {}
    if cfg.d_scales > 1:
        kind, extra["scales"] = MultiScaleDiscriminator, cfg.d_scales
    if cfg.d_recon_weight > 0:
        extra["reconstruct"] = True
    if cfg.d_coords:
        extra["coords"] = True
    return init_weights(kind(cfg.size, cfg.channels, cfg.d_channels, cfg.max_channels, cfg.d_norm, cfg.d_mbstd,
                             **extra))


def state_arrays(model) -> dict:
    """``model.state_dict()`` as numpy arrays (what snapshots store)."""
    return {k: v.numpy() for k, v in model.state_dict().items()}


def load_weights(model, state: dict, origin: str) -> None:
    """Set every parameter and buffer of ``model`` from ``state`` (name -> array); a
    ``GanKitError`` naming ``origin`` when a name is missing or a shape differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(np.shape(state[k])) != tuple(own[k].shape)]
    if missing or wrong:
        what = (f"lacks {missing[0]}" if missing else
                f"has {wrong[0]} of shape {list(np.shape(state[wrong[0]]))}, the model {list(own[wrong[0]].shape)}")
        raise GanKitError(f"{origin} does not fit the model its config describes ({what}); "
                          "it is damaged or was edited: use another snapshot")
    model.set_state_dict({k: np.asarray(state[k]) for k in own})


__all__ = ["Discriminator", "Generator", "ResNetDiscriminator", "ResNetGenerator", "SelfModulation", "SkipGenerator",
           "build_discriminator", "build_generator", "count_parameters", "init_weights", "load_weights", "state_arrays"]
