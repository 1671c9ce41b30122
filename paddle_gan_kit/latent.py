"""Latent vectors by seed, latent walks through keyframes (slerp or linear), batched generation.

The contract that ties ``sample`` and ``interpolate`` together: the latent of seed ``s`` is
drawn alone from ``numpy.random.default_rng(s)`` in the run's prior, so a tile labelled 42 in
a sample grid and the keyframe of ``--key-seeds 42`` are the same vector and the same pixels.
"""
from __future__ import annotations

import numpy as np
import paddle

from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.images import to_uint8_images

MODES = ("slerp", "linear")

# Chunk size of batched generation: large enough to keep a GPU busy, small enough that a 256 px
# batch of activations fits next to a training run.
DEFAULT_BATCH_SIZE = 64


PRIORS = ("normal", "uniform")


def _check_prior(z_dist: str) -> None:
    if z_dist not in PRIORS:
        raise GanKitError(f"unknown latent prior {z_dist!r}; use normal or uniform")


def draw_latents(rng: np.random.Generator, n: int, z_dim: int, z_dist: str = "normal") -> np.ndarray:
    """``n`` latents from the prior, drawn with a private numpy ``rng``: (n, z_dim) float32,
    N(0, 1) for ``z_dist="normal"``, U(-1, 1) for ``"uniform"``."""
    _check_prior(z_dist)
    if z_dist == "uniform":
        return rng.uniform(-1.0, 1.0, size=(int(n), int(z_dim))).astype(np.float32)
    return rng.standard_normal((int(n), int(z_dim))).astype(np.float32)


def prior_tensor(n: int, z_dim: int, z_dist: str = "normal"):
    """``n`` latents from the prior as a float32 tensor (n, z_dim) on Paddle's current device,
    drawn from Paddle's global RNG (the training noise, which snapshots capture)."""
    _check_prior(z_dist)
    if z_dist == "uniform":
        return paddle.rand([int(n), int(z_dim)]) * 2.0 - 1.0
    return paddle.randn([int(n), int(z_dim)])


