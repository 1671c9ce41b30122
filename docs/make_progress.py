"""Rebuild docs/quickstart_progress.png from a finished quick-start run: the first rows of the
run's sample grids at a few steps, side by side (the grids show the same fixed noise).

    python -m paddle_gan_kit.train --config configs/quickstart_cpu.yaml
    python docs/make_progress.py runs/quickstart --steps 0 500 1500 5000
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from PIL import Image

DOCS = os.path.dirname(os.path.abspath(__file__))


def progress_strip(run_dir: str, steps: list[int], rows: int, gap: int = 16) -> np.ndarray:
    """The top ``rows`` rows of tiles of each step's grid, left to right, ``gap`` white pixels apart."""
    crops = []
    for step in steps:
        grid = np.asarray(Image.open(os.path.join(run_dir, "samples", f"step_{step:08d}.png")).convert("RGB"))
        tile = (grid.shape[1] - 2) // 8  # grids are 8 tiles wide with a 2-pixel border (make_grid)
        crops.append(grid[: 2 + rows * tile])
    height = max(c.shape[0] for c in crops)
    strip = np.full((height, sum(c.shape[1] for c in crops) + gap * (len(crops) - 1), 3), 255, np.uint8)
    x = 0
    for crop in crops:
        strip[: crop.shape[0], x:x + crop.shape[1]] = crop
        x += crop.shape[1] + gap
    return strip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 500, 1500, 5000])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--out", default=os.path.join(DOCS, "quickstart_progress.png"))
    args = parser.parse_args(argv)
    Image.fromarray(progress_strip(args.run_dir, args.steps, args.rows)).save(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
