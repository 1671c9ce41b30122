"""Improved precision and recall (Kynkäänniemi et al. 2019): how much of the generated set lies
on the real images' manifold, and how much of the real manifold the generated set covers.

Each set's manifold is the union of balls around its samples, each ball reaching the sample's
k-th nearest neighbour in the same set (k = 3, the paper's). Precision is the fraction of
generated samples inside the real manifold; recall the fraction of real samples inside the
generated one. Computed in whatever feature space the ``Evaluator`` uses (the paper used VGG-16;
here MobileNetV2 or the classifier), so the values compare runs in one space, not with papers.
FD mixes the two failures; these separate them: a generator with few good images has high
precision and low recall, one with varied but off-manifold images the reverse.
"""
from __future__ import annotations

import numpy as np

from .frechet import check_features

K_NEAREST = 3


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (M, N) between the rows of a (M, D) and b (N, D), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0))


def manifold_radii(feats: np.ndarray, k: int = K_NEAREST) -> np.ndarray:
    """(N,) the distance from each sample to its k-th nearest other sample."""
    distances = pairwise_distances(feats, feats)
    return np.partition(distances, k, axis=1)[:, k]  # column 0 of the sorted row is the sample itself


def coverage_of(manifold: np.ndarray, radii: np.ndarray, probes: np.ndarray) -> float:
    """The fraction of ``probes`` (M, D) inside the union of balls (``manifold`` (N, D), ``radii`` (N,))."""
    return float((pairwise_distances(probes, manifold) <= radii[None, :]).any(axis=1).mean())


def precision_recall(real_feats, fake_feats, k: int = K_NEAREST, real_radii=None) -> tuple[float, float]:
    """(precision, recall) of generated features against real ones, (N, D) and (M, D), N, M > k;
    ``real_radii``: the real set's ``manifold_radii`` when already computed."""
    real_feats, fake_feats = check_features(real_feats, "real features"), check_features(fake_feats, "fake features")
    if min(len(real_feats), len(fake_feats)) <= k:
        raise ValueError(f"precision and recall need more than k = {k} samples on each side")
    real_radii = manifold_radii(real_feats, k) if real_radii is None else real_radii
    precision = coverage_of(real_feats, real_radii, fake_feats)
    recall = coverage_of(fake_feats, manifold_radii(fake_feats, k), real_feats)
    return precision, recall
