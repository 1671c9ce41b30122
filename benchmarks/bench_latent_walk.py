"""Latent-walk throughput: generator frames/s and GIF-encoding frames/s (a benchmark, not a test).

An untrained generator with the default DCGAN widths is as fast as a trained one, so no run is
needed. Generation (``latent.generate_images``, batched, eval mode, on Paddle's device) and
encoding (``interpolate.encode_gif``, per-frame adaptive palette) are timed separately; the
median of ``--repeats`` runs after one warm-up is printed as one JSON line.

    python benchmarks/bench_latent_walk.py                      # 96 px, 5 keys x 20 frames
    python benchmarks/bench_latent_walk.py --size 64 --batch-size 32
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle_gan_kit  # noqa: E402  (sets CPU threads before Paddle loads)
import paddle  # noqa: E402

from paddle_gan_kit.config import TrainConfig  # noqa: E402
from paddle_gan_kit.interpolate import encode_gif, walk_latents  # noqa: E402
from paddle_gan_kit.latent import generate_images  # noqa: E402
from paddle_gan_kit.models import build_generator  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up call, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    cfg = TrainConfig(size=args.size, channels=3).resolve()  # default widths: g_channels 64, z_dim 100
    paddle.seed(0)
    generator = build_generator(cfg)
    generator.eval()
    z = walk_latents(cfg.z_dim, cfg.z_dist, args.keys, args.frames)[:, 0]  # (T, z_dim)
    n = len(z)
    gen_s, frames = timed(lambda: generate_images(generator, z, args.batch_size), args.repeats)
    gif_s, gif = timed(lambda: encode_gif(frames, fps=20), args.repeats)
    print(json.dumps({
        "device": paddle.device.get_device(),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "size": args.size, "frames": n, "batch_size": args.batch_size,
        "generate_frames_per_s": round(n / gen_s, 1),
        "gif_encode_frames_per_s": round(n / gif_s, 1),
        "end_to_end_frames_per_s": round(n / (gen_s + gif_s), 1),
        "gif_kib": round(len(gif) / 1024, 1),
    }))


if __name__ == "__main__":
    main()
