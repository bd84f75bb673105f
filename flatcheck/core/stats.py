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


def mean_estimate(values) -> Estimate:
    """Sample mean and its standard error (ddof=1); stderr None for a single value."""
    a = np.asarray(values, dtype=np.float64).ravel()
    n = a.size
    se = float(a.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    return Estimate(float(a.mean()), se, n=int(n))
