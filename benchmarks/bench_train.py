"""Training-step and sampling throughput of paddle_gan_kit's own trainer (a benchmark, not a test).

Prints one JSON line per (model, size): median seconds per generator step over ``--steps``
timed steps after warm-up, images/s (real images consumed by D/critic updates per second),
and generator sampling images/s. Data are random uint8 images, so only compute is measured.

    python benchmarks/bench_train.py --model dcgan --size 64 --batch-size 64
    python benchmarks/bench_train.py            # the recipes in configs/ at batch 64
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle_gan_kit  # noqa: E402  (sets CPU threads before Paddle loads)
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_gan_kit.config import TrainConfig  # noqa: E402
from paddle_gan_kit.trainer import Trainer  # noqa: E402

DEFAULT_CASES = [("dcgan", 64), ("dcgan", 96), ("wgan_gp", 64), ("wgan_gp", 96)]


def sync(values):
    """Read one value back so queued device work is finished before the clock stops."""
    float(next(iter(values.values())))


def bench(model: str, size: int, batch_size: int, steps: int, warmup: int, extra: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = np.random.default_rng(0).integers(0, 256, (max(4 * batch_size, 256), size, size, 3), np.uint8)
        np.save(os.path.join(tmp, "data.npy"), data)
        cfg = TrainConfig(model=model, size=size, batch_size=batch_size, data=os.path.join(tmp, "data.npy"),
                          out=os.path.join(tmp, "run"), steps=steps + warmup, **extra)
        trainer = Trainer(cfg, progress=False)
        for _ in range(warmup):
            sync(trainer.train_step())
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            sync(trainer.train_step())
            times.append(time.perf_counter() - start)
        step_s = statistics.median(times)
        generator = trainer.generator
        generator.eval()
        z = paddle.randn([batch_size, cfg.z_dim])
        with paddle.no_grad():
            generator(z).numpy()
            start = time.perf_counter()
            generator(z).numpy()
            sample_s = time.perf_counter() - start
        images_per_step = batch_size * trainer.cfg.n_critic
        return {
            "model": model, "size": size, "batch_size": batch_size,
            "n_critic": trainer.cfg.n_critic, "critic_norm": trainer.cfg.critic_norm if model == "wgan_gp" else None,
            "device": trainer.device, "threads": os.environ.get("OMP_NUM_THREADS"),
            "step_s_median": round(step_s, 4), "train_images_per_s": round(images_per_step / step_s, 2),
            "generator_updates_per_s": round(1 / step_s, 3),
            "sample_images_per_s": round(batch_size / sample_s, 1),
            "paddle": paddle.__version__,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["dcgan", "wgan_gp"])
    parser.add_argument("--size", type=int)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed generator steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    from paddle_gan_kit.config import parse_set

    extra = parse_set(args.set)
    cases = DEFAULT_CASES
    if args.model or args.size:
        cases = [(m, s) for m, s in DEFAULT_CASES if (args.model in (None, m)) and (args.size in (None, s))]
        if not cases:
            cases = [(args.model or "dcgan", args.size or 64)]
    for model, size in cases:
        print(json.dumps(bench(model, size, args.batch_size, args.steps, args.warmup, extra)), flush=True)


if __name__ == "__main__":
    main()
