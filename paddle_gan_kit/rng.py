"""Where training's randomness comes from, and how the rest leaves it alone.

Every training step draws its noise, penalty interpolation weights and augmentations from
Paddle's global generator, seeded at the start of the step from (run seed, rank, step) alone.
A resumed run therefore draws exactly what the uninterrupted run drew, on every Paddle version,
without saving any generator state (Paddle 2.6's ``GeneratorState`` does not even carry the CPU
engine's state). Code that runs between steps (evaluation, building extractors) must not leave
its own draws in the global generators anyway: :func:`global_rngs_untouched`.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import paddle


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of one training step of one rank: a mix of the three (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(1, np.uint32)[0])


def seed_step(seed: int, rank: int, step: int) -> None:
    """Seed Paddle's (and numpy's and python's) global generators for one training step."""
    value = step_seed(seed, rank, step)
    paddle.seed(value)
    np.random.seed(value)
    random.seed(value)


def _has_cuda() -> bool:
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


@contextlib.contextmanager
def global_rngs_untouched():
    """Restore Paddle's, numpy's and python's global RNG states after the block (in this process).

    Building an extractor initialises layers from Paddle's global RNG before the weights are
    loaded; whatever runs between two training steps must not change what the next step draws.
    """
    states = (paddle.get_rng_state(), np.random.get_state(), random.getstate(),
              paddle.get_cuda_rng_state() if _has_cuda() else None)
    try:
        yield
    finally:
        paddle.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if states[3] is not None:
            paddle.set_cuda_rng_state(states[3])
