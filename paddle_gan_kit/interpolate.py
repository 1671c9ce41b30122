"""``python -m paddle_gan_kit.interpolate``: a looping latent walk of a trained generator as an
animated GIF, an MP4 or a folder of PNG frames.

The walk visits ``--keys K`` keyframes, ``--frames F`` frames per segment, and closes the loop
back to the first key: K*F frames, the first key not repeated at the end. Keyframes are the
latents of seeds (``--seed S``: seeds S, S+1, ...; ``--key-seeds 3,17,42``: exactly those), the
same latents ``python -m paddle_gan_kit.sample`` labels its tiles with. A class-conditional run
walks through classes too: key k is of class ``--classes``[k] (default: class k mod the number of
classes), and between keys the class embedding moves in a straight line while the latent
follows its slerp.

From a notebook::

    from paddle_gan_kit.interpolate import walk_frames, save_frames, show_gif
    frames = walk_frames("runs/wgan_gp_96", keys=5, frames=20)   # uint8 (T, H, W, C)
    save_frames(frames, "walk.gif", fps=20)
    show_gif("walk.gif")
"""
from __future__ import annotations

import argparse
import glob
import io
import os
import re
import sys

import paddle_gan_kit  # noqa: F401  (sets CPU threads before Paddle loads)
import numpy as np

from safe_files import atomic_path, write_bytes_atomic, write_png
from paddle_gan_kit import fastconv
from paddle_gan_kit.errors import ArgumentParser, GanKitError, cli_entry
from paddle_gan_kit.images import make_grid, upscale
from paddle_gan_kit.latent import DEFAULT_BATCH_SIZE, MODES, generate_images, latent_walk, latents_for_seeds
from paddle_gan_kit.classes import Classes
from paddle_gan_kit.run import generator_of

FORMATS = ("gif", "mp4", "frames")
# GIF stores frame delays in centiseconds, and browsers replace delays under 20 ms by 100 ms,
# so 50 frames/s is the fastest a GIF really plays.
MAX_GIF_FPS = 50.0
GRID_PADDING = 2  # pixels of black between the walks of a --grid animation
FRAME_NAME = "frame_{:05d}.png"


# ---- the walk ------------------------------------------------------------------------------

