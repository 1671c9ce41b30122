"""Where the metrics keep files they make or fetch once: trained classifiers, downloaded weights."""

import os

CACHE_ENV = "PADDLE_GAN_KIT_CACHE"


def cache_dir():
    """The cache directory: env PADDLE_GAN_KIT_CACHE, else ~/.cache/paddle_gan_kit (not created here)."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "paddle_gan_kit")
