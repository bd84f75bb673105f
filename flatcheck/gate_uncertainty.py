"""Intervals for the gate's uncertainty-aware rules: one number's, and a difference against a baseline's.

A gate rule compares a number with a bound at the run's own settings (same N, steps, seeds), so the
quantity it judges is the number's expectation at those settings, on the scale the report prints it.
Its interval is therefore centred on the reported value:

- an estimate with a standard error: value ± q x stderr, q the Student t quantile with n - 1 degrees of
  freedom when n draws are behind a mean (bank losses, sharpness draws, Hutchinson traces), the normal
  quantile for a bootstrap standard error (FD: n counts samples, not draws of the statistic);
- an estimate with only a stored interval: that interval, when its level is the rule's confidence;
- anything else has no uncertainty in the report: the gate judges it as a point and says so.

FD's stored basic bootstrap interval is built around the bias-corrected FD (the N -> infinity target),
which at small N lies below the raw FD a threshold is written against; the gate uses value ± z x the
bootstrap s.e. instead, so the interval and the threshold speak of the same thing
(examples/evidence/gate.md measures both).

A difference a - k b against a baseline is paired when both reports hold the per-draw values behind
the two numbers, drawn with the same seeds on the same bank: then the mean and t interval of the
per-draw differences a_i - k b_i, whose spread leaves out what the draws share. Reports keep them
(report 1.7) for the bank loss (per probe), average-case sharpness (per draw), exposure's gap_total and
variance_error_mean (per sample) and quantize's relative_mse (per sample). Otherwise the two standard
errors add in quadrature (independent), with Welch's degrees of freedom, and the row says why. FD is
never paired: it is not a mean of per-sample terms, so a difference of two FDs has no per-draw
differences (a paired bootstrap over shared sample seeds would be one; flatcheck has none).
Worst-case sharpness keeps no per-probe values: its perturbation is fitted on the very probes it is
scored on, so they are not independent draws and a t interval over them would be too narrow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

# The level flatcheck's bootstrap intervals are written at when the report does not say (core/fd's default).
DEFAULT_LEVEL = 0.95


@dataclass
class Measured:
    """One number of a report with what the report says about its uncertainty."""

    value: float | None
    stderr: float | None = None
    n: int | None = None  # draws behind it (samples for a bootstrap estimate)
    ci: tuple[float, float] | None = None  # a stored interval
    level: float | None = None  # the stored interval's confidence
    bootstrap: bool = False  # stderr is the sd of bootstrap resamples, not of n draws
    items: list[float] | None = None  # the per-draw values whose mean is `value` (for pairing)


@dataclass
class Interval:
    low: float
    high: float
    method: str  # how it was made, for the gate row


def quantile(confidence: float, df: float | None = None) -> float:
    """Two-sided critical value: Student t with df degrees of freedom, or the normal one (df None)."""
    p = 0.5 + confidence / 2
    if df is None or not math.isfinite(df):
        return NormalDist().inv_cdf(p)
    from scipy.stats import t

    return float(t.ppf(p, df))


def _df(m: Measured) -> float | None:
    return None if m.bootstrap or m.n is None or m.n < 2 else float(m.n - 1)


def _q_text(q: float, df: float | None) -> str:
    return f"z {q:.3g}" if df is None else f"t({df:.3g}) {q:.3g}"


def interval(m: Measured, confidence: float) -> Interval | None:
    """The interval of one reported number at `confidence`, or None when the report gives no uncertainty."""
    if m.value is None:
        return None
    if m.stderr is not None:
        df = _df(m)
        q = quantile(confidence, df)
        kind = "bootstrap s.e." if m.bootstrap else "s.e."
        return Interval(m.value - q * m.stderr, m.value + q * m.stderr, f"value ± {_q_text(q, df)} x {kind}")
    if m.ci is not None and m.level is not None and math.isclose(m.level, confidence):
        return Interval(m.ci[0], m.ci[1], f"the report's {m.level:.0%} interval")
    return None


def difference(a: Measured, b: Measured, k: float, confidence: float, pairable: bool) -> tuple[Interval | None, str]:
    """Interval of a - k b and how it was made: ('paired' | 'independent'). None when neither side has an
    uncertainty. `pairable`: both reports share bank and seeds (the caller checks)."""
    if a.value is None or b.value is None:
        return None, "independent"
    if pairable and a.items and b.items and len(a.items) == len(b.items) >= 2:
        from .core.stats import mean_estimate

        d = mean_estimate([x - k * y for x, y in zip(a.items, b.items)])
        n, se = d.n, d.stderr
        q = quantile(confidence, n - 1)
        # Centred on the reported difference (the mean of the items, up to rounding).
        centre = a.value - k * b.value
        return Interval(centre - q * se, centre + q * se, f"paired over {n} draws: ± {_q_text(q, n - 1)} x s.e."), (
            "paired"
        )
    sa, sb = a.stderr, b.stderr
    if sa is None and sb is None:
        return None, "independent"
    sa, sb = sa or 0.0, k * (sb or 0.0)
    se = math.hypot(sa, sb)
    # Welch-Satterthwaite degrees of freedom; a bootstrap or unknown-n side counts as many.
    dfa, dfb = _df(a), _df(b)
    parts = [(s, d) for s, d in ((sa, dfa), (sb, dfb)) if s > 0]
    if se == 0 or any(d is None for _, d in parts):
        df = None
    else:
        df = se**4 / sum(s**4 / d for s, d in parts)
    q = quantile(confidence, df)
    centre = a.value - k * b.value
    method = f"independent s.e. in quadrature: ± {_q_text(q, df)}{_why_independent(a, b, pairable)}"
    return Interval(centre - q * se, centre + q * se, method), "independent"


def _why_independent(a: Measured, b: Measured, pairable: bool) -> str:
    """Why a difference was not paired, for the gate row."""
    if b.stderr is None:
        return " (baseline without uncertainty)"
    if a.stderr is None:
        return " (value without uncertainty)"
    if a.bootstrap or b.bootstrap:
        # FD is not a mean of per-sample terms: a difference of two FDs has no per-draw differences to pair.
        return " (FD differences are independent: FD is not a mean over samples)"
    if not pairable:
        return " (the reports differ in seeds or probe bank)"
    if not (a.items and b.items):
        return " (no per-draw values in both reports)"
    if len(a.items) != len(b.items):
        return f" ({len(a.items)} vs {len(b.items)} draws)"
    return ""
