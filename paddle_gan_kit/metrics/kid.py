"""Kernel Inception Distance: unbiased MMD^2 with a cubic polynomial kernel, over random subsets.

Follows clean-fid's ``kernel_distance`` and torch-fidelity's ``kid``: k(x, y) = (x.y / d + 1)^3,
the unbiased estimator (diagonal of the within-set kernels left out), averaged over
``n_subsets`` draws of ``subset_size`` samples from each set. KID is unbiased, so unlike FID it
can be compared across sample counts, and it can be slightly negative when the sets match.
"""

import numpy as np

from .errors import MetricsError
from .frechet import check_features


def polynomial_kernel(x, y):
    """KID's kernel (x.y / d + 1)^3 for every pair of rows: (m, d) x (k, d) -> (m, k) float64."""
    k = x @ y.T
    k /= x.shape[1]
    k += 1.0
    return k * k * k  # a third of the time of ** 3, which numpy computes with pow()


def _unbiased_mmd2(x, y):
    """Unbiased MMD^2 between two equal-size samples (m, d), m >= 2."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return within - 2.0 * k_xy.sum() / (m * m)


def kid(feats_a, feats_b, n_subsets=100, subset_size=1000, seed=0):
    """Kernel Inception Distance between two feature sets; returns ``(mean, std)`` over subsets.

    ``feats_a``: (N, D), ``feats_b``: (M, D) float arrays. ``subset_size`` is clipped to
    min(N, M). Subsets are drawn without replacement with ``np.random.default_rng(seed)``, for
    each subset first the indices into ``feats_a`` then into ``feats_b``. ``std`` is the
    population standard deviation of the per-subset values (as torch-fidelity reports).
    """
    feats_a, feats_b = check_features(feats_a, "feats_a"), check_features(feats_b, "feats_b")
    if feats_a.shape[1] != feats_b.shape[1]:
        raise MetricsError(f"feature dimensions differ: {feats_a.shape[1]} vs {feats_b.shape[1]}; "
                           "extract both sets with the same extractor")
    if int(n_subsets) < 1:
        raise MetricsError(f"n_subsets must be >= 1, got {n_subsets}")
    if int(subset_size) < 2:
        raise MetricsError(f"subset_size must be >= 2 (the unbiased estimator needs pairs), got {subset_size}")
    m = min(int(subset_size), feats_a.shape[0], feats_b.shape[0])
    rng = np.random.default_rng(seed)
    values = np.empty(int(n_subsets))
    for i in range(int(n_subsets)):
        x = feats_a[rng.choice(feats_a.shape[0], m, replace=False)]
        y = feats_b[rng.choice(feats_b.shape[0], m, replace=False)]
        values[i] = _unbiased_mmd2(x, y)
    return float(values.mean()), float(values.std())
