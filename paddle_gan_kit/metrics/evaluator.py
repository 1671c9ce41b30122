"""The ``Evaluator``: scores generators against one fixed set of real images, the same way
every time. The ``evaluate`` CLI and the training loop both use it.

Real features (and the real KID kernel) are computed once; every call generates ``n`` images
from the same private latents, so the numbers of different snapshots and steps are comparable.
"""
from __future__ import annotations

import numpy as np

from paddle_gan_kit.images import match_channels
from paddle_gan_kit.latent import draw_latents, generate_images
from paddle_gan_kit.rng import global_rngs_untouched
from .classifier import class_coverage
from . import cuts
from .errors import MetricsError
from .frechet import feature_stats, frechet_distance_from_stats
from .kid import FULL_KERNEL_MAX, kid, polynomial_kernel
from .precision_recall import manifold_radii, precision_recall
from .registry import METRICS, get_extractor

EXTRACTOR_CHOICES = ("auto", "inception", "classifier", "mobilenet_v2")
# KID over 100 subsets of at most 1000 images each, as clean-fid and torch-fidelity report it.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def choose_extractor(extractor: str, images: np.ndarray, labels) -> str:
    """``auto`` -> "classifier" for labelled grayscale images (digits), else "inception"."""
    if extractor not in EXTRACTOR_CHOICES:
        raise MetricsError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTOR_CHOICES)}")
    if extractor == "auto":
        return "classifier" if labels is not None and images.shape[-1] == 1 else "inception"
    if extractor == "classifier" and labels is None:
        raise MetricsError("the classifier extractor trains on labelled real images and these have no labels; "
                           "use --extractor inception, or real data with classes (builtin:mnist, class folders)")
    return extractor


def default_metrics(extractor: str, gems: bool) -> tuple[str, ...]:
    """fid and kid; coverage with the classifier; the cut judge's numbers on the built-in gems."""
    return ("fid", "kid") + (("coverage",) if extractor == "classifier" else ()) + (("cuts",) if gems else ())


def parse_metrics(metrics) -> tuple[str, ...]:
    """"fid,kid" or ("fid", "kid") -> a checked tuple of metric names."""
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
    names = [m for m in names if m]
    unknown = [m for m in names if m not in METRICS]
    if not names or unknown:
        raise MetricsError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                           f"choose from {','.join(METRICS)} (e.g. --metrics fid,kid)")
    return tuple(dict.fromkeys(names))


