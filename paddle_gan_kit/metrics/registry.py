"""The one registry of feature extractors: name -> class, and the metric names."""
from __future__ import annotations
from .classifier import ClassifierFeatures
from .errors import MetricsError
from .inception import InceptionFeatures
from .mobilenet import MobileNetFeatures

# Keyword arguments of get_extractor go to the class: InceptionFeatures(weights=...,
# expected_sha256=..., download=...), ClassifierFeatures(images, labels, input_size=28, ...),
# MobileNetFeatures(weights=..., download=...).
EXTRACTORS = {
    "inception": InceptionFeatures,
    "classifier": ClassifierFeatures,
    "mobilenet_v2": MobileNetFeatures,
}

# pr: precision and recall (Kynkaanniemi et al. 2019); cuts: the cut judge of the built-in gems (metrics.cuts)
METRICS = ("fid", "kid", "coverage", "pr", "cuts")


def get_extractor(name, **kwargs):
    """Build the feature extractor registered as ``name`` in :data:`EXTRACTORS`."""
    if name not in EXTRACTORS:
        raise MetricsError(f"unknown feature extractor {name!r}; choose one of {sorted(EXTRACTORS)}")
    return EXTRACTORS[name](**kwargs)