def parse_grid(text: str) -> tuple[int, int]:
    """``"2x3"`` -> (2, 3): rows and columns of walks tiled in one animation."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise GanKitError(f"--grid must be ROWSxCOLS with both >= 1, e.g. 2x3; got {text!r}")
    return int(match.group(1)), int(match.group(2))


def parse_seeds(text: str) -> list[int]:
    """``"3,17,42"`` -> [3, 17, 42] (integers >= 0)."""
    try:
        seeds = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise GanKitError(f"--key-seeds must be comma-separated integers, e.g. 3,17,42; got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise GanKitError(f"--key-seeds must be integers >= 0; got {text!r}")
    return seeds


def walk_seeds(keys: int = 5, seed: int = 0, walks: int = 1, key_seeds=None) -> list[list[int]]:
    """Latent seeds of every keyframe: one list of K seeds per walk.

    Random keys are consecutive seeds (walk j, key k: ``seed + j*K + k``), so the keys of a
    default walk are the first tiles of ``sample --seed S``; ``key_seeds`` gives one walk's
    keys explicitly.
    """
    if key_seeds is not None:
        key_seeds = [int(s) for s in key_seeds]
        if len(key_seeds) < 2:
            raise GanKitError(f"a walk needs at least 2 key seeds, got {len(key_seeds)}; e.g. --key-seeds 3,17,42")
        if walks != 1:
            raise GanKitError("--key-seeds gives the keys of one walk; drop --grid or drop --key-seeds")
        if any(s < 0 for s in key_seeds):
            raise GanKitError(f"key seeds must be integers >= 0, got {key_seeds}")
        return [key_seeds]
    if int(keys) < 2:
        raise GanKitError(f"--keys must be >= 2 (a loop needs two keyframes), got {keys}")
    if int(seed) < 0:
        raise GanKitError(f"--seed must be >= 0, got {seed}")
    return [[seed + j * keys + k for k in range(keys)] for j in range(walks)]


def _check_walk(keys, frames, mode, seed, walks, key_seeds) -> list[list[int]]:
    if int(frames) < 1:
        raise GanKitError(f"--frames must be >= 1 (frames per segment), got {frames}")
    if mode not in MODES:
        raise GanKitError(f"unknown --mode {mode!r}; use {' or '.join(MODES)}")
    return walk_seeds(keys, seed, walks, key_seeds)


def walk_latents(z_dim: int, z_dist: str = "normal", keys: int = 5, frames: int = 20,
                 mode: str = "slerp", seed: int = 0, walks: int = 1, key_seeds=None) -> np.ndarray:
    """Latents of ``walks`` closed walks: (T, walks, z_dim) float32 with T = K*F."""
    paths = [latent_walk(latents_for_seeds(seeds, z_dim, z_dist), frames, mode, z_dist)  # (T, D)
             for seeds in _check_walk(keys, frames, mode, seed, walks, key_seeds)]
    return np.stack(paths, axis=1)  # (T, walks, D)


def walk_classes(generator, cfg, keys: int, frames: int, walks: int, classes=None) -> np.ndarray | None:
    """A conditional run's class embeddings along the walks: (T, walks, E) float32, key k of
    class ``classes[k]`` (names or indices; default k mod the number of classes) and straight
    lines between keys; None for an unconditional run (which refuses ``classes`` in one line)."""
    if classes is not None and cfg.conditional and len(classes) != keys:
        raise GanKitError(f"--classes names {len(classes)} classes for {keys} keys; give one per key (or drop --keys)")
    ids = Classes.of(cfg).labels(classes or None, keys)  # one line for a class of an unconditional run
    if ids is None:
        return None
    import paddle

    with paddle.no_grad():
        points = generator.class_embedding(paddle.to_tensor(np.array(ids, np.int64))).numpy()  # (K, E)
    path = latent_walk(points, frames, "linear", "normal")  # (T, E)
    return np.repeat(path[:, None], walks, axis=1)


def walk_frames(run, keys: int = 5, frames: int = 20, mode: str = "slerp", grid=(1, 1),
                seed: int = 0, key_seeds=None, snapshot=None, scale: int = 1,
                batch_size: int = DEFAULT_BATCH_SIZE, classes=None) -> np.ndarray:
    """Frames of a looping latent walk: uint8 (T, H', W', C), T = keys * frames.

    ``run`` is a run directory, a snapshot file, or the ``(generator, cfg)`` pair from
    ``paddle_gan_kit.load_generator``. ``grid`` (rows, cols) or ``"RxC"`` tiles that many
    independent walks per frame with 2 px black gaps; ``scale`` upscales each image by nearest
    neighbour. With ``grid=(1, 1)`` and ``scale=1`` frame ``k*frames`` is exactly G(z_k).
    ``classes``: a conditional run's class of each key (see ``walk_classes``).
    """
    rows, cols = parse_grid(grid) if isinstance(grid, str) else (int(grid[0]), int(grid[1]))
    if rows < 1 or cols < 1:
        raise GanKitError(f"grid must have rows and columns >= 1, got {rows}x{cols}")
    if int(scale) < 1:
        raise GanKitError(f"--scale must be an integer >= 1, got {scale}")
    # validate the walk before loading the model: a typo should not cost a snapshot load
    _check_walk(keys, frames, mode, seed, rows * cols, key_seeds)
    generator, cfg = generator_of(run, snapshot)
    z = walk_latents(cfg.z_dim, cfg.z_dist, keys, frames, mode, seed, rows * cols, key_seeds)
    steps, walks = z.shape[:2]
    embeddings = walk_classes(generator, cfg, z.shape[0] // frames, frames, walks, classes)  # (T, walks, E)
    condition = None if embeddings is None else embeddings.reshape(steps * walks, -1)
    images = generate_images(generator, z.reshape(steps * walks, -1), batch_size, condition)  # (T*W, H, W, C)
    images = upscale(images, scale)
    images = images.reshape(steps, walks, *images.shape[1:])  # (T, walks, H, W, C)
    if walks == 1:
        return images[:, 0]  # (T, H, W, C)
    # (T, walks, H, W, C) -> (T, rows*(H+p)+p, cols*(W+p)+p, C)
    return np.stack([make_grid(frame, ncols=cols, padding=GRID_PADDING) for frame in images])


# ---- writing -------------------------------------------------------------------------------

def infer_format(path: str, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given (checked against the extension), else from it."""
    ext = os.path.splitext(str(path))[1].lower()
    by_ext = {".gif": "gif", ".mp4": "mp4", "": "frames"}.get(ext)
    if fmt is None:
        if by_ext is None:
            raise GanKitError(f"cannot tell the format of {path}; end it in .gif or .mp4, or pass --format")
        return by_ext
    if fmt not in FORMATS:
        raise GanKitError(f"unknown --format {fmt!r}; use {', '.join(FORMATS)}")
    if fmt in ("gif", "mp4") and ext != f".{fmt}":
        raise GanKitError(f"--format {fmt} writes a .{fmt} file; --out {path} ends in {ext or 'no extension'}")
    if fmt == "frames" and ext in (".gif", ".mp4"):
        raise GanKitError(f"--format frames writes a folder of PNGs; --out {path} looks like a file")
    return fmt


