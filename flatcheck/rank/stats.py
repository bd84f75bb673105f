"""Rank correlations and their bootstrap intervals (numpy only: no torch, no scipy at run time).

    average_ranks(x)            ranks 1..N along the last axis, ties sharing their average rank
    prepare(x) -> Ranked        one side's ranks and pair signs, computed once for many pairings
    spearman(x, y)              Spearman's rho: Pearson's correlation of the average ranks
    kendall_tau_b(x, y)         Kendall's tau-b: (concordant - discordant) pairs over
                                sqrt((pairs - ties in x) (pairs - ties in y))
    bootstrap_checkpoints(...)  percentile interval over resampled checkpoints
    bootstrap_noise(...)        percentile interval over redrawn measurement noise
    permutation_p(x, y)         two-sided permutation p-value of rho (exact up to 8 checkpoints)

Every function takes arrays of shape (..., N) and works row by row, so one call scores all the
bootstrap resamples at once. A coefficient is undefined (NaN) where one side has no spread (every
value tied): no order to correlate. The tests hold these to scipy.stats.spearmanr / kendalltau.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95  # two-sided percentile intervals
# A resample where either side is tied throughout has no rank correlation: it is dropped and
# counted. Below this share of usable resamples the interval is not given (None).
MIN_USABLE = 0.5


def average_ranks(x) -> np.ndarray:
    """Ranks 1..N along the last axis; tied values share the average of the ranks they span."""
    x = np.asarray(x, dtype=float)
    # O(N^2) pairwise counts: N is a number of checkpoints (tens), and it vectorises over rows.
    less = (x[..., None, :] < x[..., :, None]).sum(-1)
    equal = (x[..., None, :] == x[..., :, None]).sum(-1)  # counts the value itself
    return less + (equal + 1) / 2.0


@dataclass
class Ranked:
    """Rows of values made ready for many rank correlations: what each coefficient needs of one
    side, computed once (a measure meets every outcome, and every bootstrap row, with the same)."""

    z: np.ndarray  # (..., N) average ranks, centred, scaled to unit norm; NaN where tied throughout
    signs: np.ndarray  # (..., N*N) int8 sign(x_j - x_i) over ordered pairs
    untied: np.ndarray  # (...,) unordered pairs not tied: N(N-1)/2 - ties


def prepare(x) -> Ranked:
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    r = average_ranks(x)
    r = r - r.mean(-1, keepdims=True)
    norm = np.sqrt((r * r).sum(-1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(norm > 0, r / np.where(norm > 0, norm, 1.0), np.nan)
    signs = np.sign(x[..., None, :] - x[..., :, None]).astype(np.int8).reshape(*x.shape[:-1], n * n)
    ties = ((signs == 0).sum(-1) - n) / 2.0  # the diagonal is not a pair
    return Ranked(z, signs, n * (n - 1) / 2.0 - ties)


def _scalar(v: np.ndarray):
    return float(v) if np.ndim(v) == 0 else v


def spearman_ranked(a: Ranked, b: Ranked) -> np.ndarray:
    """Spearman's rho: Pearson's correlation of the average ranks (NaN where a side is tied throughout)."""
    return np.clip((a.z * b.z).sum(-1), -1.0, 1.0)


def kendall_ranked(a: Ranked, b: Ranked) -> np.ndarray:
    """Kendall's tau-b: (concordant - discordant) / sqrt(untied pairs in x * untied pairs in y)."""
    s = (a.signs * b.signs).sum(-1) / 2.0  # int8 products summed in int64; each pair counted twice
    den = np.sqrt(a.untied * b.untied)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(den > 0, s / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(t, -1.0, 1.0)


def spearman(x, y) -> np.ndarray | float:
    """Spearman's rho along the last axis (NaN where x or y is tied throughout)."""
    return _scalar(spearman_ranked(prepare(x), prepare(y)))


def kendall_tau_b(x, y) -> np.ndarray | float:
    """Kendall's tau-b along the last axis (NaN where x or y is tied throughout)."""
    return _scalar(kendall_ranked(prepare(x), prepare(y)))


COEFFICIENTS = {"spearman": spearman, "kendall": kendall_tau_b}
RANKED = {"spearman": spearman_ranked, "kendall": kendall_ranked}


@dataclass
class Interval:
    """A bootstrap percentile interval; low/high None when too few resamples were usable."""

    low: float | None
    high: float | None
    rounds: int  # resamples drawn
    dropped: int  # resamples where the coefficient was undefined (a side tied throughout)
    level: float = LEVEL


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> Interval:
    """The central `level` interval of the finite values; undefined ones are dropped and counted."""
    values = np.asarray(values, dtype=float)
    ok = values[np.isfinite(values)]
    dropped = int(values.size - ok.size)
    if ok.size == 0 or ok.size < MIN_USABLE * values.size:
        return Interval(None, None, int(values.size), dropped, level)
    lo, hi = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(lo), float(hi), int(values.size), dropped, level)