class Evaluator:
    """Scores a generator against a fixed set of real images; lower ``primary`` is better.

    ``real_images``: uint8 (N, H, W, C), C = 1 or 3; ``labels``: (N,) ints or None.
    ``extractor``: "auto" (the classifier for labelled grayscale images, else Inception),
    "inception" (needs ``weights``, env PADDLE_GAN_KIT_INCEPTION_WEIGHTS or ``download=True``),
    "classifier" (trained once on all labelled real images, then cached), "mobilenet_v2"
    (ImageNet features, offline; not comparable to published FID), or an extractor
    object already built (``metrics.get_extractor``). Real features come from a subset of
    min(n, N) images drawn with ``seed``; each call generates ``n`` images from latents drawn
    with a private ``np.random.default_rng(seed)`` (the same every call) in batches of
    ``batch_size``. ``metrics``: any of "fid", "kid", "coverage", "pr" (precision and recall),
    "cuts" (the cut judge's numbers and its FD, for the built-in gems: ``labels`` are their cuts;
    see ``metrics.cuts``); default: fid and kid, plus coverage with the classifier and, when
    ``gems`` says the real images are the built-in gems, cuts. No global RNG state is consumed or
    changed.
    """

    primary = "fid"

    def __init__(self, real_images: np.ndarray, labels: np.ndarray | None = None, extractor="auto",
                 n: int = 1000, weights: str | None = None, seed: int = 0, batch_size: int = 64, *,
                 metrics=None, download: bool = False, gems: bool = False):
        real_images = np.asarray(real_images)
        if real_images.dtype != np.uint8 or real_images.ndim != 4 or real_images.shape[-1] not in (1, 3):
            raise MetricsError(f"real images must be uint8 (N, H, W, C) with C = 1 or 3, got {real_images.dtype} "
                               f"{real_images.shape}")
        if int(n) < 2:
            raise MetricsError(f"n must be >= 2 (a covariance needs two samples), got {n}")
        if real_images.shape[0] < 2:
            raise MetricsError(f"need at least 2 real images, got {real_images.shape[0]}")
        if int(batch_size) < 1:
            raise MetricsError(f"batch_size must be >= 1, got {batch_size}")
        built = None if isinstance(extractor, str) else extractor
        self.extractor_name = built.name if built is not None else choose_extractor(extractor, real_images, labels)
        if metrics is None:
            metrics = default_metrics(self.extractor_name, gems)
        self.metrics = parse_metrics(metrics)
        if "coverage" in self.metrics and self.extractor_name != "classifier":
            raise MetricsError("--metrics coverage needs the classifier extractor (labelled grayscale real data); "
                               "drop coverage or pass --extractor classifier")
        if "cuts" in self.metrics and (labels is None or real_images.shape[-1] != 3
                                       or int(np.max(labels)) >= len(cuts.CUTS)):
            raise MetricsError("--metrics cuts judges the built-in gems' cuts and needs them as the real images "
                               "(colour, labelled by cut); drop cuts for other data")
        self.n, self.seed, self.batch_size = int(n), int(seed), int(batch_size)
        self.channels = int(real_images.shape[-1])

        with global_rngs_untouched():
            if built is not None:
                self.extractor = built
            elif self.extractor_name == "classifier":
                size = real_images.shape[1]
                # native size when the small CNN takes it (28, 32), else digits shrunk to 32
                input_size = size if size % 4 == 0 and size <= 32 and size == real_images.shape[2] else 32
                self.extractor = get_extractor("classifier", images=real_images, labels=np.asarray(labels),
                                               input_size=input_size)
            else:
                self.extractor = get_extractor(self.extractor_name, weights=weights, download=download)
            n_real = min(self.n, real_images.shape[0])
            subset = np.sort(np.random.default_rng([self.seed, 1]).permutation(real_images.shape[0])[:n_real])
            real = np.asarray(real_images[subset])
            self._real_labels = None if labels is None else np.asarray(labels)[subset].astype(np.int64)
            self._real_shape = real.shape
            self._real_feats = self.extractor(real)
            self._real_stats = feature_stats(self._real_feats)
            self._real_kernel = (polynomial_kernel(self._real_feats, self._real_feats)
                                 if "kid" in self.metrics and n_real <= FULL_KERNEL_MAX else None)
            self._real_radii = manifold_radii(self._real_feats) if "pr" in self.metrics else None
            self.judge = cuts.CutJudge() if "cuts" in self.metrics else None
            self._real_cuts = cuts.RealCuts(self.judge, real, self._real_labels) if self.judge else None
        self.n_real = int(n_real)

    def _per_class(self, feats: np.ndarray, fake_labels: np.ndarray, fake: np.ndarray) -> dict:
        """intra_fid (and class_agreement with the classifier) of features of images generated as
        ``fake_labels``; classes with fewer than 2 images on either side are left out."""
        distances = []
        for c in np.unique(fake_labels):
            real_c, fake_c = self._real_feats[self._real_labels == c], feats[fake_labels == c]
            if len(real_c) >= 2 and len(fake_c) >= 2:
                distances.append(frechet_distance_from_stats(*feature_stats(real_c), *feature_stats(fake_c)))
        out = {"intra_fid": float(np.mean(distances)), "intra_classes": len(distances),
               "intra_n": int(round(len(fake_labels) / max(len(distances), 1)))}
        if self.extractor_name == "classifier":
            out["class_agreement"] = float(np.mean(self.extractor.predict(fake) == fake_labels))
        return out

    def describe(self) -> str:
        """One line: extractor (and what fixes it), resizer, n_real, n_fake."""
        info = getattr(self.extractor, "info", {})
        if self.extractor_name == "classifier":
            detail = (f"{info.get('input_size')}px CNN, held-out accuracy {info.get('holdout_accuracy', float('nan')):.3f}"
                      f" on {info.get('n_holdout')} images")
        else:
            detail = f"weights sha256 {str(info.get('weights_sha256'))[:12]}"
            if "note" in info:
                detail += f"; {info['note']}"
        return (f"extractor {self.extractor_name} ({detail}); resizer {self.extractor.describe_resize(self._real_shape)}; "
                f"n_real {self.n_real}, n_fake {self.n}")

    def latents(self, z_dim: int, z_dist: str) -> np.ndarray:
        """The evaluation latents (n, z_dim) float32: the same for every call with the same prior."""
        return draw_latents(np.random.default_rng(self.seed), self.n, z_dim, z_dist)

    def fake_labels(self) -> np.ndarray:
        """The classes a conditional generator is asked for: the real subset's labels, repeated
        to n, so the generated set has the real set's class frequencies."""
        if self._real_labels is None:
            raise MetricsError("a conditional generator is scored against labelled real images, and these have no "
                               "labels; use the run's own (labelled) data with --real")
        return np.resize(self._real_labels, self.n)

    def generate(self, generator, z_dim: int, z_dist: str, conditional: bool = False) -> np.ndarray:
        """n images uint8 (n, H, W, C) from ``generator`` in eval mode (of ``fake_labels`` when
        ``conditional``); its mode is restored."""
        labels = self.fake_labels() if conditional else None
        images = generate_images(generator, self.latents(z_dim, z_dist), self.batch_size, labels)
        return match_channels(images, self.channels)

    def __call__(self, generator, z_dim: int, z_dist: str, conditional: bool = False) -> dict:
        """Score ``generator`` (see :meth:`score`); a ``conditional`` one per class as well."""
        with global_rngs_untouched():
            fake = self.generate(generator, z_dim, z_dist, conditional)
            return self.score(fake, self.fake_labels() if conditional else None)

    def score(self, fake: np.ndarray, fake_labels=None) -> dict:
        """Score generated images uint8 (M, H, W, C): fid, kid_mean, kid_std, coverage_classes,
        coverage_evenness, precision, recall as asked, plus n_real, n_fake, extractor and resizer.
        With "cuts": the ``metrics.cuts`` numbers (cut_recognised, cuts_found, cut_share_<cut>,
        cut_fd, and for ``fake_labels`` cut_agreement and colour_spread).
        With ``fake_labels`` (the classes they were generated as): also intra_fid, the Fréchet
        distance within each class averaged over the classes (as the cGAN literature reports it;
        intra_n: the generated images per class), and with the classifier class_agreement, the
        share of images it names as their requested class."""
        fake = match_channels(np.asarray(fake), self.channels)
        result = {}
        if {"fid", "kid", "pr"} & set(self.metrics) or fake_labels is not None:
            feats = self.extractor(fake)
            if "fid" in self.metrics:
                result["fid"] = float(frechet_distance_from_stats(*self._real_stats, *feature_stats(feats)))
            if "kid" in self.metrics:
                result["kid_mean"], result["kid_std"] = kid(self._real_feats, feats, KID_SUBSETS, KID_SUBSET_SIZE,
                                                            seed=self.seed, kernel_aa=self._real_kernel)
            if "pr" in self.metrics:
                result["precision"], result["recall"] = precision_recall(self._real_feats, feats,
                                                                         real_radii=self._real_radii)
        if fake_labels is not None:
            result.update(self._per_class(feats, np.asarray(fake_labels), fake))
        if "cuts" in self.metrics:
            result.update(cuts.cut_scores(self.judge, self._real_cuts, fake, fake_labels))
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
