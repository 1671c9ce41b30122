"""Kernel Inception Distance: unbiased MMD^2 with a cubic polynomial kernel, over random subsets.

Follows clean-fid's ``kernel_distance`` and torch-fidelity's ``kid``: k(x, y) = (x.y / d + 1)^3,
the unbiased estimator (diagonal of the within-set kernels left out), averaged over
``n_subsets`` draws of ``subset_size`` samples from each set. KID is unbiased, so unlike FID it
can be compared across sample counts, and it can be slightly negative when the sets match.
"""
from __future__ import annotations

import numpy as np

from .errors import MetricsError
from .frechet import check_features

# Up to this many features per set, the kernel matrices are computed once and every subset
# gathers its blocks from them (5000^2 float64 is 200 MB); larger sets are done subset by subset.
FULL_KERNEL_MAX = 5000


def polynomial_kernel(x, y):
    """KID's kernel (x.y / d + 1)^3 for every pair of rows: (m, d) x (k, d) -> (m, k) float64."""
    k = x @ y.T
    k /= x.shape[1]
    k += 1.0
    return k * k * k  # a third of the time of ** 3, which numpy computes with pow()


def _unbiased_mmd2(k_aa, k_bb, k_ab):
    """Unbiased MMD^2 from the kernel blocks of two equal-size samples (m >= 2)."""
    m = k_ab.shape[0]
    within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return within - 2.0 * k_ab.sum() / (m * m)


def kid(feats_a, feats_b, n_subsets=100, subset_size=1000, seed=0, kernel_aa=None):
    """Kernel Inception Distance between two feature sets; returns ``(mean, std)`` over subsets.

    ``feats_a``: (N, D), ``feats_b``: (M, D) float arrays. ``subset_size`` is clipped to
    min(N, M). Subsets are drawn without replacement with ``np.random.default_rng(seed)``, for
    each subset first the indices into ``feats_a`` then into ``feats_b``. ``std`` is the
    population standard deviation of the per-subset values (as torch-fidelity reports). When
    both sets are no larger than ``subset_size`` every subset is the whole set, the estimate
    does not depend on the order, and it is computed once (std 0). ``kernel_aa``: the (N, N)
    kernel of ``feats_a`` when the caller keeps it (the Evaluator computes it once per real set).
    """
    feats_a, feats_b = check_features(feats_a, "feats_a"), check_features(feats_b, "feats_b")
    if feats_a.shape[1] != feats_b.shape[1]:
        raise MetricsError(f"feature dimensions differ: {feats_a.shape[1]} vs {feats_b.shape[1]}; "
                           "extract both sets with the same extractor")
    if int(n_subsets) < 1:
        raise MetricsError(f"n_subsets must be >= 1, got {n_subsets}")
    if int(subset_size) < 2:
        raise MetricsError(f"subset_size must be >= 2 (the unbiased estimator needs pairs), got {subset_size}")
    na, nb = feats_a.shape[0], feats_b.shape[0]
    m = min(int(subset_size), na, nb)
    if max(na, nb) <= FULL_KERNEL_MAX or kernel_aa is not None:
        k_aa = polynomial_kernel(feats_a, feats_a) if kernel_aa is None else kernel_aa
        k_bb, k_ab = polynomial_kernel(feats_b, feats_b), polynomial_kernel(feats_a, feats_b)

        def blocks(ia, ib):
            return k_aa.take(ia, 0).take(ia, 1), k_bb.take(ib, 0).take(ib, 1), k_ab.take(ia, 0).take(ib, 1)
    else:
        def blocks(ia, ib):
            a, b = feats_a[ia], feats_b[ib]
            return polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)

    everything = np.arange(m)
    if m == na == nb:
        return float(_unbiased_mmd2(*blocks(everything, everything))), 0.0
    rng = np.random.default_rng(seed)
    values = np.empty(int(n_subsets))
    for i in range(int(n_subsets)):
        # sums do not depend on the order; sorted indices make the gathers sequential reads
        ia = np.sort(rng.choice(na, m, replace=False))
        ib = np.sort(rng.choice(nb, m, replace=False))
        values[i] = _unbiased_mmd2(*blocks(ia, ib))
    return float(values.mean()), float(values.std())
