"""Throughput of data preparation versus the naive notebook approach (a script, not a test).

    python benchmarks/bench_data_prep.py [--count 3000] [--workers 2]

1. ``prepare``: N JPEGs of 600x600 → 96 px packed array, with --workers processes.
2. the training loader over the packed array: memmap, random batches of 64, converted to
   float32 (N, C, H, W) in [-1, 1].
3. for comparison, what a notebook does every epoch: read each JPEG, decode, resize, convert.
The JPEGs are generated into a temporary folder first (not timed).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep import load_prepared, prepare  # noqa: E402


def make_jpegs(folder: Path, count: int, side: int = 600) -> None:
    """Write ``count`` smooth random side x side JPEGs (photo-like sizes, ~60 KB each)."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur((rng.random((side, side, 3)) * 255).astype(np.uint8), (0, 0), 4)
    for i in range(count):
        # Shifted, tinted and numbered copies of one texture: distinct pixels (no duplicates
        # for prepare() to drop), cheap to make.
        img = cv2.add(np.roll(base, (i * 7) % side, axis=1), np.full_like(base, i % 50))
        cv2.putText(img, str(i), (40, 300), cv2.FONT_HERSHEY_SIMPLEX, 4, (255, 255, 255), 8)
        cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def to_training_batch(batch_hwc: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, C) → float32 (B, C, H, W) in [-1, 1], as the trainer feeds the model."""
    return batch_hwc.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0


def bench_loader(images: np.ndarray, batches: int, batch_size: int = 64) -> float:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(batches):
        idx = np.sort(rng.choice(len(images), batch_size, replace=False))  # sorted: fewer seeks
        to_training_batch(images[idx])
    return batches * batch_size / (time.perf_counter() - start)


def bench_naive(files: list[Path], size: int, limit: int) -> float:
    start = time.perf_counter()
    batch = []
    for path in files[:limit]:
        img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        side = min(h, w)
        img = img[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
        batch.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
        if len(batch) == 64:
            to_training_batch(np.stack(batch))
            batch = []
    return limit / (time.perf_counter() - start)


def main() -> None:
    """Run the three measurements and print images/s for each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="JPEGs to generate")
    parser.add_argument("--workers", type=int, default=2, help="prepare() worker processes")
    parser.add_argument("--size", type=int, default=96, help="output size in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "jpegs", Path(tmp) / "prepared"
        src.mkdir()
        t0 = time.perf_counter()
        make_jpegs(src, args.count)
        print(f"generated {args.count} JPEGs 600x600 in {time.perf_counter() - t0:.1f} s")

        report = prepare(src, out, [args.size], workers=args.workers, progress=False)
        print(f"prepare, --workers {args.workers}: {report.kept} images in "
              f"{report.seconds:.1f} s = {report.images_per_second:.0f} images/s")

        images, _ = load_prepared(out, args.size)
        rate = bench_loader(images, batches=200)
        print(f"packed-array loader (memmap, batch 64 → float32 CHW [-1,1]): {rate:,.0f} images/s")

        files = sorted(src.glob("*.jpg"))
        rate_naive = bench_naive(files, args.size, limit=min(len(files), 640))
        print(f"naive per-epoch JPEG read+decode+resize (1 process): {rate_naive:,.0f} images/s")
        print(f"loader speed-up over the naive epoch: {rate / rate_naive:,.0f}x")


if __name__ == "__main__":
    main()
