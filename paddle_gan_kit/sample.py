"""``python -m paddle_gan_kit.sample``: samples of a trained generator to pick favourites from.

Sample ``i`` is made from latent seed ``seed + i``, drawn alone from that seed, so any tile can
be made again on its own: ``--grid`` draws a grid with each tile labelled by its seed, ``--out``
writes one PNG per sample named by its seed, and ``interpolate --key-seeds 3,17,42`` walks
through exactly the tiles labelled 3, 17 and 42.

For a class-conditional run, ``--class Ruby`` (a name or an index) draws that class alone and
``--per-class K`` a grid with one row per class, the same K latents in every row; without
either, sample i is of class i mod the number of classes.

From a notebook::

    from paddle_gan_kit.sample import sample_images, labelled_grid
    images, seeds = sample_images("runs/dcgan_64", n=64, seed=0)   # uint8 (64, H, W, C)
    grid = labelled_grid(images, seeds)                             # uint8 (H', W', C)
    images, seeds = sample_images("runs/gems", n=16, labels="oval")  # a conditional run's class
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import paddle_gan_kit  # noqa: F401  (sets CPU threads before Paddle loads)
import numpy as np

from safe_files import write_png
from paddle_gan_kit import fastconv
from paddle_gan_kit.errors import ArgumentParser, GanKitError, cli_entry
from paddle_gan_kit.images import upscale
from paddle_gan_kit.latent import DEFAULT_BATCH_SIZE, generate_images, latents_for_seeds
from paddle_gan_kit.classes import Classes
from paddle_gan_kit.run import generator_of

SAMPLE_NAME = "seed_{:06d}.png"
CLASS_SAMPLE_NAME = "class_{:03d}_seed_{:06d}.png"  # one class of a conditional run
LABEL_HEIGHT = 12  # pixels of the caption strip under each tile (fits Pillow's default font)
GRID_PADDING = 2


def sample_seeds(n: int = 64, seed: int = 0) -> list[int]:
    """Latent seeds of ``n`` samples: ``seed, seed+1, ..., seed+n-1``."""
    if int(n) < 1:
        raise GanKitError(f"--n must be >= 1, got {n}")
    if int(seed) < 0:
        raise GanKitError(f"--seed must be >= 0, got {seed}")
    return list(range(int(seed), int(seed) + int(n)))


def sample_images(run, n: int = 64, seed: int = 0, seeds=None, snapshot=None,
                  batch_size: int = DEFAULT_BATCH_SIZE, labels=None) -> tuple[np.ndarray, list[int]]:
    """``(images uint8 (N, H, W, C), seeds)``: sample i from latent seed ``seeds[i]``.

    ``seeds`` defaults to ``seed, ..., seed+n-1``. ``run`` is a run directory, a snapshot
    file, or the ``(generator, cfg)`` pair from ``paddle_gan_kit.load_generator``. ``labels``
    (a conditional run): one class for all, a name or an index, or one per sample; default:
    sample i is of class i mod the number of classes.
    """
    seeds = sample_seeds(n, seed) if seeds is None else [int(s) for s in seeds]
    generator, cfg = generator_of(run, snapshot)
    z = latents_for_seeds(seeds, cfg.z_dim, cfg.z_dist)  # (N, z_dim)
    return generate_images(generator, z, batch_size, Classes.of(cfg).labels(labels, len(seeds))), seeds


def _label_strip(text: str, width: int) -> np.ndarray:
    """uint8 (LABEL_HEIGHT, width, 3): ``text`` in light gray, centred, on black."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    strip = Image.new("RGB", (width, LABEL_HEIGHT), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (right - left)) // 2 - left, (LABEL_HEIGHT - (bottom - top)) // 2 - top),
              text, fill=(220, 220, 220), font=font)
    return np.asarray(strip)


def _text_width(text: str) -> int:
    from PIL import Image, ImageDraw, ImageFont

    left, _, right, _ = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=ImageFont.load_default())
    return right - left


