"""``python -m data_prep SRC --out DIR --sizes 64 96 256``: prepare a dataset for training.

User errors print one line, ``error: <message>``, and exit with code 2; Ctrl-C exits with 130
and leaves the previous dataset (if any) intact.
"""
from __future__ import annotations

import argparse
import sys

from data_prep.errors import DataPrepError, UserError
from data_prep.fit import FITS, INTERPOLATIONS, PAD_MODES
from data_prep.packed import load_prepared
from data_prep.prepare import parse_color, prepare
from data_prep.preview import save_preview
from data_prep.sources import DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_TOTAL_BYTES

MIB = 1024**2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse's own exit code is also 2; route it through our one-line format.
        raise DataPrepError(f"{message}; see `python -m data_prep --help`")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; ``--help`` documents every option."""
    parser = _Parser(
        prog="python -m data_prep",
        description="Turn a folder or archive (zip, tar, tar.gz) of JPEG/PNG/BMP/WebP images "
                    "into packed uint8 arrays DIR/<size>/images.npy (N, H, W, C) plus "
                    "DIR/manifest.json. Class folder names become labels. Re-runs only process "
                    "new files.",
        epilog="example: python -m data_prep ~/data/data54865/Gemstones.zip --out ~/data/gems "
               "--sizes 64 96 256 --preview gems.png")
    parser.add_argument("src", help="folder, .zip, .tar, .tar.gz/.tgz of images (any depth)")
    parser.add_argument("--out", required=True, help="dataset folder to create or update")
    parser.add_argument("--sizes", type=int, nargs="+", required=True, metavar="PX",
                        help="square output sizes in pixels, e.g. 64 96 256")
    parser.add_argument("--fit", choices=FITS, default="crop",
                        help="crop: centre square (default); pad: whole picture, borders "
                             "filled; stretch: ignore the aspect ratio")
    parser.add_argument("--interp", choices=INTERPOLATIONS, default="area",
                        help="resampling: area (INTER_AREA to shrink, cubic to enlarge; "
                             "default), lanczos (LANCZOS4), cubic, linear")
    parser.add_argument("--pad-mode", choices=PAD_MODES, default="color",
                        help="with --fit pad: fill with --background (default) or repeat the edge")
    parser.add_argument("--background", default="255,255,255",
                        help="RGB behind transparent pixels and padding: r,g,b, #rrggbb, white, "
                             "black or gray (default white)")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: the number of CPUs)")
    parser.add_argument("--force", action="store_true",
                        help="redo everything, even files already prepared, and allow new "
                             "--fit/--interp/--background or a new source")
    parser.add_argument("--png", action="store_true",
                        help="also write DIR/<size>/png/NNNNNN.png copies")
    parser.add_argument("--preview", metavar="PNG",
                        help="write a grid of prepared images (largest size) to check the crop")
    parser.add_argument("--max-total-mb", type=float, default=DEFAULT_MAX_TOTAL_BYTES / MIB,
                        help="refuse archives whose files add up to more than this, uncompressed "
                             "(default %(default).0f)")
    parser.add_argument("--max-entry-mb", type=float, default=DEFAULT_MAX_ENTRY_BYTES / MIB,
                        help="refuse archives holding one file larger than this, uncompressed "
                             "(default %(default).0f)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (0 done, 2 user error, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        report = prepare(args.src, args.out, args.sizes, fit=args.fit, interp=args.interp,
                         workers=args.workers, force=args.force, png=args.png,
                         background=parse_color(args.background), pad_mode=args.pad_mode,
                         progress=not args.quiet,
                         max_total_bytes=int(args.max_total_mb * MIB),
                         max_entry_bytes=int(args.max_entry_mb * MIB))
        print(report.summary())
        if args.preview:
            images, _ = load_prepared(report.out, max(report.sizes))
            print(f"preview → {save_preview(images, args.preview)}")
    except UserError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the dataset folder holds no half-written array, re-run the same "
              "command to finish", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
