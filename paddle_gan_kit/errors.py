"""The exception type for mistakes a user can make (bad flags, missing data, ...), and the CLI
plumbing that prints them.

``GanKitError`` is a kind of ``data_prep.errors.UserError``, like ``DataPrepError``: the
command-line tools print any ``UserError`` as one line, ``error: <message>``, and exit with
code 2; programming errors stay ordinary tracebacks.
"""
from __future__ import annotations

import argparse
import functools
import sys

from safe_files.errors import NoSpaceError, UserError

__all__ = ["ArgumentParser", "GanKitError", "NoSpaceError", "UserError", "cli_entry"]


class GanKitError(UserError):
    """A user error; the message names the problem and the fix in one line."""


def cli_entry(main):
    """Decorate a CLI ``main(argv)`` so user errors print one line and exit 2."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except UserError as exc:
            message = " ".join(str(exc).split())
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as our one-line error instead of usage + message."""

    def error(self, message):
        raise GanKitError(f"{message}; see {self.prog} --help")

    def add_run_arguments(self) -> None:
        """The ``RUN`` positional and ``--snapshot`` that every tool reading a trained run takes
        (resolved by ``run.resolve_snapshot``)."""
        self.add_argument("run", metavar="RUN", help="run directory (its newest snapshot) or one snapshot file")
        self.add_argument("--snapshot", default=None, metavar="STEP|best|FILE",
                          help="step number, 'best' or a snapshot file name in RUN (default: the newest)")

    def add_image_arguments(self, batch_size: int) -> None:
        """``--scale``, ``--batch-size`` and ``--conv-backend`` of the tools that generate images."""
        self.add_argument("--scale", type=int, default=1, help="integer nearest-neighbour upscaling (default 1)")
        self.add_argument("--batch-size", type=_positive_int, default=batch_size,
                          help=f"images per generator call (default {batch_size})")
        self.add_conv_backend_argument()

    def add_conv_backend_argument(self) -> None:
        self.add_argument("--conv-backend", choices=("auto", "onednn", "paddle"), default=None,
                          help="CPU convolutions: auto (oneDNN when it builds, else Paddle's; the default, or "
                               "$PADDLE_GAN_KIT_CONV_BACKEND), onednn or paddle")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
