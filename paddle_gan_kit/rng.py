"""Every random number generator in play, captured as plain data (JSON and numpy arrays) and
restored: Paddle's CPU generator (and the GPU's where CUDA is present), numpy's and python's
global generators. Snapshots store this, so a resumed run draws exactly what it would have."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import paddle


def _generator_state(state) -> list:
    """A Paddle ``GeneratorState`` as [device, seed, offset, engine state text] (its pickle state)."""
    device, seed, offset, engine = state.__getstate__()
    return [int(device), int(seed), int(offset), bytes(engine).decode("latin-1")]


def _to_generator_state(template, values: list):
    """The inverse of :func:`_generator_state`, as an object of ``template``'s class."""
    device, seed, offset, engine = values
    state = type(template).__new__(type(template))
    state.__setstate__((int(device), int(seed), int(offset), list(str(engine).encode("latin-1"))))
    return state


def _has_cuda() -> bool:
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def rng_states() -> dict:
    """Every RNG state in play as JSON-able values and numpy arrays."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states = {
        "paddle": [_generator_state(s) for s in paddle.get_rng_state()],
        "numpy": {"kind": kind, "keys": np.asarray(keys), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if _has_cuda():
        states["paddle_cuda"] = [_generator_state(s) for s in paddle.get_cuda_rng_state()]
    return states


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` captured (a CUDA state only where CUDA is present)."""
    template = paddle.get_rng_state()[0]
    paddle.set_rng_state([_to_generator_state(template, s) for s in states["paddle"]])
    n = states["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], np.uint32), int(n["pos"]), int(n["has_gauss"]),
                         float(n["cached_gaussian"])))
    p = states["python"]
    random.setstate((int(p["version"]), tuple(int(v) for v in p["internal"]), p["gauss_next"]))
    if "paddle_cuda" in states and _has_cuda():
        template = paddle.get_cuda_rng_state()[0]
        paddle.set_cuda_rng_state([_to_generator_state(template, s) for s in states["paddle_cuda"]])


@contextlib.contextmanager
def global_rngs_untouched():
    """Restore Paddle's, numpy's and python's global RNG states after the block.

    Building an extractor initialises layers from Paddle's global RNG before the weights are
    loaded; a training run that evaluates must draw exactly what it would have drawn without.
    """
    states = rng_states()
    try:
        yield
    finally:
        set_rng_states(states)


def seed_training_rngs(seed: int, rank: int = 0) -> None:
    """Seed the global generators that training draws from: reproducible, different per rank."""
    value = seed * 1000 + 17 + rank
    paddle.seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)
