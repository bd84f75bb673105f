"""Frechet distance between Gaussian fits of two feature sets, its bootstrap, and KID.

    FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)

tr sqrt(S1 S2) is computed without the non-symmetric matrix square root: for any factor
S2 = L L^T the nonzero eigenvalues of S1 S2 are those of the symmetric PSD L^T S1 L, so
tr sqrt(S1 S2) = sum sqrt(eigvalsh(L^T S1 L)). With S1 = Xc^T Xc / (n-1) this is also the
eigenvalues of the n x n (or r x r) Gram matrix of Y = Xc L, which is what makes hundreds
of bootstrap rounds cheap even for 2048-dimensional Inception features: L and X L are
computed once, each round only gathers rows of Y.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof=1, as torch-fidelity and pytorch-fid) in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature rows [N, D], got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def psd_factor(sigma: np.ndarray) -> np.ndarray:
    """L with L L^T = sigma (symmetrised, negative eigenvalues from round-off clipped), columns of zero variance
    dropped."""
    s = (np.asarray(sigma, dtype=np.float64) + np.asarray(sigma, dtype=np.float64).T) / 2
    w, v = np.linalg.eigh(s)
    keep = w > w.max(initial=0.0) * 1e-12
    return v[:, keep] * np.sqrt(w[keep])


def _small_matrix_threads(size: int):
    """One BLAS thread for many small eigenproblems: threads only add contention there (measured 18x slower on a
    busy 2-core box)."""
    from contextlib import nullcontext

    if size > 256:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _sum_sqrt(eig: np.ndarray) -> np.ndarray:
    """Sum of square roots of PSD eigenvalues along the last axis. Round-off leaves +-1e-16 * max where
    the exact value is 0 (rank-deficient covariances), and sqrt would blow that up to 1e-8: zero it."""
    tol = np.abs(eig).max(-1, keepdims=True) * eig.shape[-1] * np.finfo(np.float64).eps
    return np.sqrt(np.where(eig > tol, eig, 0.0)).sum(-1)


def _sum_sqrt_eigvalsh(m: np.ndarray) -> float:
    return float(_sum_sqrt(np.linalg.eigvalsh((m + m.T) / 2)))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(S1 S2) for symmetric PSD S1, S2 (real, >= 0)."""
    L = psd_factor(sigma2)
    return _sum_sqrt_eigvalsh(L.T @ np.asarray(sigma1, dtype=np.float64) @ L)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return max(float(value), 0.0)  # >= 0 in exact arithmetic; round-off can dip a hair below


@dataclass
class FrechetBootstrap:
    """FD of the samples against fixed reference statistics, and its bootstrap over the samples."""

    value: float  # FD on all samples
    rounds: np.ndarray  # FD of each bootstrap resample (with replacement, same size)
    level: float

    @property
    def stderr(self) -> float:
        """Bootstrap standard error: the sd of the resampled FDs."""
        return float(self.rounds.std(ddof=1))

    @property
    def bias_corrected(self) -> float:
        """2 FD - mean of the resampled FDs, clipped at 0: the FD less the bias that resampling shows, which the
        basic interval is built around (where that bias is large, the interval lies below the raw FD)."""
        return max(2 * self.value - float(self.rounds.mean()), 0.0)

    def interval(self) -> tuple[float, float]:
        """Basic bootstrap interval for the FD of the model's distribution, clipped to FD >= 0."""
        lo, hi = basic_interval(self.value, self.rounds, self.level)
        return max(lo, 0.0), max(hi, 0.0)


def basic_interval(value: float, rounds: np.ndarray, level: float) -> tuple[float, float]:
    """Basic (pivotal) bootstrap interval: [2 v - q_(1+level)/2, 2 v - q_(1-level)/2] of the rounds.

    Why basic and not percentile: resampling with replacement inflates FD the way drawing N
    samples inflates it over the true FD (duplicated rows, a noisier covariance), so the rounds
    sit above the estimate by about the estimate's own small-N bias. The percentile interval
    inherits that bias twice and missed the true FD in every trial; the basic interval reflects
    the rounds about the estimate, which subtracts it (examples/evidence/fid.md). It can exclude
    the printed estimate: that is the bias correction, not an error.
    """
    a = (1 - level) / 2
    q_lo, q_hi = np.quantile(np.asarray(rounds, np.float64), [a, 1 - a])
    return float(2 * value - q_hi), float(2 * value - q_lo)


def frechet_bootstrap(
    features: np.ndarray,
    ref_mu: np.ndarray,
    ref_sigma: np.ndarray,
    rounds: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> FrechetBootstrap:
    """FD(samples, reference) and `rounds` resamples of the samples; the reference is held fixed.

    The rounds answer: how much would this number move with another draw of N samples from the
    same model (the reference's own sampling error is not in them). Resamples are multinomial
    counts from numpy's PCG64 seeded by `seed`: the same seed, N and rounds resample the same
    indices, which is what pairs two results (score.fd_change).
    """
    x = np.asarray(features, dtype=np.float64)
    n, d = x.shape
    if n < 2:
        raise ValueError("need at least 2 samples")
    ref_mu = np.asarray(ref_mu, np.float64)
    L = psd_factor(ref_sigma)  # D x r
    y = x @ L  # (x - m) L = y - m L: centring commutes with L, so Y is computed once
    r = y.shape[1]
    tr_ref = float(np.trace(ref_sigma))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=rounds).astype(np.float64)  # B x n
    w = np.vstack([np.ones((1, n)), counts])  # row 0: the full sample itself

    mx, my = w @ x / n, w @ y / n  # per-round means
    sq = w @ (x * x).sum(1)
    tr_s = (sq - n * (mx * mx).sum(1)) / (n - 1)
    diff = mx - ref_mu
    if r < n:  # r x r second moments Y^T diag(w) Y of every round
        if n * r * r <= (4 << 20):  # small feature spaces (digits-cnn): one GEMM over all rounds
            yy = (y[:, :, None] * y[:, None, :]).reshape(n, r * r)
            moments = (w @ yy).reshape(len(w), r, r)
        else:
            moments = np.stack([(y * wb[:, None]).T @ y for wb in w])
        m = moments - n * my[:, :, None] * my[:, None, :]
        with _small_matrix_threads(r):
            eig = np.linalg.eigvalsh((m + m.transpose(0, 2, 1)) / (2 * (n - 1)))
        cross = _sum_sqrt(eig)
    else:  # fewer samples than dimensions: the n x n Gram matrix of the weighted, centred rows
        cross = np.empty(len(w))
        for b, wb in enumerate(w):
            yc = (y - my[b]) * np.sqrt(wb)[:, None]
            cross[b] = _sum_sqrt_eigvalsh(yc @ yc.T / (n - 1))
    fd = np.maximum((diff * diff).sum(1) + tr_s + tr_ref - 2 * cross, 0.0)
    return FrechetBootstrap(float(fd[0]), fd[1:], level)


def kernel_distance(
    features1: np.ndarray, features2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
):
    """KID (unbiased MMD^2, cubic polynomial kernel) through torch-fidelity: (mean, std) over random subsets.

    The std is the spread of one subset's KID, torch-fidelity's "±": not a standard error. The
    standard error of the mean over `subsets` subsets is std / sqrt(subsets) (score.kid_estimate).
    """
    import torch
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    with _small_matrix_threads(f1.shape[1]):
        out = kid_features_to_metric(
            torch.as_tensor(f1),
            torch.as_tensor(f2),
            kid_subsets=subsets,
            kid_subset_size=subset_size,
            rng_seed=seed,
            verbose=False,
        )
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD]
