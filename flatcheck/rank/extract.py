"""The numbers `rank` correlates, read from audit report documents (what `flatcheck audit --json` writes).

Each measure says which of its numbers are sharpness measures (larger = sharper) and which are robustness
outcomes (larger = more damage), with their standard errors: `Measure.readings` (measures/base.py; the
keys are listed in each measure's readings.py). This module only gathers them across reports.

A number that a report does not have (a --quick audit's fewer radii, no nf4 setting, FD not
scored) is left out with a note; nothing is filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..measures import REGISTRY
from ..measures.base import Reading


@dataclass
class Quantity:
    """One measure or outcome across the checkpoints."""

    key: str
    label: str
    short: str
    path: str
    values: list[float]  # what is ranked (|signed| when absolute)
    stderrs: list[float | None]
    absolute: bool = False
    signed: list[float] = field(default_factory=list)  # the estimates the noise bootstrap redraws
    bucket: str | None = None


# ---------------------------------------------------------------------------- one report
def _absent(doc: dict, area: str) -> str:
    """Why a report has no section for `area`: skipped, or failed (its verdict's line says how)."""
    v = next((v for v in doc.get("verdicts") or [] if v.get("area") == area), None)
    if v is not None and v.get("status") == "error":
        return f"{area} failed ({v.get('line')})"
    return f"{area} was not run"


def readings(doc: dict, which: str) -> tuple[dict[str, tuple[str, Reading]], list[str]]:
    """key -> (measure, Reading) of one report, for `which` ("measures" or "outcomes"), and notes on what it lacks."""
    out: dict[str, tuple[str, Reading]] = {}
    notes: list[str] = []
    for name in sorted(
        (n for n, m in REGISTRY.items() if m.readings is not None and m.readings.kind == which),
        key=lambda n: REGISTRY[n].readings.order,
    ):
        spec = REGISTRY[name].readings
        section = doc.get(name)
        if section is None:
            notes.append(f"{_absent(doc, name)}: no {spec.what}")
            continue
        found, lacks = spec.read(section)
        out.update({k: (name, r) for k, r in found.items()})
        notes += lacks
    return out, notes


# ---------------------------------------------------------------------------- across reports
def gather(docs: list[dict], names: list[str], which: str) -> tuple[list[Quantity], list[str]]:
    """Quantities present with a finite value in every report (in the first report's order);
    a note for each left out and for what the reports lack."""
    per_doc, lacking = [], {}
    for doc, name in zip(docs, names):
        found, lacks = readings(doc, which)
        per_doc.append(found)
        for n in lacks:
            lacking.setdefault(n, []).append(name)
    notes = [n if len(who) == len(names) else f"{n} ({', '.join(who)})" for n, who in lacking.items()]
    keys = list(dict.fromkeys(k for r in per_doc for k in r))
    quantities = []
    for key in keys:
        missing = [n for n, r in zip(names, per_doc) if key not in r]
        if missing:
            area = next(r[key][0] for r in per_doc if key in r)
            if any(
                d.get(area) is not None for n, d in zip(names, docs) if n in missing
            ):  # else the section's note says it
                notes.append(f"{key}: not in the report of {', '.join(missing)}; left out")
            continue
        rs = [r[key][1] for r in per_doc]
        nonfinite = [n for n, r in zip(names, rs) if r.value is None]
        if nonfinite:
            notes.append(f"{key}: not finite for {', '.join(nonfinite)}; left out")
            continue
        first = rs[0]
        values = [abs(r.value) if r.absolute else r.value for r in rs]
        quantities.append(
            Quantity(
                key,
                first.label,
                first.short,
                first.path,
                values,
                [r.stderr for r in rs],
                first.absolute,
                [r.value for r in rs] if first.absolute else [],
                first.bucket,
            )
        )
    return quantities, notes