def checkpoint_resamples(n: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, n) indices: n checkpoints drawn with replacement, once per round.

    One set for every pair, so that pairs are scored on the same resamples and a pair's interval
    does not depend on which other pairs were asked for."""
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def bootstrap_checkpoints(x, y, indices: np.ndarray, coefficient: str = "spearman", level: float = LEVEL) -> Interval:
    """Percentile interval of the coefficient over resampled checkpoints (the same rows of x and y).

    What it answers: how much the correlation depends on which checkpoints happened to be in the zoo.
    A resample repeats checkpoints (ties on both sides, ranked by average); one that draws a single
    checkpoint N times, or only checkpoints tied on one side, has no correlation and is dropped."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return percentile_interval(COEFFICIENTS[coefficient](x[indices], y[indices]), level)


def noise_draws(values, stderrs, rounds: int, seed: int, absolute: bool = False) -> np.ndarray:
    """(rounds, N) redraws of one quantity: value i from N(value_i, stderr_i^2); a missing stderr
    (None or 0: a deterministic number such as a converged top eigenvalue) holds that value fixed.
    absolute: the quantity is |value| of a signed estimate; draw the signed one, then fold it."""
    values = np.asarray(values, dtype=float)
    se = np.asarray([s if s is not None and np.isfinite(s) else 0.0 for s in stderrs], dtype=float)
    z = np.random.default_rng(seed).standard_normal((rounds, values.size))
    draws = values + se * z
    return np.abs(draws) if absolute else draws


def bootstrap_noise(
    x_draws: np.ndarray, y_draws: np.ndarray, coefficient: str = "spearman", level: float = LEVEL
) -> Interval:
    """Percentile interval of the coefficient over redrawn measurements (parametric bootstrap over
    measurement noise: each checkpoint's numbers redrawn from their standard errors, the zoo fixed).

    What it answers: how much the correlation depends on the probes, draws and samples each number
    was estimated from. Checkpoints' errors are drawn independently, although the shared bank and
    seeds correlate them (which tends to preserve their order): the interval is conservative there."""
    return percentile_interval(COEFFICIENTS[coefficient](x_draws, y_draws), level)


# Up to this many checkpoints every ordering is enumerated (8! = 40320); above, random orderings.
EXACT_PERMUTATIONS = 8


@functools.lru_cache(maxsize=None)
def _all_orderings(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))))


def permutation_p(x, y, rounds: int = 9999, seed: int = 0) -> tuple[float | None, str]:
    """Two-sided permutation p-value of Spearman's rho: the share of pairings of x with a reordered y
    whose |rho| is at least the observed one. (p, method): exact over all N! orderings for
    N <= EXACT_PERMUTATIONS, else (1 + hits) / (1 + rounds) over random orderings (seeded).

    What it answers: how often unrelated rankings would agree this well. At N = 3, |rho| = 1 has
    p = 1/3: a bootstrap interval of [1, 1] over three checkpoints is no evidence on its own."""
    rx, ry = average_ranks(x), average_ranks(y)
    observed = spearman(x, y)
    if not np.isfinite(observed):
        return None, "undefined"
    n = rx.size
    if n <= EXACT_PERMUTATIONS:
        perms = _all_orderings(n)
        method = f"exact (all {len(perms)} orderings)"
    else:
        perms = np.random.default_rng(seed).permuted(np.tile(np.arange(n), (rounds, 1)), axis=1)
        method = f"Monte Carlo ({rounds} random orderings)"
    # Reordering y leaves both rank vectors' means and norms alone: rho is a dot product per ordering.
    cx, cy = rx - rx.mean(), ry - ry.mean()
    r = cy[perms] @ cx / np.sqrt((cx @ cx) * (cy @ cy))
    hits = int((np.abs(r) >= abs(observed) - 1e-12).sum())
    if n <= EXACT_PERMUTATIONS:
        return hits / len(perms), method
    return (1 + hits) / (1 + rounds), method
