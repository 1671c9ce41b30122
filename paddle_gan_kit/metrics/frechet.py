"""Fréchet distance between Gaussians fitted to two feature sets (the quantity behind FID).

FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrtm(S1 S2)

The reference implementations (pytorch-fid, clean-fid) take ``scipy.linalg.sqrtm`` of the
non-symmetric product S1 S2, drop the complex round-off and retry with ``eps * I`` added to the
covariances when the result is not finite. We only need the *trace* of that square root, and
S1 S2 is similar to the symmetric PSD matrix sqrt(S1) S2 sqrt(S1) (same eigenvalues), so

    tr sqrtm(S1 S2) = sum_i sqrt(lambda_i(sqrt(S1) S2 sqrt(S1)))

which two ``numpy.linalg.eigh`` calls give in float64 without scipy and without complex
arithmetic. Singular covariances (fewer samples than dimensions) are exact in this form. The
reference's two safeguards map onto it as: the "imaginary part" is sqrt of any negative
eigenvalue (round-off when tiny, dropped; a sign the inputs are not covariances when large), and
the ``eps`` diagonal offset is the retry when that check or finiteness fails.
"""
from __future__ import annotations

import numpy as np

from .errors import MetricsError

# pytorch-fid refuses when the imaginary part of the diagonal of sqrtm exceeds 1e-3; the
# imaginary part our route would produce is sqrt(-lambda) for a negative eigenvalue lambda.
_MAX_IMAGINARY = 1e-3


def check_features(feats, name):
    """Validate a (N, D) feature matrix (N >= 2, finite) and return it as float64."""
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise MetricsError(f"{name} must be a 2-D (N, D) feature array, got shape {feats.shape}")
    if feats.shape[0] < 2:
        raise MetricsError(f"{name} has {feats.shape[0]} row(s); a covariance needs at least 2 samples")
    feats = feats.astype(np.float64)
    if not np.isfinite(feats).all():
        raise MetricsError(f"{name} contains NaN or inf (did the generator diverge?); "
                           "check the images before computing metrics")
    return feats


def feature_stats(feats):
    """Mean and covariance of features.

    ``feats``: (N, D) float array, N >= 2. Returns ``(mu, sigma)``: (D,) and (D, D) float64, the
    covariance with the unbiased 1/(N-1) normalisation as in pytorch-fid (``np.cov``).
    """
    feats = check_features(feats, "feats")
    mu = feats.mean(axis=0)
    sigma = np.cov(feats, rowvar=False)
    return mu, np.atleast_2d(sigma)


def _psd_sqrt(sigma):
    """Symmetric square root of a covariance (D, D) via eigh; round-off negatives clipped to 0."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _trace_sqrt_product(s1, s2):
    """tr sqrtm(s1 @ s2) for PSD s1, s2, and the largest imaginary part the reference would see."""
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    middle = (middle + middle.T) / 2  # symmetric in exact arithmetic; eigh reads one triangle
    eig = np.linalg.eigvalsh(middle)
    if not np.isfinite(eig).all():
        return np.nan, np.inf
    imaginary = float(np.sqrt(-eig.min())) if eig.min() < 0 else 0.0
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum()), imaginary


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), as a Python float.

    ``mu``: (D,), ``sigma``: (D, D) covariance (symmetric PSD), any float dtype; computed in
    float64. ``eps`` is the diagonal offset added to both covariances only if the first attempt
    is not finite or shows a large imaginary part, as pytorch-fid does.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise MetricsError(f"mean vectors differ in shape: {mu1.shape} vs {mu2.shape}")
    d = mu1.shape[0]
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise MetricsError(f"covariances must be ({d}, {d}) to match the means, got {s1.shape} and {s2.shape}")
    for name, arr in (("mu1", mu1), ("sigma1", s1), ("mu2", mu2), ("sigma2", s2)):
        if not np.isfinite(arr).all():
            raise MetricsError(f"{name} contains NaN or inf; recompute the statistics from finite features")
    # np.cov is symmetric only up to round-off; eigh reads one triangle, so make it exact.
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2

    tr_covmean, imaginary = _trace_sqrt_product(s1, s2)
    if not np.isfinite(tr_covmean) or imaginary > _MAX_IMAGINARY:
        offset = np.eye(d) * eps
        tr_covmean, imaginary = _trace_sqrt_product(s1 + offset, s2 + offset)
        if not np.isfinite(tr_covmean) or imaginary > _MAX_IMAGINARY:
            raise MetricsError(f"sqrt(sigma1 sigma2) has an imaginary component {imaginary:.3g} even with "
                               f"eps={eps}; sigma1/sigma2 are not covariance matrices (symmetric PSD)")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance(feats_a, feats_b, eps=1e-6):
    """Fréchet distance between Gaussians fitted to two feature sets (FID when the features are
    Inception pool3). ``feats_a``: (N, D), ``feats_b``: (M, D) float arrays. Returns a float >= ~0.
    """
    feats_a, feats_b = check_features(feats_a, "feats_a"), check_features(feats_b, "feats_b")
    if feats_a.shape[1] != feats_b.shape[1]:
        raise MetricsError(f"feature dimensions differ: {feats_a.shape[1]} vs {feats_b.shape[1]}; "
                           "extract both sets with the same extractor")
    mu1, s1 = feature_stats(feats_a)
    mu2, s2 = feature_stats(feats_b)
    return frechet_distance_from_stats(mu1, s1, mu2, s2, eps=eps)
