"""Training, sampling and latent-walk throughput of paddle_gan_kit's own code (a benchmark, not a test).

Prints one JSON line per recipe in configs/ (or per ``--model``/``--size`` case): the median
seconds per generator step over ``--steps`` timed steps after warm-up, training images/s (real
images consumed by D/critic updates per second), generator sampling images/s (eval mode, no
gradients, median of 21 batches) and latent-walk frames/s (a 4-key x 8-frame slerp walk generated and
encoded as a GIF, median of 3; also each part alone, since the encoder's time depends on what the
frames show; ``bench_torch_baseline.py`` times the same walk), and the process's memory: its
resident set after warm-up and how much it grew per timed step (Linux; a leak shows as growth
that does not level off: raise ``--steps`` to see it).
Data are random uint8 images, so only compute is measured. It runs on the GPU when Paddle has
one (the device is in each line) and on the CPU otherwise.

    python benchmarks/bench_train.py                                  # every recipe in configs/
    python benchmarks/bench_train.py --recipe dcgan_64 --recipe wgan_gp_96
    python benchmarks/bench_train.py --model dcgan --size 64 --batch-size 64 --steps 5
    python benchmarks/bench_train.py --model wgan_gp --size 64 --set d_norm=none
    python benchmarks/bench_train.py --set conv_backend=paddle        # Paddle's own convolutions
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import paddle_gan_kit  # noqa: E402,F401  (sets CPU threads before Paddle loads)
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_gan_kit.config import TrainConfig, load_yaml, parse_set  # noqa: E402
from paddle_gan_kit.interpolate import encode_gif, walk_latents  # noqa: E402
from paddle_gan_kit.latent import generate_images  # noqa: E402
from paddle_gan_kit import fastconv  # noqa: E402
from paddle_gan_kit.trainer import Trainer  # noqa: E402

# recipe keys that shape the nets and the step (its augmentation, objective and penalties too);
# data, steps and outputs are the benchmark's own
SHAPE_KEYS = ("model", "size", "batch_size", "g_channels", "d_channels", "max_channels", "z_dim", "z_dist",
              "d_norm", "n_critic", "channels", "g_upsample", "g_arch", "d_arch", "loss", "gp_weight", "r1_gamma",
              "label_smoothing", "augment", "ema_decay", "ema_rampup", "backbone_size", "backbone_levels")


def recipes() -> dict[str, dict]:
    """name -> the shape keys of every configs/*.yaml."""
    found = {}
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml"))):
        values = load_yaml(path)
        shape = {k: v for k, v in values.items() if k in SHAPE_KEYS}
        if str(values.get("data", "")).startswith("builtin:"):  # MNIST and Fashion-MNIST are grayscale
            shape.setdefault("channels", 1)
        found[os.path.splitext(os.path.basename(path))[0]] = shape
    return found


SAMPLE_BATCHES = 21  # sampling: the median of this many batches (5 until the tables of 2026-12-02)


def sync(values):
    """Read one value back so queued device work is finished before the clock stops."""
    float(next(iter(values.values())))


def resident_mb() -> float | None:
    """This process's resident set in MB now (Linux's /proc), else None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def bench(name: str, values: dict, steps: int, warmup: int) -> dict:
    cfg = TrainConfig(**values)
    with tempfile.TemporaryDirectory() as tmp:
        channels = cfg.channels or 3
        data = np.random.default_rng(0).integers(0, 256, (max(4 * cfg.batch_size, 256), cfg.size, cfg.size, channels),
                                                 np.uint8)
        np.save(os.path.join(tmp, "data.npy"), data)
        cfg = TrainConfig(**{**values, "data": os.path.join(tmp, "data.npy"), "out": os.path.join(tmp, "run"),
                             "steps": steps + warmup})
        trainer = Trainer(cfg, progress=False)
        for _ in range(warmup):
            sync(trainer.train_step())
        rss_warm = resident_mb()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            sync(trainer.train_step())
            times.append(time.perf_counter() - start)
        step_s = statistics.median(times)
        rss_end = resident_mb()

        generator = trainer.objective.generator
        generator.eval()
        z = paddle.randn([cfg.batch_size, cfg.z_dim])
        with paddle.no_grad():
            generator(z).numpy()
            sample_times = []
            for _ in range(SAMPLE_BATCHES):
                start = time.perf_counter()
                float(generator(z)[0, 0, 0, 0])  # one value read back: queued device work done, no copy of the batch
                sample_times.append(time.perf_counter() - start)
            sample_s = statistics.median(sample_times)
        walk = walk_latents(cfg.z_dim, cfg.z_dist, keys=4, frames=8)[:, 0]  # (32, z_dim)
        generate_images(generator, walk[:4], cfg.batch_size)  # warm-up
        generate_s, encode_s = [], []
        for _ in range(3):
            start = time.perf_counter()
            frames = generate_images(generator, walk, cfg.batch_size)
            middle = time.perf_counter()
            encode_gif(frames, fps=20)
            generate_s.append(middle - start)
            encode_s.append(time.perf_counter() - middle)

        resolved = trainer.cfg
        images_per_step = resolved.batch_size * resolved.n_critic
        return {
            "recipe": name, "model": resolved.model, "size": resolved.size, "batch_size": resolved.batch_size,
            "widths": [resolved.g_channels, resolved.d_channels], "n_critic": resolved.n_critic,
            "d_norm": resolved.d_norm, "g_upsample": resolved.g_upsample, "ema_decay": resolved.ema_decay,
            "conv_backend": fastconv.backend(),
            "device": trainer.device, "threads": os.environ.get("OMP_NUM_THREADS"),
            "step_s_median": round(step_s, 4), "train_images_per_s": round(images_per_step / step_s, 2),
            "generator_updates_per_s": round(1 / step_s, 3),
            "sample_images_per_s": round(cfg.batch_size / sample_s, 1),
            "walk_frames_per_s": round(len(walk) / statistics.median(map(sum, zip(generate_s, encode_s))), 1),
            "walk_generate_frames_per_s": round(len(walk) / statistics.median(generate_s), 1),
            "walk_encode_frames_per_s": round(len(walk) / statistics.median(encode_s), 1),
            "rss_mb_after_warmup": None if rss_warm is None else round(rss_warm),
            "rss_growth_mb_per_step": None if rss_warm is None else round((rss_end - rss_warm) / steps, 1),
            "paddle": paddle.__version__,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", default=[], help="a configs/ name (repeatable; default all)")
    parser.add_argument("--model", choices=["dcgan", "wgan_gp"], help="an ad-hoc case instead of the recipes")
    parser.add_argument("--size", type=int, help="image side of the ad-hoc case (default 64)")
    parser.add_argument("--batch-size", type=int, help="overrides the recipe's batch size")
    parser.add_argument("--steps", type=int, default=3, help="timed generator steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()

    known = recipes()
    if args.model or args.size:
        cases = {f"{args.model or 'dcgan'}_{args.size or 64}": {"model": args.model or "dcgan", "size": args.size or 64}}
    else:
        unknown = [r for r in args.recipe if r not in known]
        if unknown:
            parser.error(f"unknown recipe {unknown[0]!r}; choose from {', '.join(known)}")
        cases = {name: known[name] for name in (args.recipe or known)}
    extra = parse_set(args.set)
    for name, values in cases.items():
        values = {**values, **extra}
        if args.batch_size:
            values["batch_size"] = args.batch_size
        print(json.dumps(bench(name, values, args.steps, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