def check_writable(path: str, fmt: str) -> None:
    """Fail early, before any generation, when ``path`` cannot be written."""
    folder = path if fmt == "frames" else (os.path.dirname(os.path.abspath(path)))
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise GanKitError(f"cannot write {path}: {exc.strerror or exc}; choose another --out") from None
    if fmt != "frames" and os.path.isdir(path):
        raise GanKitError(f"{path} is a folder; give a file name such as walk.{fmt}")


def check_fps(fps: float, fmt: str) -> None:
    """Raise ``GanKitError`` unless ``fps`` is positive (and at most 50 for a GIF)."""
    if not fps > 0:
        raise GanKitError(f"--fps must be > 0, got {fps}")
    if fmt == "gif" and fps > MAX_GIF_FPS:
        raise GanKitError(f"--fps for a GIF must be at most {MAX_GIF_FPS:g} (GIF delays are in 10 ms steps); "
                          "use --format mp4 for faster")


def gif_frame_ms(fps: float) -> int:
    """Per-frame delay a GIF can store for ``fps``: milliseconds, rounded to 10 ms."""
    return int(round(100.0 / fps)) * 10


def encode_gif(frames: np.ndarray, fps: float = 20.0) -> bytes:
    """uint8 (T, H, W, C) frames -> bytes of a GIF that loops forever.

    Every frame gets its own adaptive 256-colour palette (median cut, no dithering): one global
    palette bands the smooth gradients of generated images, and dithering adds noise that
    flickers from frame to frame. Pillow stores consecutive identical frames once, with their
    delays summed, so the animation plays the same.
    """
    from PIL import Image

    frames = _as_rgb(frames)
    check_fps(fps, "gif")
    pictures = [Image.fromarray(frame).quantize(256, method=Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE) for frame in frames]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=gif_frame_ms(fps), loop=0)
    return buffer.getvalue()


def _as_rgb(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"frames must be uint8 (T, H, W, 1 or 3), got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError("no frames to write")
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def _write_mp4(frames: np.ndarray, path: str, fps: float) -> None:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise GanKitError(
            "writing MP4 needs imageio-ffmpeg (it ships its own ffmpeg): pip install imageio-ffmpeg; "
            "or use --format gif"
        ) from None
    frames = _as_rgb(frames)
    # H.264 in yuv420p (what browsers and phones play) needs even sides: pad by edge pixels
    # rather than letting ffmpeg rescale, which would blur the generator's pixels.
    _, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (w + w % 2, h + h % 2), fps=fps, codec="libx264",
                                             pix_fmt_out="yuv420p", quality=8, macro_block_size=1,
                                             ffmpeg_log_level="error", output_params=["-f", "mp4"])
        writer.send(None)  # start ffmpeg
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()


