"""Numbers with their uncertainty, as every report shows them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Estimate:
    """A measured value with its uncertainty: a standard error, an interval, or both.

    n is the number of draws behind it (probes, perturbations, samples, bootstrap rounds).
    """

    value: float
    stderr: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None

    def __str__(self) -> str:
        if self.stderr is not None:
            return f"{self.value:.4g} ± {self.stderr:.2g}"
        if self.ci_low is not None and self.ci_high is not None:
            return f"{self.value:.4g} [{self.ci_low:.4g}, {self.ci_high:.4g}]"
        return f"{self.value:.4g}"


@dataclass
class BootstrapEstimate(Estimate):
    """An Estimate whose [ci_low, ci_high] is a basic bootstrap interval, with the value that interval is
    built around: the bias-corrected estimate 2 value - mean(resampled values). Where resampling shifts the
    statistic (FD at small N sits above the FD of the model's distribution, and a resample's FD higher
    still), the interval follows the corrected value and can exclude `value`: reports then print both."""

    bias_corrected: float | None = None


def interval_text(value: float, low, high, corrected: float | None = None, fmt: str = "{:.4g}", ci_fmt=None) -> str:
    """'v [lo, hi]'; where the interval excludes v and its bias-corrected value is known,
    'v (bias-corrected c) [lo, hi]', so that a cell never shows an interval that seems to miss its number."""
    ci_fmt = ci_fmt or fmt.replace("+", "")
    text = fmt.format(value)
    if low is None or high is None:
        return text
    if corrected is not None and not low <= value <= high:
        text += f" (bias-corrected {fmt.format(corrected)})"
    return f"{text} [{ci_fmt.format(low)}, {ci_fmt.format(high)}]"


def mean_estimate(values) -> Estimate:
    """Sample mean and its standard error (ddof=1); stderr None for a single value."""
    a = np.asarray(values, dtype=np.float64).ravel()
    n = a.size
    se = float(a.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    return Estimate(float(a.mean()), se, n=int(n))


# Per-draw values kept in a report for pairing against a baseline's (gate_uncertainty.difference): float32
# rounded to 6 significant digits keeps a 1000-probe list small while the paired s.e. moves by far less than
# its own sampling error.
ITEM_DIGITS = 6


def per_item(values) -> list[float]:
    """Per-draw values as a report keeps them: float32, 6 significant digits (JSON prints the short form)."""
    a = np.asarray(values, dtype=np.float32).ravel()
    return [float(f"{float(x):.{ITEM_DIGITS}g}") for x in a]
