"""Sample-quality metrics for generated images: FID, KID and class coverage.

Three pieces, usable apart:

- feature extractors that map uint8 images (N, H, W, C) to feature vectors: the FID variant of
  InceptionV3 (weights loaded from a local file and checked by sha256), ImageNet MobileNetV2
  (an offline colour feature space), and a small classifier trained on the real labelled data
  for digit-like datasets (``EXTRACTORS``, ``get_extractor``);
- the statistics on features: Fréchet distance, KID, class coverage;
- the :class:`Evaluator`, which scores generators against one fixed real set the same way every
  time (the ``evaluate`` CLI and evaluation during training use it)::

    from paddle_gan_kit.metrics import Evaluator
    evaluator = Evaluator(real_uint8_nhwc, labels, extractor="auto", n=1000)
    evaluator(generator, z_dim=100, z_dist="normal")   # {'fid': ..., 'kid_mean': ..., 'n_real': ...}
    evaluator.score(fake_uint8_nhwc)                   # the same for images already generated

A value is only comparable with values computed with the same extractor (and weights), the same
resizer and similar sample counts (FID is biased upwards for small N); every result carries
those next to the numbers.
"""

from .classifier import ClassifierFeatures, class_coverage
from .errors import MetricsError
from .evaluator import Evaluator, choose_extractor, parse_metrics
from .frechet import feature_stats, frechet_distance, frechet_distance_from_stats
from .inception import InceptionFeatures
from .kid import kid, polynomial_kernel
from .mobilenet import MobileNetFeatures
from .registry import EXTRACTORS, METRICS, get_extractor

__all__ = [
    "EXTRACTORS", "METRICS", "ClassifierFeatures", "Evaluator", "InceptionFeatures", "MetricsError", "MobileNetFeatures",
    "choose_extractor", "class_coverage", "feature_stats", "frechet_distance", "frechet_distance_from_stats",
    "get_extractor", "kid", "parse_metrics", "polynomial_kernel",
]