def _write_frame_folder(frames: np.ndarray, folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        write_png(os.path.join(folder, FRAME_NAME.format(i)), frame)
    # frames past the new end are left from an older, longer walk; they would play as part of it
    for stale in glob.glob(os.path.join(folder, "frame_*.png")):
        match = re.fullmatch(r"frame_(\d{5,})\.png", os.path.basename(stale))
        if match and int(match.group(1)) >= len(frames):
            os.remove(stale)


def save_frames(frames: np.ndarray, path: str, fps: float = 20.0, format: str | None = None) -> str:
    """Write uint8 (T, H, W, C) frames as a looping GIF, an MP4, or numbered PNGs; returns path.

    ``format`` is ``"gif"``, ``"mp4"`` or ``"frames"`` (a folder of ``frame_00000.png`` ...);
    by default it follows the extension of ``path`` (none: a folder of frames).
    """
    path = str(path)
    fmt = infer_format(path, format)
    check_fps(fps, fmt)
    check_writable(path, fmt)
    try:
        if fmt == "gif":
            write_bytes_atomic(path, encode_gif(frames, fps))
        elif fmt == "mp4":
            _write_mp4(frames, path, fps)
        else:
            _write_frame_folder(frames, path)
    except OSError as exc:
        raise GanKitError(f"cannot write {path}: {exc.strerror or exc}; choose another --out") from None
    return path


def interpolate(run, out: str = "walk.gif", keys: int = 5, frames: int = 20, mode: str = "slerp",
                grid=(1, 1), fps: float = 20.0, seed: int = 0, key_seeds=None, snapshot=None,
                scale: int = 1, format: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                classes=None) -> str:
    """Render a looping latent walk of ``run`` and write it to ``out``; returns ``out``.

    Arguments are those of ``walk_frames`` and ``save_frames``; ``out`` is checked before the
    generator runs, so a bad path fails in a second, not after the frames are made.
    """
    fmt = infer_format(out, format)
    check_fps(fps, fmt)
    check_writable(out, fmt)
    video = walk_frames(run, keys=keys, frames=frames, mode=mode, grid=grid, seed=seed,
                        key_seeds=key_seeds, snapshot=snapshot, scale=scale, batch_size=batch_size, classes=classes)
    return save_frames(video, out, fps=fps, format=fmt)


def show_gif(source, fps: float = 20.0):
    """Show a GIF inline in Jupyter: ``source`` is a .gif path or uint8 (T, H, W, C) frames.

    Returns an ``IPython.display.Image`` (the notebook displays it as the cell's value).
    """
    try:
        from IPython.display import Image
    except ImportError:
        raise GanKitError("show_gif needs IPython (pip install ipython); or open the GIF in a browser") from None
    if isinstance(source, np.ndarray):
        return Image(data=encode_gif(source, fps), format="gif")
    with open(source, "rb") as f:
        return Image(data=f.read(), format="gif")


# ---- command line --------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m paddle_gan_kit.interpolate",
        description="Write a looping latent walk of a trained generator (GIF, MP4 or PNG frames).",
        epilog="Example: python -m paddle_gan_kit.interpolate runs/wgan_gp_96 --out walk.gif "
               "--keys 5 --frames 20 --grid 2x2 --scale 2",
    )
    parser.add_run_arguments()
    parser.add_argument("--out", default=None, help="output .gif, .mp4 or folder (default walk.gif / walk.mp4 / walk_frames)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="gif, mp4 or frames (default: from --out)")
    parser.add_argument("--keys", type=int, default=None, help="random keyframes in the loop (default 5)")
    parser.add_argument("--frames", type=int, default=20, help="frames per segment between keys (default 20)")
    parser.add_argument("--mode", choices=MODES, default="slerp",
                        help="slerp (default; the path for a Gaussian prior) or linear")
    parser.add_argument("--grid", default="1x1", help="ROWSxCOLS independent walks in one animation (default 1x1)")
    parser.add_argument("--fps", type=float, default=20.0, help="frames per second (default 20; at most 50 for GIF)")
    parser.add_argument("--seed", type=int, default=0,
                        help="keyframes are the latents of seeds SEED, SEED+1, ... (default 0)")
    parser.add_argument("--key-seeds", default=None, metavar="S1,S2,...",
                        help="walk through exactly these latent seeds (the labels of a sample grid)")
    parser.add_argument("--classes", default=None, metavar="C1,C2,...",
                        help="a conditional run: the class of each key, names or indices (sets --keys)")
    parser.add_image_arguments(DEFAULT_BATCH_SIZE)
    return parser


@cli_entry
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    fastconv.configure_from_flag(args.conv_backend)
    key_seeds = parse_seeds(args.key_seeds) if args.key_seeds is not None else None
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    if key_seeds is not None and args.keys is not None and args.keys != len(key_seeds):
        raise GanKitError(f"--keys {args.keys} but --key-seeds names {len(key_seeds)} seeds; drop --keys")
    if classes is not None and key_seeds is not None and len(classes) != len(key_seeds):
        raise GanKitError(f"--classes names {len(classes)} classes and --key-seeds {len(key_seeds)} seeds; give one "
                          "class per key seed")
    keys = len(key_seeds) if key_seeds is not None else len(classes) if classes is not None else (
        5 if args.keys is None else args.keys)
    out = args.out
    if out is None:
        out = {"gif": "walk.gif", "mp4": "walk.mp4", "frames": "walk_frames"}[args.format or "gif"]
    path = interpolate(args.run, out, keys=keys, frames=args.frames, mode=args.mode,
                       grid=parse_grid(args.grid), fps=args.fps, seed=args.seed, key_seeds=key_seeds,
                       snapshot=args.snapshot, scale=args.scale, format=args.format,
                       batch_size=args.batch_size, classes=classes)
    print(f"wrote {path} ({keys * args.frames} frames, {args.fps:g} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
