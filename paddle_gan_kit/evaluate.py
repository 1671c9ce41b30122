"""``python -m paddle_gan_kit.evaluate RUN``: FID, KID and class coverage of a trained generator.

    python -m paddle_gan_kit.evaluate runs/dcgan_mnist_32 --metrics fid,kid,coverage --n 10000
    python -m paddle_gan_kit.evaluate runs/dcgan_64 --weights InceptionV3.pdparams --snapshot best

The real images default to the run's own training data; ``--real`` points elsewhere. Every
result names what its numbers depend on (real and generated counts, feature extractor, resizer)
and is saved as ``RUN/eval/step_XXXXXXXX.<extractor>.n<N>.json``: one file per snapshot step,
extractor and sample count, so only a re-evaluation of exactly those replaces a file (and says
so). The scoring itself is ``metrics.Evaluator``, the same one training uses.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import paddle_gan_kit  # noqa: F401  (sets CPU threads before Paddle loads)
import paddle

from safe_files import write_text_atomic
from paddle_gan_kit import fastconv, snapshot as snapshots
from paddle_gan_kit.data import BUILTIN_PREFIX, is_builtin_gems, load_images, load_npy, prepare_root_of
from paddle_gan_kit.errors import ArgumentParser, GanKitError, cli_entry
from paddle_gan_kit.metrics import Evaluator, parse_metrics
from paddle_gan_kit.metrics.cuts import CUTS, THRESHOLD
from paddle_gan_kit.metrics.evaluator import EXTRACTOR_CHOICES, KID_SUBSET_SIZE, KID_SUBSETS
from paddle_gan_kit.metrics.inception import WEIGHTS_ENV
from paddle_gan_kit.run import generator_from_payload, resolve_snapshot, run_dir_of

DEFAULT_N = 10000  # "FID-10k": FID is biased upwards for small n, so compare equal n only


def load_real(real: str | None, cfg, run_dir: str):
    """Real images for a run: ``real`` (folder, archive, prepared dir, .npy, builtin:NAME) or the
    run's own training data. Returns ``ImageData`` (uint8 (N, H, W, C), description, labels)."""
    source = real if real is not None else cfg.data
    if real is None and source is not None and not source.startswith(BUILTIN_PREFIX) \
            and not os.path.exists(os.path.expanduser(source)):
        raise GanKitError(f"the run was trained on --data {source}, which is not found from here; "
                          "pass the real images with --real PATH")
    if source is not None and source.endswith(".npy") and os.path.isfile(os.path.expanduser(source)):
        # any resolution: the extractor resizes real and generated images alike
        return load_npy(os.path.expanduser(source))
    return load_images(source, cfg.size, fit=cfg.fit, gems_count=cfg.gems_count,
                       prepare_root=prepare_root_of(run_dir), progress=False)


def result_path(run_dir: str, step: int, extractor: str, n: int) -> str:
    """Where the result for (snapshot step, extractor, n) is saved."""
    return os.path.join(run_dir, "eval", f"step_{step:08d}.{extractor}.n{n}.json")