def latent_for_seed(seed: int, z_dim: int, z_dist: str = "normal") -> np.ndarray:
    """The latent of one seed: (z_dim,) float32, N(0, 1) or U(-1, 1) as the run's ``z_dist``."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GanKitError(f"latent seeds are integers >= 0, got {seed!r}")
    return draw_latents(np.random.default_rng(int(seed)), 1, z_dim, z_dist)[0]


def latents_for_seeds(seeds, z_dim: int, z_dist: str = "normal") -> np.ndarray:
    """Latents of several seeds, each drawn alone: (len(seeds), z_dim) float32."""
    return np.stack([latent_for_seed(s, z_dim, z_dist) for s in seeds])


def slerp(z0: np.ndarray, z1: np.ndarray, t) -> np.ndarray:
    """Spherical interpolation from z0 (t=0) to z1 (t=1): (D,), (D,), t (T,) -> (T, D) float32.

    The path follows the great circle between the two directions (Shoemake 1985; for GAN
    latents, White 2016 "Sampling Generative Networks"): under a Gaussian prior almost all mass
    lies near the sphere of radius sqrt(D), which a straight line cuts through (its midpoint has
    norm ~ sqrt(D/2) for independent keys), so linear midpoints look washed out. Between keys of
    equal norm the norm stays constant. t=0 and t=1 return the keys bit for bit.
    """
    a = np.asarray(z0, np.float64)
    b = np.asarray(z1, np.float64)
    t = np.atleast_1d(np.asarray(t, np.float64))[:, None]  # (T, 1)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = np.clip(a @ b / max(na * nb, 1e-30), -1.0, 1.0)
    omega = np.arccos(cos)
    sin = np.sin(omega)
    if sin < 1e-6:
        # (anti)parallel keys: the great circle is undefined or degenerate; the chord is the
        # only well-defined path (and the exact one when the keys coincide)
        path = (1.0 - t) * a + t * b
    else:
        path = (np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / sin  # (T, D)
    path = path.astype(np.float32)
    path[t[:, 0] == 0.0] = np.asarray(z0, np.float32)  # exact keys, not sin(w)/sin(w) ~ 1
    path[t[:, 0] == 1.0] = np.asarray(z1, np.float32)
    return path


def lerp(z0: np.ndarray, z1: np.ndarray, t) -> np.ndarray:
    """Linear interpolation z0 + t (z1 - z0): (D,), (D,), t (T,) -> (T, D) float32."""
    a = np.asarray(z0, np.float64)
    b = np.asarray(z1, np.float64)
    t = np.atleast_1d(np.asarray(t, np.float64))[:, None]  # (T, 1)
    path = ((1.0 - t) * a + t * b).astype(np.float32)  # (T, D)
    path[t[:, 0] == 0.0] = np.asarray(z0, np.float32)
    path[t[:, 0] == 1.0] = np.asarray(z1, np.float32)
    return path


def latent_walk(keys: np.ndarray, frames_per_key: int, mode: str = "slerp",
                z_dist: str = "normal") -> np.ndarray:
    """A closed loop through keyframes: keys (K, D) -> latents (K*F, D) float32.

    Frame ``k*F`` is key ``k`` exactly; the last segment runs from the last key back to the
    first and stops one step short of it, so the sequence repeats seamlessly. Under a uniform
    prior slerp can bulge out of the cube [-1, 1]^D (the arc is outside the chord), so frames
    are clipped back into the prior's support; keys are inside it and stay untouched.
    """
    keys = np.asarray(keys, np.float32)
    if keys.ndim != 2 or keys.shape[0] < 2:
        raise GanKitError(f"a latent walk needs at least 2 keyframes, got {keys.shape[0] if keys.ndim else 0}")
    if int(frames_per_key) < 1:
        raise GanKitError(f"frames per segment must be >= 1, got {frames_per_key}")
    if mode not in MODES:
        raise GanKitError(f"unknown interpolation mode {mode!r}; use {' or '.join(MODES)}")
    steps = int(frames_per_key)
    t = np.arange(steps) / steps  # [0, 1): the segment's end is the next segment's start
    path_fn = slerp if mode == "slerp" else lerp
    segments = [path_fn(keys[k], keys[(k + 1) % len(keys)], t) for k in range(len(keys))]
    walk = np.concatenate(segments)  # (K*F, D)
    if z_dist == "uniform":
        np.clip(walk, -1.0, 1.0, out=walk)
    return walk


def generate_images(generator: paddle.nn.Layer, z: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE,
                    labels: np.ndarray | None = None) -> np.ndarray:
    """G(z) in batches: z (N, z_dim) float32 -> uint8 images (N, H, W, C).

    ``labels`` for a conditional generator: int (N,) class labels, or float (N, E) class
    embeddings (a walk between classes interpolates those; see ``Generator.class_embedding``).
    Runs on Paddle's current device (the GPU when Paddle has one) with the generator in eval
    mode, so BatchNorm uses its running statistics and an image depends on its own z only,
    not on the others in its batch (the generator's mode is restored afterwards). On a GPU
    every chunk is padded to the same batch size: cuDNN may pick another algorithm for another
    batch shape, and the last bits of a pixel would then depend on how frames were chunked.
    """
    z = np.asarray(z, np.float32)
    if z.ndim != 2:
        raise ValueError(f"z must be (N, z_dim), got shape {z.shape}")
    if labels is not None:
        labels = np.asarray(labels)
        labels = labels.astype(np.float32 if labels.ndim == 2 else np.int64)
    pad = paddle.device.get_device().startswith("gpu")
    was_training = generator.training
    generator.eval()
    out = []
    try:
        with paddle.no_grad():
            for start in range(0, len(z), batch_size):
                chunk = z[start:start + batch_size]  # (n, z_dim)
                n = len(chunk)
                cond = None if labels is None else labels[start:start + batch_size]
                if pad and n < batch_size:
                    chunk = np.concatenate([chunk, np.zeros((batch_size - n, z.shape[1]), np.float32)])
                    if cond is not None:
                        cond = np.concatenate([cond, np.zeros((batch_size - n,) + cond.shape[1:], cond.dtype)])
                if cond is None:
                    images = generator(paddle.to_tensor(chunk))  # (n, C, H, W) in [-1, 1]
                elif cond.ndim == 2:
                    images = generator(paddle.to_tensor(chunk), embedding=paddle.to_tensor(cond))
                else:
                    images = generator(paddle.to_tensor(chunk), paddle.to_tensor(cond))
                out.append(to_uint8_images(images)[:n])  # (n, H, W, C) uint8
    finally:
        if was_training:
            generator.train()
    return np.concatenate(out)
