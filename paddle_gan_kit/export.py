"""``python -m paddle_gan_kit.export``: a trained generator as a Paddle inference model, and as ONNX.

Writes ``<out>/generator.*`` with ``paddle.jit.save`` (the program and its parameters, loadable
with ``paddle.jit.load`` or Paddle Inference without this package) and ``<out>/meta.json``
(what the model expects and returns). The input is ``z`` (N, z_dim) float32 with any N, the
output images (N, C, H, W) float32 in [-1, 1]; the generator is exported in eval mode (BatchNorm
running statistics) and the EMA weights are used when the run keeps them.

    python -m paddle_gan_kit.export runs/wgan_gp_96 --out exported/gems96
    python -m paddle_gan_kit.export runs/dcgan_mnist_32 --snapshot best --out exported/digits

From Python::

    import paddle
    generator = paddle.jit.load("exported/gems96/generator")
    images = generator(paddle.randn([16, 100]))   # (16, 3, 96, 96) in [-1, 1]

``--format onnx`` also converts that model with paddle2onnx (``pip install -e ".[onnx]"``) into
``<out>/generator.onnx`` (opset :data:`ONNX_OPSET`, input ``z`` with a dynamic batch size),
which runs without Paddle::

    import numpy as np, onnxruntime
    session = onnxruntime.InferenceSession("exported/gems96/generator.onnx")
    z = np.random.default_rng(0).standard_normal((16, 100)).astype(np.float32)
    images = session.run(None, {"z": z})[0]       # (16, 3, 96, 96) float32 in [-1, 1]
"""
from __future__ import annotations

import json
import os
import sys

import paddle_gan_kit  # noqa: F401  (sets CPU threads before Paddle loads)
import paddle

from safe_files import atomic_path, write_text_atomic
from paddle_gan_kit import fastconv
from paddle_gan_kit.errors import ArgumentParser, GanKitError, cli_entry
from paddle_gan_kit.classes import Classes
from paddle_gan_kit import snapshot as snapshots
from paddle_gan_kit.run import generator_from_payload, resolve_snapshot, run_dir_of
from paddle_gan_kit.runtime import silenced_output

MODEL_NAME = "generator"
META_NAME = "meta.json"  # not generator.*: paddle.jit.load reads files by that prefix
FORMATS = ("paddle", "onnx", "web")
ONNX_OPSET = 11  # onnxruntime runs it everywhere; the generator needs nothing newer


def _paddle2onnx():
    try:
        import paddle2onnx
    except ImportError:
        raise GanKitError('--format onnx needs paddle2onnx: pip install -e ".[onnx]" (or pip install paddle2onnx '
                          'onnxruntime)') from None
    except Exception as exc:  # paddle2onnx 2.x refuses Paddle 2.6 as it is imported
        if int(paddle.__version__.split(".")[0]) < 3:
            raise GanKitError(f'--format onnx on Paddle {paddle.__version__} needs paddle2onnx 1.x: '
                              'pip install "paddle2onnx<2" onnxruntime') from None
        raise GanKitError(f"paddle2onnx does not load here ({' '.join(str(exc).split())[:160]}); "
                          'reinstall it: pip install -e ".[onnx]"') from None
    return paddle2onnx


def _program_files(prefix: str) -> tuple[str, str]:
    """The program and parameter files ``paddle.jit.save`` wrote for ``prefix``: .json (PIR,
    Paddle 3) or .pdmodel (Paddle 2.6), and .pdiparams."""
    for suffix in (".json", ".pdmodel"):
        if os.path.isfile(prefix + suffix):
            return prefix + suffix, prefix + ".pdiparams"
    raise GanKitError(f"paddle.jit.save wrote no program next to {prefix}; the Paddle export failed")