def evaluate_run(run: str, metrics=None, n: int = DEFAULT_N, real: str | None = None,
                 extractor: str = "auto", weights: str | None = None, snapshot=None, seed: int = 0, *,
                 download: bool = False, save: bool = True, log=None) -> dict:
    """Evaluate one snapshot of a run (default: the newest; a step number or "best").
    ``metrics``: names or a comma list (default: fid and kid, coverage with the classifier, and
    the cut judge's numbers when the real images are the built-in gems).

    Returns the result dict (metric values next to n_real, n_fake, extractor, resizer, the
    snapshot, the real data) and, with ``save``, writes it to :func:`result_path` (its path is
    under the key ``"path"``). ``log``: a function given one-line notes (default: stderr).
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    if metrics is not None:
        metrics = parse_metrics(metrics)
    if int(n) < 2:
        raise GanKitError(f"--n must be >= 2 (a covariance needs two samples), got {n}")
    run_dir = run_dir_of(run)
    snap_path = resolve_snapshot(run, None if snapshot is None else str(snapshot))
    payload = snapshots.read_snapshot(snap_path)
    step = int(payload["step"])
    generator, cfg = generator_from_payload(payload, snap_path)
    data = load_real(real, cfg, run_dir)
    evaluator = Evaluator(data.images, data.labels, extractor=extractor, n=n, weights=weights, seed=seed,
                          batch_size=64, metrics=metrics, download=download,
                          gems=is_builtin_gems(real if real is not None else cfg.data))
    metrics = evaluator.metrics
    log(f"evaluating {os.path.basename(snap_path)} (step {step}) against {data.description}: {evaluator.describe()}")
    scores = evaluator(generator, cfg.z_dim, cfg.z_dist, cfg.conditional)

    result = dict(scores)
    result.update({
        "run": os.path.abspath(run_dir),
        "snapshot": os.path.basename(snap_path),
        "step": step,
        "generator": "ema" if payload.get("generator_ema") else "generator",
        "real_data": data.description,
        "metrics": list(metrics),
        "seed": int(seed),
        "extractor_info": {k: v for k, v in getattr(evaluator.extractor, "info", {}).items() if k != "from_cache"},
        "feature_dim": int(evaluator.extractor.dim),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "paddle": paddle.__version__,
    })
    if "kid" in metrics:
        result["kid_subsets"] = KID_SUBSETS
        result["kid_subset_size"] = min(KID_SUBSET_SIZE, result["n_real"], result["n_fake"])
    if save:
        path = result_path(run_dir, step, evaluator.extractor_name, int(n))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            log(f"replacing {path}: the earlier result for the same snapshot step, extractor and n")
        result["path"] = path
        write_text_atomic(path, json.dumps(result, indent=1))
    return result


def format_result(result: dict) -> list[str]:
    """One line per number, each naming the counts, extractor and resizer it depends on."""
    context = (f"n_real {result['n_real']}, n_fake {result['n_fake']}, extractor {result['extractor']}, "
               f"resizer {result['resizer']}")
    lines = []
    if "fid" in result:
        lines.append(f"fid {result['fid']:.4f}  ({context})")
    if "kid_mean" in result:
        lines.append(f"kid {result['kid_mean']:.6f} +- {result['kid_std']:.6f}  "
                     f"({result['kid_subsets']} subsets of {result['kid_subset_size']}; {context})")
    if "coverage_classes" in result:
        lines.append(f"coverage {int(result['coverage_classes'])} classes, evenness {result['coverage_evenness']:.3f}"
                     f"  ({context})")
    if "precision" in result:
        lines.append(f"precision {result['precision']:.3f}, recall {result['recall']:.3f}  (k = 3; {context})")
    if "intra_fid" in result:
        lines.append(f"intra-class fid {result['intra_fid']:.4f}  (the mean over {result['intra_classes']} classes of "
                     f"about {result['intra_n']} images each; extractor {result['extractor']})")
    if "cut_recognised" in result:
        shares = ", ".join(f"{name} {result['cut_share_' + name]:.2f}" for name in CUTS)
        lines.append(f"cuts: {result['cut_recognised']:.3f} of the samples recognised (top cut p >= {THRESHOLD}), "
                     f"{result['cut_recognised_ratio']:.2f}x the real gems' {result['cut_recognised_real']:.3f}; "
                     f"{result['cuts_found']} of {len(CUTS)} cuts found (at >= 1/3 of their data share)")
        lines.append(f"cuts among the recognised: {shares}")
        lines.append(f"cut-judge fd {result['cut_fd']:.4f}  (the cut judge's 128-d features, ImageNet-free)")
    if "cut_agreement" in result:
        lines.append(f"cut agreement {result['cut_agreement']:.3f} (recognised as the requested cut), colour spread "
                     f"{result['colour_spread']:.3f} (1: every cut in every colour the data give it)")
    if "class_agreement" in result:
        lines.append(f"class agreement {result['class_agreement']:.3f}  (the classifier names the requested class)")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m paddle_gan_kit.evaluate",
        description="FID/KID (and class coverage) of a run's generator against real images; prints the result "
                    "as JSON and saves it in RUN/eval/.",
        epilog="Example: python -m paddle_gan_kit.evaluate runs/dcgan_mnist_32 --metrics fid,kid,coverage",
    )
    parser.add_run_arguments()
    parser.add_argument("--metrics", default=None,
                        help="comma list of fid, kid, coverage, pr (precision and recall), cuts (the cut judge, "
                             "built-in gems only) (default fid,kid, plus coverage with the classifier and cuts on "
                             "the built-in gems)")
    parser.add_argument("--n", type=int, default=DEFAULT_N,
                        help=f"generated images, and at most this many real ones (default {DEFAULT_N})")
    parser.add_argument("--real", metavar="PATH", help="real images: folder, zip/tar, prepared dir, .npy or "
                                                       "builtin:NAME (default: the run's training data)")
    parser.add_argument("--extractor", default="auto", metavar="|".join(EXTRACTOR_CHOICES),
                        help="feature space: auto (classifier for labelled grayscale data, else inception)")
    parser.add_argument("--weights", metavar="PATH", help=f"InceptionV3.pdparams (or set {WEIGHTS_ENV})")
    parser.add_argument("--download", action="store_true", help="download PaddleGAN's InceptionV3.pdparams once "
                                                                "into the cache when no --weights are given")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents and the real subset (default 0)")
    parser.add_conv_backend_argument()
    return parser


@cli_entry
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    fastconv.configure_from_flag(args.conv_backend)
    result = evaluate_run(args.run, metrics=args.metrics, n=args.n, real=args.real, extractor=args.extractor,
                          weights=args.weights, snapshot=args.snapshot, seed=args.seed, download=args.download)
    for line in format_result(result):
        print(line, file=sys.stderr)
    print(f"saved {result['path']}", file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
