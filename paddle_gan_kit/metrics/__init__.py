"""Sample-quality metrics: Fréchet distance (FID), KID, class coverage, and feature extractors.

Typical use::

    from paddle_gan_kit.metrics import get_extractor, compute_metrics
    extractor = get_extractor("inception", weights="InceptionV3.pdparams")
    compute_metrics(real_uint8_nhwc, fake_uint8_nhwc, extractor)

A value is only comparable with values computed with the same extractor (and weights), the same
resizer and similar sample counts (FID is biased upwards for small N); the dict that
:func:`compute_metrics` returns carries all of those next to the numbers.
"""

from .classifier import ClassifierFeatures, class_coverage
from .errors import MetricsError
from .frechet import feature_stats, frechet_distance, frechet_distance_from_stats
from .inception import InceptionFeatures
from .kid import kid
from .resize import check_images

# The one registry of feature extractors: name -> class. Keyword arguments of get_extractor go
# to the class: InceptionFeatures(weights=..., expected_sha256=..., download=...),
# ClassifierFeatures(images, labels, input_size=28, ...).
EXTRACTORS = {
    "inception": InceptionFeatures,
    "classifier": ClassifierFeatures,
}

METRICS = ("fid", "kid", "coverage")


def get_extractor(name, **kwargs):
    """Build the feature extractor registered as ``name`` in :data:`EXTRACTORS`."""
    if name not in EXTRACTORS:
        raise MetricsError(f"unknown feature extractor {name!r}; choose one of {sorted(EXTRACTORS)}")
    return EXTRACTORS[name](**kwargs)


def compute_metrics(real_images, fake_images, extractor, metrics=("fid", "kid"), kid_subsets=100,
                    kid_subset_size=1000, seed=0):
    """Compare generated with real images in an extractor's feature space.

    ``real_images``/``fake_images``: uint8 (N, H, W, C), C = 1 or 3. ``extractor``: an object
    from :func:`get_extractor`. ``metrics``: any of "fid", "kid", "coverage" (the last needs an
    extractor with ``predict``, i.e. the classifier). Returns a dict with ``fid``,
    ``kid_mean``/``kid_std``, ``coverage`` as asked, plus what each number depends on:
    ``n_real``, ``n_fake``, ``extractor``, ``feature_dim``, ``resizer`` and ``extractor_info``.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise MetricsError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if "coverage" in metrics and not hasattr(extractor, "predict"):
        raise MetricsError(f"'coverage' needs a classifier extractor; {extractor.name!r} does not predict classes")
    real_images = check_images(real_images, "real_images")
    fake_images = check_images(fake_images, "fake_images")

    resize_real = extractor.describe_resize(real_images.shape)
    resize_fake = extractor.describe_resize(fake_images.shape)
    result = {
        "n_real": int(real_images.shape[0]),
        "n_fake": int(fake_images.shape[0]),
        "extractor": extractor.name,
        "feature_dim": int(extractor.dim),
        "resizer": resize_real if resize_real == resize_fake else f"real: {resize_real}; fake: {resize_fake}",
        "extractor_info": dict(getattr(extractor, "info", {})),
    }
    if "fid" in metrics or "kid" in metrics:
        feats_real, feats_fake = extractor(real_images), extractor(fake_images)
        if "fid" in metrics:
            result["fid"] = frechet_distance(feats_real, feats_fake)
        if "kid" in metrics:
            result["kid_mean"], result["kid_std"] = kid(feats_real, feats_fake, n_subsets=kid_subsets,
                                                        subset_size=kid_subset_size, seed=seed)
            result["kid_subset_size"] = min(int(kid_subset_size), len(feats_real), len(feats_fake))
    if "coverage" in metrics:
        result["coverage"] = class_coverage(extractor.predict(fake_images), extractor.n_classes)
    return result


__all__ = [
    "EXTRACTORS", "METRICS", "ClassifierFeatures", "InceptionFeatures", "MetricsError", "class_coverage",
    "compute_metrics", "feature_stats", "frechet_distance", "frechet_distance_from_stats",
    "get_extractor", "kid",
]