def export_generator(run: str, out: str, snapshot=None, format: str = "paddle") -> str:
    """Export the generator of ``run`` (a run directory or snapshot file) to ``out``; with
    ``format="onnx"``, also ``out/generator.onnx``.

    Returns the path prefix to pass to ``paddle.jit.load``. ``out`` must not hold files yet.
    """
    if format not in FORMATS[:2]:
        raise GanKitError(f"unknown format {format!r} for export_generator; use {' or '.join(FORMATS[:2])} (the web "
                          "page: paddle_gan_kit.web.export_site)")
    converter = _paddle2onnx() if format == "onnx" else None
    if os.path.isdir(out) and os.listdir(out):
        raise GanKitError(f"--out {out} is not empty; choose a new folder (an export is never overwritten)")
    file = resolve_snapshot(run, snapshot)
    payload = snapshots.read_snapshot(file)
    generator, cfg = generator_from_payload(payload, file)
    specs = [paddle.static.InputSpec(shape=[None, cfg.z_dim], dtype="float32", name="z")]
    if cfg.conditional:  # a conditional generator's second input: the class of each image
        specs.append(paddle.static.InputSpec(shape=[None], dtype="int64", name="label"))
    os.makedirs(out, exist_ok=True)
    prefix = os.path.join(out, MODEL_NAME)
    with fastconv.using("paddle"):  # an exported model holds Paddle's own operators only
        paddle.jit.save(paddle.jit.to_static(generator, input_spec=specs, full_graph=True), prefix)
    meta = {
        "input": {"name": "z", "shape": [None, cfg.z_dim], "dtype": "float32",
                  "distribution": "N(0, 1)" if cfg.z_dist == "normal" else "U(-1, 1)"},
        "output": {"shape": [None, cfg.channels, cfg.size, cfg.size], "dtype": "float32", "range": [-1.0, 1.0],
                   "layout": "NCHW", "to_uint8": "clip((x + 1) * 127.5 + 0.5, 0, 255)"},
        "model": cfg.model, "size": cfg.size, "channels": cfg.channels, "z_dim": cfg.z_dim, "z_dist": cfg.z_dist,
        # the run's name and step only: an export is shared, and holds no path of this machine
        "run": os.path.basename(run_dir_of(os.path.abspath(run))), "snapshot": os.path.basename(file),
        "step": int(payload["step"]), "paddle": paddle.__version__,
    }
    if cfg.conditional:
        meta["label"] = {"name": "label", "shape": [None], "dtype": "int64", "classes": list(Classes.of(cfg).names)}
    if converter is not None:
        program, params = _program_files(prefix)
        onnx_path = prefix + ".onnx"
        with atomic_path(onnx_path) as tmp:
            try:
                with silenced_output():  # the converter logs every pass to the terminal
                    converter.export(program, params, str(tmp), opset_version=ONNX_OPSET, verbose=False)
            except Exception as exc:  # the converter raises many types for an op it cannot map
                raise GanKitError(f"paddle2onnx could not convert the generator ({' '.join(str(exc).split())[:200]}); "
                                  "the Paddle export in --out is complete") from None
            if not tmp.is_file():
                raise GanKitError("paddle2onnx wrote no ONNX model (an op it cannot convert?); the Paddle export "
                                  "in --out is complete")
        meta["onnx"] = {"file": os.path.basename(onnx_path), "opset": ONNX_OPSET,
                        "input": "z" if not cfg.conditional else ["z", "label"],
                        "paddle2onnx": getattr(converter, "__version__", "?")}
    write_text_atomic(os.path.join(out, META_NAME), json.dumps(meta, indent=2))
    return prefix


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m paddle_gan_kit.export",
        description="Export a trained generator as a Paddle inference model (paddle.jit.save).",
        epilog="Example: python -m paddle_gan_kit.export runs/wgan_gp_96 --out exported/gems96",
    )
    parser.add_run_arguments()
    parser.add_argument("--out", required=True, help="new (or empty) folder for generator.* files")
    parser.add_argument("--format", choices=FORMATS, default="paddle",
                        help=f"paddle (paddle.jit.save), onnx: that plus generator.onnx (opset {ONNX_OPSET}; "
                             'needs pip install -e ".[onnx]"), or web: a static page that runs generator.onnx in '
                             "the visitor's browser")
    parser.add_argument("--runtime", metavar="TGZ", help="web: onnxruntime-web's npm tarball (npm pack "
                                                         "onnxruntime-web@1.20.1); default: $PADDLE_GAN_KIT_ORT_WEB "
                                                         "or the cache folder's")
    parser.add_argument("--download", action="store_true", help="web: fetch that tarball from the npm registry "
                                                                "once into the cache folder (sha256 checked)")
    return parser


@cli_entry
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.format == "web":
        from paddle_gan_kit.web import export_site

        page = export_site(args.run, args.out, snapshot=args.snapshot, runtime=args.runtime, download=args.download)
        print(f"wrote the page {page} ({', '.join(sorted(os.listdir(args.out)))}); serve the folder from any static "
              f"host, or try it here: python -m http.server --directory {args.out}")
        return 0
    if args.runtime or args.download:
        raise GanKitError("--runtime and --download are for --format web; drop them or add --format web")
    prefix = export_generator(args.run, args.out, snapshot=args.snapshot, format=args.format)
    files = sorted(os.listdir(os.path.dirname(prefix) or "."))
    print(f"exported to {prefix} ({', '.join(files)}); load with paddle.jit.load({prefix!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
