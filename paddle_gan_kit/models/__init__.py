"""The model registry: ``MODELS[name]`` leads straight to what builds a model, its losses and defaults."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from paddle_gan_kit.models.dcgan import Discriminator, Generator
from paddle_gan_kit.models.init import count_parameters, init_weights


@dataclass(frozen=True)
class ModelSpec:
    """How to build one GAN family and train it."""

    build_generator: Callable  # (cfg) -> Generator
    build_discriminator: Callable  # (cfg) -> Discriminator or critic
    loss: str  # "nonsaturating" (DCGAN) or "wasserstein_gp" (WGAN-GP)
    defaults: dict = field(default_factory=dict)  # values for the config's None fields
    description: str = ""


def build_generator(cfg) -> Generator:
    """The DCGAN generator for ``cfg`` (size, channels, z_dim, widths), initialised."""
    return init_weights(Generator(cfg.size, cfg.channels, cfg.z_dim, cfg.g_channels, cfg.max_channels))


def build_dcgan_discriminator(cfg) -> Discriminator:
    """The DCGAN discriminator (BatchNorm after every conv but the first), initialised."""
    return init_weights(Discriminator(cfg.size, cfg.channels, cfg.d_channels, cfg.max_channels, "batch"))


def build_critic(cfg) -> Discriminator:
    """The WGAN-GP critic: DCGAN layout with ``cfg.critic_norm`` instead of BatchNorm."""
    return init_weights(
        Discriminator(cfg.size, cfg.channels, cfg.d_channels, cfg.max_channels, cfg.critic_norm)
    )


MODELS: dict[str, ModelSpec] = {
    "dcgan": ModelSpec(
        build_generator=build_generator,
        build_discriminator=build_dcgan_discriminator,
        loss="nonsaturating",
        # Adam(2e-4, beta1 0.5) from Radford et al. 2015, section 4
        defaults={"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, "n_critic": 1},
        description="DCGAN, non-saturating loss on logits",
    ),
    "wgan_gp": ModelSpec(
        build_generator=build_generator,
        build_discriminator=build_critic,
        loss="wasserstein_gp",
        # Adam(1e-4, betas 0, 0.9), n_critic 5: Gulrajani et al. 2017, Algorithm 1
        defaults={"lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.0, "beta2": 0.9, "n_critic": 5},
        description="WGAN-GP, Wasserstein loss with gradient penalty on interpolates",
    ),
}

__all__ = ["MODELS", "ModelSpec", "Generator", "Discriminator", "init_weights", "count_parameters"]
