"""`flatcheck rank`: does flatness predict robustness across a zoo of checkpoints?

Every sharpness measure is rank-correlated with every robustness outcome over the N checkpoints
(Spearman's rho and Kendall's tau-b), each with two 95% percentile intervals:

- over checkpoints: the N checkpoints resampled with replacement (seeded). How much the
  correlation depends on which checkpoints are in the zoo. Resamples where either side is tied
  throughout (e.g. one checkpoint drawn N times) have no correlation: dropped and counted;
- over measurement noise (a parametric bootstrap over the standard errors the reports record):
  each checkpoint's numbers redrawn from N(value, stderr^2), the zoo fixed. How much it depends
  on the probes, perturbation draws and samples each number was estimated from. Numbers without a
  standard error (the top eigenvalue, worst-case sharpness, lambda) are held fixed.

The reports must come from one bank, seed set and option set (`compare.audit_many`, or `flatcheck
audit` runs with equal options on --data): anything else is refused, since the ranks would then
mix differences of measurement with differences of checkpoint.

And a permutation p-value for rho: how often unrelated rankings agree as well. It matters at small
N, where the bootstrap over checkpoints cannot show how little a few points say (three perfectly
ordered checkpoints give the interval [1, 1], yet unrelated orderings do that one time in three).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

import numpy as np

from ..core.seeds import stream
from ..errors import InputError, require_at_least
from . import stats
from .extract import Quantity, gather

MIN_CHECKPOINTS = 3
DEFAULT_ROUNDS = 2000
METHODS = {
    "checkpoints": "bootstrap over checkpoints: the N checkpoints resampled with replacement; resamples with a side "
    "tied throughout are dropped and counted; 95% percentile interval",
    "noise": "parametric bootstrap over measurement noise (standard errors): each checkpoint's value redrawn from "
    "N(value, stderr^2), numbers without a standard error held fixed, checkpoints independent; 95% percentile interval",
    "p_value": "two-sided permutation test of Spearman's rho: the share of reorderings of the outcome whose |rho| is "
    "at least the observed one; exact over all N! orderings up to 8 checkpoints, else (1 + hits) / "
    "(1 + 9999) random orderings",
}


@dataclass
class Coefficient:
    value: float | None  # None: undefined (a side tied across every checkpoint)
    checkpoints: stats.Interval
    noise: stats.Interval


@dataclass
class Pair:
    measure: str  # Quantity keys
    outcome: str
    n: int
    spearman: Coefficient
    kendall: Coefficient
    p_value: float | None  # two-sided permutation p-value of Spearman's rho (None: undefined)
    p_method: str  # exact over all orderings, or Monte Carlo
    sentence: str


@dataclass
class Ranking:
    models: list[str]
    n: int
    options: dict  # the audits' options (the same for every report)
    bootstrap: dict  # rounds, level, seed, methods
    measures: list[Quantity]
    outcomes: list[Quantity]
    pairs: list[Pair]
    notes: list[str]  # what was left out and why
    reports: list[dict] = field(default_factory=list)

    def pair(self, measure: str, outcome: str) -> Pair:
        return next(p for p in self.pairs if p.measure == measure and p.outcome == outcome)


# ---------------------------------------------------------------------------- the same audit?
BANK_KEYS = ("n", "seed", "source", "t_range")


def check_comparable(docs: list[dict], names: list[str]) -> None:
    """InputError (one line) unless every report shares the first's options, seeds and bank."""
    first = docs[0]
    for doc, name in zip(docs[1:], names[1:]):
        diff = []
        for part in ("options", "seeds"):
            a, b = first.get(part) or {}, doc.get(part) or {}
            diff += [f"{part}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        ba, bb = first.get("bank") or {}, doc.get("bank") or {}
        diff += [f"bank.{k}" for k in BANK_KEYS if ba.get(k) != bb.get(k)]
        ra, rb = ((d.get("fid") or {}).get("reference") or {} for d in (first, doc))
        if ra.get("content_hash") != rb.get("content_hash"):
            diff.append("the FD reference")
        if diff:
            shown = ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise InputError(
                f"{name} was not audited like {names[0]} ({shown} differ): rank needs one bank, seed set and option "
                "set; audit them with the same options (or run flatcheck rank on the checkpoints)"
            )
    bank = first.get("bank") or {}
    source = str(bank.get("source") or "")
    if source.startswith("data-free") and "pooled" not in source:
        # Each data-free audit drew its bank from its own samples: the banks differ although the text is equal.
        raise InputError(
            "these data-free reports each drew their probe bank from their own model's samples: rank them with "
            "flatcheck rank CKPT... (one pooled bank) or audit them with --data"
        )


# ---------------------------------------------------------------------------- ranking
def select(quantities: list[Quantity], patterns: str | None) -> list[Quantity]:
    """Quantities whose key matches one of the comma-separated glob patterns. None: the whole-bank
    ones (the per-timestep-bucket versions multiply the table by the bucket count: asked for by
    a pattern that names them, e.g. '*' or 'hessian.trace.*')."""
    if not patterns:
        return [q for q in quantities if q.bucket is None]
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    return [q for q in quantities if any(fnmatch.fnmatchcase(q.key, p) for p in pats)]


def rank_reports(
    docs: list[dict],
    names: list[str],
    *,
    seed: int = 0,
    rounds: int = DEFAULT_ROUNDS,
    measures: str | None = None,
    outcomes: str | None = None,
) -> Ranking:
    """Every measure x outcome rank correlation over the reports' checkpoints, with both intervals."""
    if len(docs) < MIN_CHECKPOINTS:
        raise InputError(
            f"rank needs at least {MIN_CHECKPOINTS} checkpoints (got {len(docs)}): "
            "a rank correlation of two is always +-1"
        )
    require_at_least("bootstrap", rounds, 1)
    check_comparable(docs, names)
    all_measures, notes = gather(docs, names, "measures")
    all_outcomes, onotes = gather(docs, names, "outcomes")
    notes += onotes
    # Not refused (the numbers are still of one bank and seed set), but not comparable bit for bit: said.
    for key in ("device", "torch", "flatcheck"):
        seen = list(dict.fromkeys(str((d.get("environment") or {}).get(key)) for d in docs))
        if len(seen) > 1:
            notes.append(
                f"the reports come from different {key}s ({', '.join(seen)}): "
                "their numbers also differ by float rounding"
            )
    ms, os_ = select(all_measures, measures), select(all_outcomes, outcomes)
    for what, chosen, pattern in (("measure", ms, measures), ("outcome", os_, outcomes)):
        if not chosen:
            have = ", ".join(q.key for q in (all_measures if what == "measure" else all_outcomes)) or "none"
            raise InputError(
                f"no {what} matches '{pattern}' in these reports (have: {have})"
                if pattern
                else f"the reports have no {what}s to rank (see the notes: {'; '.join(notes) or 'none'})"
            )
    n = len(docs)
    idx = stats.checkpoint_resamples(n, rounds, stream(seed, "rank-checkpoints"))

    def sides(q: Quantity) -> dict:
        # Each quantity's noise draws come from its own named stream: the same whichever pairs are asked for.
        draws = stats.noise_draws(
            q.signed or q.values, q.stderrs, rounds, stream(seed, f"rank-noise-{q.key}"), q.absolute
        )
        return {
            "point": stats.prepare(q.values),
            "checkpoints": stats.prepare(np.asarray(q.values)[idx]),
            "noise": stats.prepare(draws),
        }

    # Ranks and pair signs once per quantity (outcomes kept, one measure at a time: memory stays ~ outcomes x rounds x
    # N^2 bytes).
    prepared = {o.key: sides(o) for o in os_}
    pairs = []
    for m in ms:
        a = sides(m)
        for o in os_:
            b = prepared[o.key]
            coef = {}
            for name, fn in stats.RANKED.items():
                v = float(fn(a["point"], b["point"]))
                coef[name] = Coefficient(
                    None if math.isnan(v) else v,
                    stats.percentile_interval(fn(a["checkpoints"], b["checkpoints"])),
                    stats.percentile_interval(fn(a["noise"], b["noise"])),
                )
            p, method = stats.permutation_p(m.values, o.values, seed=stream(seed, "rank-permutation"))
            pairs.append(
                Pair(
                    m.key,
                    o.key,
                    n,
                    coef["spearman"],
                    coef["kendall"],
                    p,
                    method,
                    sentence(m, o, coef["spearman"], coef["kendall"], n, p),
                )
            )
    bootstrap = {"rounds": rounds, "level": stats.LEVEL, "seed": seed, "methods": METHODS}
    return Ranking(list(names), n, docs[0].get("options", {}), bootstrap, ms, os_, pairs, notes, list(docs))


def _interval(i: stats.Interval) -> str:
    if i.low is None:
        return f"[undefined: {i.dropped} of {i.rounds} resamples degenerate]"
    return f"[{i.low:.2f}, {i.high:.2f}]"


def sentence(m: Quantity, o: Quantity, rho: Coefficient, tau: Coefficient, n: int, p: float | None = None) -> str:
    """One plain sentence for a pair, e.g. 'top Hessian eigenvalue ranks W4A4 FD change with Spearman
    rho = 0.86 [0.55, 0.97] (bootstrap over checkpoints; [0.80, 0.90] over measurement noise),
    Kendall tau = 0.72, over 9 checkpoints (permutation p = 0.003).'"""
    if rho.value is None:
        tied = m.label if len(set(m.values)) == 1 else o.label
        return f"{m.label} vs {o.label}: no rank correlation, {tied} is the same for all {n} checkpoints."
    tau_text = f"{tau.value:.2f}" if tau.value is not None else "undefined"
    return (
        f"{m.label} ranks {o.label} with Spearman rho = {rho.value:.2f} {_interval(rho.checkpoints)} (bootstrap over "
        f"checkpoints; {_interval(rho.noise)} over measurement noise), Kendall tau = {tau_text}, over {n} checkpoints "
        f"(permutation p = {p:.2g})."
    )


def report_names(docs: list[dict], paths: list[str]) -> list[str]:
    """Each report's model source; the file names where two sources are the same."""
    from pathlib import Path

    sources = [str((d.get("model") or {}).get("source") or Path(p).stem) for d, p in zip(docs, paths)]
    return sources if len(set(sources)) == len(sources) else [str(p) for p in paths]


def load_reports(paths: list[str]) -> tuple[list[dict], list[str]]:
    """Audit reports from files; a compare or rank document contributes the reports it embeds."""
    from ..gate import load_report

    docs, where = [], []
    for p in paths:
        doc = load_report(p)
        inner = doc.get("reports") if "reports" in doc and "bank" not in doc else [doc]
        for i, d in enumerate(inner):
            if not isinstance(d, dict) or "options" not in d or "model" not in d:
                raise InputError(f"{p} is not a flatcheck audit report (written by flatcheck audit --json)")
            docs.append(d)
            where.append(p if len(inner) == 1 else f"{p}#{i}")
    return docs, report_names(docs, where)
