"""The nets, built from a resolved ``TrainConfig``: ``build_generator(cfg)`` and
``build_discriminator(cfg)`` (the DCGAN discriminator or the WGAN-GP critic, by ``cfg.d_norm``)."""
from __future__ import annotations

import numpy as np

from paddle_gan_kit import changes
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.models import efficientnet_lite
from paddle_gan_kit.models.dcgan import Discriminator, Generator
from paddle_gan_kit.models.init import count_parameters, init_weights
from paddle_gan_kit.models.projected import ProjectedDiscriminator
from paddle_gan_kit.models.resnet import ResNetDiscriminator, ResNetGenerator


def classes_of(cfg) -> int:
    """The number of classes the nets condition on: 0 for an unconditional run."""
    return int(cfg.n_classes) if cfg.conditional else 0


def build_generator(cfg):
    """The generator for ``cfg`` (architecture, size, channels, z_dim, widths, upsampling, classes), initialised."""
    if cfg.g_arch == "resnet":
        return init_weights(ResNetGenerator(cfg.size, cfg.channels, cfg.z_dim, cfg.g_channels, cfg.max_channels,
                                            cfg.g_upsample))
    return init_weights(Generator(cfg.size, cfg.channels, cfg.z_dim, cfg.g_channels, cfg.max_channels, cfg.g_upsample,
                                  classes_of(cfg)))


def build_discriminator(cfg):
    """The discriminator/critic for ``cfg``: the DCGAN layout (or ``cfg.d_arch`` "resnet"'s
    residual blocks) with ``cfg.d_norm`` after every inner conv (BatchNorm for DCGAN; layer,
    instance or no norm for a WGAN-GP critic), or spectrally normalised convs; or, for
    "projected", heads of that norm on a frozen EfficientNet-Lite0 (its weights file is read here)."""
    if cfg.d_arch == "projected":
        features = efficientnet_lite.load_features(efficientnet_lite.weights_path(cfg.backbone_weights),
                                                   cfg.backbone_levels)
        discriminator = ProjectedDiscriminator(features, cfg.size, cfg.channels, cfg.backbone_size, cfg.d_channels,
                                               cfg.max_channels, cfg.d_norm, classes_of(cfg))
        init_weights(discriminator.heads)  # the random projections keep their own draws
        return discriminator
    if cfg.d_arch == "resnet":
        return init_weights(ResNetDiscriminator(cfg.size, cfg.channels, cfg.d_channels, cfg.max_channels, cfg.d_norm))
    return init_weights(Discriminator(cfg.size, cfg.channels, cfg.d_channels, cfg.max_channels, cfg.d_norm,
                                      classes_of(cfg)))


def state_arrays(model) -> dict:
    """``model.state_dict()`` as numpy arrays (what snapshots store)."""
    return {k: v.numpy() for k, v in model.state_dict().items()}


# buffers added after snapshots were first written, and the value those runs trained with, which a
# snapshot without one loads (changes.CHANGES)
ADDED_BUFFERS = changes.added_buffers()


def load_weights(model, state: dict, origin: str) -> None:
    """Set every parameter and buffer of ``model`` from ``state`` (name -> array); a
    ``GanKitError`` naming ``origin`` when a name is missing or a shape differs."""
    own = model.state_dict()
    added = {k: ADDED_BUFFERS.get(k.split(".")[-1]) for k in own if k not in state}
    state = {**state, **{k: np.full(own[k].shape, value, "float32") for k, value in added.items() if value is not None}}
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(np.shape(state[k])) != tuple(own[k].shape)]
    if missing or wrong:
        what = (f"lacks {missing[0]}" if missing else
                f"has {wrong[0]} of shape {list(np.shape(state[wrong[0]]))}, the model {list(own[wrong[0]].shape)}")
        raise GanKitError(f"{origin} does not fit the model its config describes ({what}); "
                          "it is damaged or was edited: use another snapshot")
    model.set_state_dict({k: np.asarray(state[k]) for k in own})


__all__ = ["Discriminator", "Generator", "ProjectedDiscriminator", "ResNetDiscriminator", "ResNetGenerator",
           "build_discriminator",
           "build_generator", "classes_of", "count_parameters", "init_weights", "load_weights", "state_arrays"]
