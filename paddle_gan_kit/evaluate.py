"""``python -m paddle_gan_kit.evaluate RUN``: FID, KID and class coverage of a trained generator.

    python -m paddle_gan_kit.evaluate runs/dcgan_mnist_32 --metrics fid,kid,coverage --n 10000
    python -m paddle_gan_kit.evaluate runs/dcgan_64 --weights InceptionV3.pdparams --snapshot best

The real images default to the run's own training data; ``--real`` points elsewhere. Every
result names what its numbers depend on (real and generated counts, feature extractor, resizer)
and is saved as ``RUN/eval/step_XXXXXXXX.<extractor>.n<N>.json``: one file per snapshot step,
extractor and sample count, so only a re-evaluation of exactly those replaces a file (and says
so). :class:`Evaluator` is the same computation for the training loop: real statistics once,
then one call per evaluation with the same private noise every time.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys

import paddle_gan_kit  # noqa: F401  (sets CPU threads before Paddle loads)
import numpy as np
import paddle

from paddle_gan_kit import snapshot as snapshots
from paddle_gan_kit.errors import ArgumentParser, GanKitError, cli_entry
from paddle_gan_kit.latent import generate_images
from paddle_gan_kit.metrics import METRICS, class_coverage, feature_stats, frechet_distance_from_stats, get_extractor, kid
from paddle_gan_kit.metrics.inception import WEIGHTS_ENV
from paddle_gan_kit.metrics.kid import polynomial_kernel

EXTRACTOR_CHOICES = ("auto", "inception", "classifier")
# KID over 100 subsets of at most 1000 images each, as clean-fid and torch-fidelity report it.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
DEFAULT_N = 10000  # "FID-10k": FID is biased upwards for small n, so compare equal n only
# Up to this many images per set, KID works on kernel matrices computed once (the real-real one
# once per Evaluator): 5000^2 float64 is 200 MB. Larger sets go through metrics.kid subset by subset.
_KERNEL_CACHE_MAX = 5000


def choose_extractor(extractor: str, images: np.ndarray, labels) -> str:
    """``auto`` -> "classifier" for labelled grayscale images (digits), else "inception"."""
    if extractor not in EXTRACTOR_CHOICES:
        raise GanKitError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTOR_CHOICES)}")
    if extractor == "auto":
        return "classifier" if labels is not None and images.shape[-1] == 1 else "inception"
    if extractor == "classifier" and labels is None:
        raise GanKitError("the classifier extractor trains on labelled real images and these have no labels; "
                          "use --extractor inception, or real data with classes (builtin:mnist, class folders)")
    return extractor


def parse_metrics(metrics) -> tuple[str, ...]:
    """"fid,kid" or ("fid", "kid") -> a checked tuple of metric names."""
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
    names = [m for m in names if m]
    unknown = [m for m in names if m not in METRICS]
    if not names or unknown:
        raise GanKitError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                          f"choose from {','.join(METRICS)} (e.g. --metrics fid,kid)")
    return tuple(dict.fromkeys(names))


@contextlib.contextmanager
def global_rngs_untouched():
    """Restore Paddle's, numpy's and python's global RNG states after the block.

    Building an extractor initialises layers from Paddle's global RNG before the weights are
    loaded; a training run that evaluates must draw exactly what it would have drawn without.
    """
    states = snapshots.rng_states()
    try:
        yield
    finally:
        snapshots.set_rng_states(states)


def _match_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> (N, H, W, channels): gray repeated to RGB, RGB to BT.601 luma."""
    if images.shape[-1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(luma + 0.5, 0, 255).astype(np.uint8)[..., None]


def kid_from_kernels(k_aa, k_bb, k_ab, n_subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=0):
    """:func:`paddle_gan_kit.metrics.kid` from precomputed kernel matrices: the same subsets (same
    ``default_rng(seed)`` draws), the same unbiased MMD^2, ``(mean, std)``.

    Each subset gathers its blocks from the matrices instead of computing three kernel matrices
    (on 2 cores: 100 subsets of 1000 from 5000 images in ~8 s instead of ~30 s). When both sets are no larger than
    ``subset_size`` every subset is the whole set, the estimate does not depend on the order, and
    it is computed once (std 0).
    """
    na, nb = k_ab.shape
    m = min(int(subset_size), na, nb)
    diag_a, diag_b = np.diag(k_aa), np.diag(k_bb)
    if m == na == nb:
        within = (k_aa.sum() - diag_a.sum() + k_bb.sum() - diag_b.sum()) / (m * (m - 1))
        return float(within - 2.0 * k_ab.sum() / (m * m)), 0.0
    rng = np.random.default_rng(seed)
    values = np.empty(int(n_subsets))
    for i in range(int(n_subsets)):
        # sums do not depend on the order; sorted indices make the gathers sequential reads
        ia = np.sort(rng.choice(na, m, replace=False))
        ib = np.sort(rng.choice(nb, m, replace=False))
        s_aa = k_aa.take(ia, 0).take(ia, 1).sum() - diag_a[ia].sum()
        s_bb = k_bb.take(ib, 0).take(ib, 1).sum() - diag_b[ib].sum()
        values[i] = (s_aa + s_bb) / (m * (m - 1)) - 2.0 * k_ab.take(ia, 0).take(ib, 1).sum() / (m * m)
    return float(values.mean()), float(values.std())


class Evaluator:
    """Scores a generator against a fixed set of real images; lower ``primary`` is better.

    ``real_images``: uint8 (N, H, W, C), C = 1 or 3; ``labels``: (N,) ints or None.
    ``extractor``: "auto" (the classifier for labelled grayscale images, else Inception),
    "inception" (needs ``weights``, env PADDLE_GAN_KIT_INCEPTION_WEIGHTS or ``download=True``)
    or "classifier" (trained once on all labelled real images, then cached). Real features come
    from a subset of min(n, N) images drawn with ``seed``; each call generates ``n`` images from
    latents drawn with a private ``np.random.default_rng(seed)`` (the same every call) in batches
    of ``batch_size``. ``metrics``: any of "fid", "kid", "coverage" (default: fid and kid, plus
    coverage with the classifier). No global RNG state is consumed or changed.
    """

    primary = "fid"

    def __init__(self, real_images: np.ndarray, labels: np.ndarray | None = None, extractor: str = "auto",
                 n: int = 1000, weights: str | None = None, seed: int = 0, batch_size: int = 64, *,
                 metrics=None, download: bool = False):
        real_images = np.asarray(real_images)
        if real_images.dtype != np.uint8 or real_images.ndim != 4 or real_images.shape[-1] not in (1, 3):
            raise GanKitError(f"real images must be uint8 (N, H, W, C) with C = 1 or 3, got {real_images.dtype} "
                              f"{real_images.shape}")
        if int(n) < 2:
            raise GanKitError(f"n must be >= 2 (a covariance needs two samples), got {n}")
        if real_images.shape[0] < 2:
            raise GanKitError(f"need at least 2 real images, got {real_images.shape[0]}")
        if int(batch_size) < 1:
            raise GanKitError(f"batch_size must be >= 1, got {batch_size}")
        self.extractor_name = choose_extractor(extractor, real_images, labels)
        if metrics is None:
            metrics = ("fid", "kid", "coverage") if self.extractor_name == "classifier" else ("fid", "kid")
        self.metrics = parse_metrics(metrics)
        if "coverage" in self.metrics and self.extractor_name != "classifier":
            raise GanKitError("--metrics coverage needs the classifier extractor (labelled grayscale real data); "
                              "drop coverage or pass --extractor classifier")
        self.n, self.seed, self.batch_size = int(n), int(seed), int(batch_size)
        self.channels = int(real_images.shape[-1])

        with global_rngs_untouched():
            if self.extractor_name == "classifier":
                size = real_images.shape[1]
                # native size when the small CNN takes it (28, 32), else digits shrunk to 32
                input_size = size if size % 4 == 0 and size <= 32 and size == real_images.shape[2] else 32
                self.extractor = get_extractor("classifier", images=real_images, labels=np.asarray(labels),
                                               input_size=input_size)
            else:
                self.extractor = get_extractor("inception", weights=weights, download=download)
            n_real = min(self.n, real_images.shape[0])
            subset = np.sort(np.random.default_rng([self.seed, 1]).permutation(real_images.shape[0])[:n_real])
            real = np.asarray(real_images[subset])
            self._real_shape = real.shape
            self._real_feats = self.extractor(real)
            self._real_stats = feature_stats(self._real_feats)
            self._real_kernel = (polynomial_kernel(self._real_feats, self._real_feats)
                                 if "kid" in self.metrics and n_real <= _KERNEL_CACHE_MAX else None)
        self.n_real = int(n_real)

    def describe(self) -> str:
        """One line: extractor (and what fixes it), resizer, n_real, n_fake."""
        info = getattr(self.extractor, "info", {})
        if self.extractor_name == "classifier":
            detail = (f"{info.get('input_size')}px CNN, held-out accuracy {info.get('holdout_accuracy', float('nan')):.3f}"
                      f" on {info.get('n_holdout')} images")
        else:
            detail = f"weights sha256 {str(info.get('weights_sha256'))[:12]}"
        return (f"extractor {self.extractor_name} ({detail}); resizer {self.extractor.describe_resize(self._real_shape)}; "
                f"n_real {self.n_real}, n_fake {self.n}")

    def latents(self, z_dim: int, z_dist: str) -> np.ndarray:
        """The evaluation latents (n, z_dim) float32: the same for every call with the same prior."""
        rng = np.random.default_rng(self.seed)
        if z_dist == "uniform":
            return rng.uniform(-1.0, 1.0, size=(self.n, int(z_dim))).astype(np.float32)
        if z_dist == "normal":
            return rng.standard_normal((self.n, int(z_dim))).astype(np.float32)
        raise GanKitError(f"unknown z_dist {z_dist!r}; use normal or uniform")

    def generate(self, generator, z_dim: int, z_dist: str) -> np.ndarray:
        """n images uint8 (n, H, W, C) from ``generator`` in eval mode; its mode is restored."""
        images = generate_images(generator, self.latents(z_dim, z_dist), self.batch_size)
        return _match_channels(images, self.channels)

    def _kid(self, feats):
        if self._real_kernel is not None and len(feats) <= _KERNEL_CACHE_MAX:
            return kid_from_kernels(self._real_kernel, polynomial_kernel(feats, feats),
                                    polynomial_kernel(self._real_feats, feats), seed=self.seed)
        return kid(self._real_feats, feats, n_subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=self.seed)

    def __call__(self, generator, z_dim: int, z_dist: str) -> dict:
        """Score ``generator``: fid, kid_mean, kid_std, coverage_classes, coverage_evenness as
        asked, plus n_real, n_fake, extractor and resizer."""
        with global_rngs_untouched():
            fake = self.generate(generator, z_dim, z_dist)
            result = {}
            if "fid" in self.metrics or "kid" in self.metrics:
                feats = self.extractor(fake)
                if "fid" in self.metrics:
                    result["fid"] = float(frechet_distance_from_stats(*self._real_stats, *feature_stats(feats)))
                if "kid" in self.metrics:
                    result["kid_mean"], result["kid_std"] = self._kid(feats)
            if "coverage" in self.metrics:
                coverage = class_coverage(self.extractor.predict(fake), self.extractor.n_classes)
                result["coverage_classes"] = float(coverage["classes_present"])
                result["coverage_evenness"] = float(coverage["evenness"]) + 0.0  # no -0.0
        resize_real = self.extractor.describe_resize(self._real_shape)
        resize_fake = self.extractor.describe_resize(fake.shape)
        result.update(
            n_real=self.n_real, n_fake=int(fake.shape[0]), extractor=self.extractor_name,
            resizer=resize_real if resize_real == resize_fake else f"real: {resize_real}; fake: {resize_fake}",
        )
        return result


# ---- evaluating a saved run ------------------------------------------------------------------

def _run_dir_of(path: str) -> str:
    """The run directory of a run path or of one of its snapshot files."""
    if os.path.isdir(path):
        return path
    parent = os.path.dirname(os.path.abspath(path))
    return os.path.dirname(parent) if os.path.basename(parent) == "snapshots" else parent


def load_real(real: str | None, cfg, run_dir: str):
    """Real images for a run: ``real`` (folder, archive, prepared dir, .npy, builtin:NAME) or the
    run's own training data. Returns ``ImageData`` (uint8 (N, H, W, C), description, labels)."""
    from paddle_gan_kit.data import BUILTIN_PREFIX, ImageData, load_images

    source = real if real is not None else cfg.data
    if real is None and source is not None and not source.startswith(BUILTIN_PREFIX) \
            and not os.path.exists(os.path.expanduser(source)):
        raise GanKitError(f"the run was trained on --data {source}, which is not found from here; "
                          "pass the real images with --real PATH")
    if source is not None and source.endswith(".npy") and os.path.isfile(os.path.expanduser(source)):
        # any resolution: the extractor resizes real and generated images alike
        images = np.load(os.path.expanduser(source), mmap_mode="r")
        if images.ndim == 3:
            images = images[..., None]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise GanKitError(f"{source} holds a {images.dtype} array of shape {images.shape}; "
                              "expected uint8 (N, H, W, C) with C = 1 or 3")
        return ImageData(images, f"{source} ({len(images)} images)")
    prepare_root = os.path.join(os.path.dirname(os.path.abspath(run_dir)), ".prepared")  # the trainer's
    return load_images(source, cfg.size, fit=cfg.fit, gems_count=cfg.gems_count, prepare_root=prepare_root,
                       progress=False)


def result_path(run_dir: str, step: int, extractor: str, n: int) -> str:
    """Where the result for (snapshot step, extractor, n) is saved."""
    return os.path.join(run_dir, "eval", f"step_{step:08d}.{extractor}.n{n}.json")


def evaluate_run(run: str, metrics=("fid", "kid"), n: int = DEFAULT_N, real: str | None = None,
                 extractor: str = "auto", weights: str | None = None, snapshot=None, seed: int = 0, *,
                 download: bool = False, save: bool = True, log=None) -> dict:
    """Evaluate one snapshot of a run (default: the newest; a step number or "best").

    Returns the result dict (metric values next to n_real, n_fake, extractor, resizer, the
    snapshot, the real data) and, with ``save``, writes it to :func:`result_path` (its path is
    under the key ``"path"``). ``log``: a function given one-line notes (default: stderr).
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    metrics = parse_metrics(metrics)
    if int(n) < 2:
        raise GanKitError(f"--n must be >= 2 (a covariance needs two samples), got {n}")
    run_dir = _run_dir_of(run)
    snap_path = snapshots.resolve_snapshot_path(run, None if snapshot is None else str(snapshot))
    payload = snapshots.read_snapshot(snap_path)
    step = int(payload["step"])
    generator, cfg = snapshots.load_generator(snap_path)
    data = load_real(real, cfg, run_dir)
    evaluator = Evaluator(data.images, data.labels, extractor=extractor, n=n, weights=weights, seed=seed,
                          batch_size=64, metrics=metrics, download=download)
    log(f"evaluating {os.path.basename(snap_path)} (step {step}) against {data.description}: {evaluator.describe()}")
    scores = evaluator(generator, cfg.z_dim, cfg.z_dist)

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
        with open(path + ".part", "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        os.replace(path + ".part", path)
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
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m paddle_gan_kit.evaluate",
        description="FID/KID (and class coverage) of a run's generator against real images; prints the result "
                    "as JSON and saves it in RUN/eval/.",
        epilog="Example: python -m paddle_gan_kit.evaluate runs/dcgan_mnist_32 --metrics fid,kid,coverage",
    )
    parser.add_run_arguments()
    parser.add_argument("--metrics", default="fid,kid", help="comma list of fid, kid, coverage (default fid,kid; "
                                                             "coverage needs the classifier)")
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
    return parser


@cli_entry
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    result = evaluate_run(args.run, metrics=args.metrics, n=args.n, real=args.real, extractor=args.extractor,
                          weights=args.weights, snapshot=args.snapshot, seed=args.seed, download=args.download)
    for line in format_result(result):
        print(line, file=sys.stderr)
    print(f"saved {result['path']}", file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