def labelled_grid(images: np.ndarray, seeds, ncols: int | None = None, scale: int = 1) -> np.ndarray:
    """Tiles with their seed written under each: uint8 (N, H, W, C) -> uint8 (H', W', 3).

    Tiles keep their pixels (upscaled by nearest neighbour when ``scale`` > 1), each in a cell
    widened to its caption when the caption is wider than a small tile.
    """
    images = upscale(np.asarray(images), scale)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)  # captions are RGB; gray tiles stay gray
    n, h, w, _ = images.shape
    labels = [str(s) for s in seeds]
    if len(labels) != n:
        raise ValueError(f"{n} images but {len(labels)} seeds")
    ncols = ncols or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    cell_w = max(w, max(_text_width(t) for t in labels) + 2)
    cell_h = h + LABEL_HEIGHT
    p = GRID_PADDING
    grid = np.zeros((nrows * (cell_h + p) + p, ncols * (cell_w + p) + p, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = p + r * (cell_h + p), p + c * (cell_w + p)
        dx = (cell_w - w) // 2
        grid[y:y + h, x + dx:x + dx + w] = images[i]  # the tile, pixel for pixel
        grid[y + h:y + cell_h, x:x + cell_w] = _label_strip(labels[i], cell_w)
    return grid


def check_writable_file(path: str) -> None:
    """Fail early, before any generation, when ``path`` cannot be written."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(f"{path}.write-test-{os.getpid()}", "wb"):
            pass
        os.remove(f"{path}.write-test-{os.getpid()}")
    except OSError as exc:
        raise GanKitError(f"cannot write {path}: {exc.strerror or exc}; choose another path") from None


def save_samples(images: np.ndarray, seeds, out_dir: str, labels=None) -> list[str]:
    """One PNG per sample, ``out_dir/seed_000042.png`` (``class_003_seed_000042.png`` with
    ``labels``); returns the paths."""
    paths = []
    try:
        os.makedirs(out_dir, exist_ok=True)
        for i, (image, s) in enumerate(zip(images, seeds)):
            name = SAMPLE_NAME.format(int(s)) if labels is None else CLASS_SAMPLE_NAME.format(int(labels[i]), int(s))
            paths.append(os.path.join(out_dir, name))
            write_png(paths[-1], image)
    except OSError as exc:
        raise GanKitError(f"cannot write to {out_dir}: {exc.strerror or exc}; choose another --out") from None
    return paths


def sample(run, n: int = 64, seed: int = 0, grid: str | None = None, out: str | None = None,
           snapshot=None, scale: int = 1, ncols: int | None = None,
           batch_size: int = DEFAULT_BATCH_SIZE, klass=None, per_class: int | None = None) -> dict:
    """Draw ``n`` samples of ``run`` and write a labelled grid PNG and/or one PNG per sample.

    A conditional run: ``klass`` (a name or an index) draws that class alone; ``per_class`` K
    draws K samples (seeds ``seed`` .. ``seed+K-1``) of every class, one row per class.
    Returns ``{"grid": path or None, "files": [paths]}``. Output paths are checked before the
    generator runs.
    """
    if grid is None and out is None:
        raise GanKitError("nothing to write: give --grid FILE.png and/or --out DIR")
    if int(scale) < 1:
        raise GanKitError(f"--scale must be an integer >= 1, got {scale}")
    if ncols is not None and ncols < 1:
        raise GanKitError(f"--cols must be >= 1, got {ncols}")
    if per_class is not None and (int(per_class) < 1 or klass is not None):
        raise GanKitError(f"--per-class must be >= 1 and goes without --class, got {per_class}")
    seeds = sample_seeds(per_class or n, seed)
    if grid is not None:
        if os.path.splitext(grid)[1].lower() != ".png":
            raise GanKitError(f"--grid writes a PNG; give a file name ending in .png, got {grid}")
        check_writable_file(grid)
    if out is not None:
        check_writable_file(os.path.join(out, SAMPLE_NAME.format(seeds[0])))
    generator, cfg = generator_of(run, snapshot)
    classes = Classes.of(cfg)
    if per_class is not None:
        classes.require()
        labels = np.repeat(np.arange(len(classes)), len(seeds))  # row c: class c
        seeds, ncols = seeds * len(classes), len(seeds)
    else:
        labels = classes.labels(klass, len(seeds))
    images, seeds = sample_images((generator, cfg), seeds=seeds, batch_size=batch_size, labels=labels)
    if labels is None:
        captions = seeds
    else:  # the class's name on every tile, or on the first of each row of a per-class grid
        captions = [f"{classes.names[c][:10]} {s}" if per_class is None or i % ncols == 0 else str(s)
                    for i, (c, s) in enumerate(zip(labels, seeds))]
    result = {"grid": None, "files": []}
    if grid is not None:
        try:
            write_png(grid, labelled_grid(images, captions, ncols, scale))
        except OSError as exc:
            raise GanKitError(f"cannot write {grid}: {exc.strerror or exc}; choose another --grid") from None
        result["grid"] = grid
    if out is not None:
        result["files"] = save_samples(upscale(images, scale), seeds, out, labels)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m paddle_gan_kit.sample",
        description="Draw samples of a trained generator: a grid labelled by seed and/or one PNG per seed.",
        epilog="Example: python -m paddle_gan_kit.sample runs/dcgan_64 --n 64 --grid grid.png --seed 0; "
               "then python -m paddle_gan_kit.interpolate runs/dcgan_64 --key-seeds 3,17,42",
    )
    parser.add_run_arguments()
    parser.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="sample i uses latent seed SEED+i (default 0)")
    parser.add_argument("--grid", default=None, metavar="FILE.png", help="write a grid labelled with seeds")
    parser.add_argument("--out", default=None, metavar="DIR", help="write one PNG per sample, seed_000042.png")
    parser.add_argument("--cols", type=int, default=None, help="grid columns (default: square)")
    parser.add_argument("--class", dest="klass", default=None, metavar="NAME|INDEX",
                        help="a conditional run: samples of this class (its name or index)")
    parser.add_argument("--per-class", type=int, default=None, metavar="K",
                        help="a conditional run: K samples of every class, one row per class")
    parser.add_image_arguments(DEFAULT_BATCH_SIZE)
    return parser


@cli_entry
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    fastconv.configure_from_flag(args.conv_backend)
    result = sample(args.run, n=args.n, seed=args.seed, grid=args.grid, out=args.out,
                    snapshot=args.snapshot, scale=args.scale, ncols=args.cols, batch_size=args.batch_size,
                    klass=args.klass, per_class=args.per_class)
    if result["grid"]:
        last = args.seed + (args.per_class or args.n) - 1
        print(f"wrote {result['grid']} (seeds {args.seed}..{last}{', one row per class' if args.per_class else ''})")
    if result["files"]:
        print(f"wrote {len(result['files'])} PNGs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
