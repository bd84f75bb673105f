"""The numbers `rank` correlates, read from audit report documents (what `flatcheck audit --json` writes).

Sharpness measures (larger = sharper):
    hessian.top_eigenvalue         top Hessian eigenvalue (deterministic: no standard error)
    hessian.trace[.tLO-HI]         Hutchinson trace, whole bank and per timestep bucket
    avg.<norm>.r<R>[.tLO-HI]       average-case sharpness: mean loss increase under random
                                   perturbations of radius R (adaptive or absolute norm)
    worst.<norm>.r<R>[.tLO-HI]     worst-case sharpness: loss increase after the ascent step(s)
                                   (adaptive norm = ASAM, absolute = SAM; no standard error)
Robustness outcomes (signed so that larger = more damage):
    quantize.<setting>.drift       paired sample MSE / sample variance (W8A8, W4A4, bnb-nf4...)
    quantize.<setting>.fd_change   FD/FID of the quantized samples minus full precision's
    exposure.<steps>.gap           |eps-norm gap| / forward norm summed over steps (|.|: either sign is bias)
    exposure.<steps>.lambda        |lambda - 1| of the constant epsilon scaling that closes the gap

A number that a report does not have (a --quick audit's fewer radii, no nf4 setting, FD not
scored) is left out with a note; nothing is filled in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

NORM_NAMES = {"adaptive": "ASAM", "absolute": "SAM"}  # worst-case sharpness under each norm


@dataclass
class Reading:
    """One number of one report."""

    label: str
    short: str  # a table's column header
    path: str  # where it is in the report (the gate's dotted path)
    value: float | None  # None: not finite in the report
    stderr: float | None = None  # None: no standard error (held fixed by the noise bootstrap)
    absolute: bool = False  # the quantity is |value|: value is the signed estimate
    bucket: str | None = None  # a timestep bucket's version ("t0-500"); None: the whole bank


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
def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _est(node) -> tuple[float | None, float | None]:
    """(value, stderr) of an Estimate node or a plain number."""
    if isinstance(node, dict):
        return _num(node.get("value")), _num(node.get("stderr"))
    return _num(node), None


def _absent(doc: dict, area: str) -> str:
    """Why a report has no section for `area`: skipped, or failed (its verdict's line says how)."""
    v = next((v for v in doc.get("verdicts") or [] if v.get("area") == area), None)
    if v is not None and v.get("status") == "error":
        return f"{area} failed ({v.get('line')})"
    return f"{area} was not run"


def _bucket(b) -> tuple[str, str]:
    lo, hi = b
    return f"t{lo:g}-{hi:g}", f"t in [{lo:g}, {hi:g})"


def sharpness_readings(doc: dict) -> tuple[dict[str, Reading], list[str]]:
    """The sharpness measures of one report, and notes on what it lacks."""
    s = doc.get("sharpness")
    if s is None:
        return {}, [f"{_absent(doc, 'sharpness')}: no sharpness measures"]
    out: dict[str, Reading] = {}
    notes: list[str] = []
    buckets = [_bucket(b) for b in s.get("buckets") or []]
    h = s.get("hessian")
    if h:
        eig = (h.get("eigen") or {}).get("eigenvalues") or []
        if eig:
            out["hessian.top_eigenvalue"] = Reading("top Hessian eigenvalue", "top eigenvalue", "sharpness.hessian.eigen.eigenvalues.0", _num(eig[0]))
            if not h["eigen"].get("converged", True):
                notes.append("top Hessian eigenvalue did not converge")
        if h.get("trace") is not None:
            out["hessian.trace"] = Reading("Hessian trace", "trace", "sharpness.hessian.trace", *_est(h["trace"]))
        for j, ((key, text), node) in enumerate(zip(buckets, h.get("trace_by_bucket") or [])):
            out[f"hessian.trace.{key}"] = Reading(f"Hessian trace, {text}", f"trace {key}", f"sharpness.hessian.trace_by_bucket.{j}", *_est(node), bucket=key)
    else:
        notes.append("no Hessian in the sharpness section")
    for kind, title in (("average", "avg"), ("worst", "worst")):
        for sweep in s.get(kind) or []:
            norm = sweep["norm"]
            for i, p in enumerate(sweep.get("points") or []):
                r = p["radius"]
                if kind == "average":
                    label = f"average-case sharpness ({norm}, r = {r:g})"
                else:
                    label = f"worst-case {NORM_NAMES.get(norm, norm)} sharpness (r = {r:g})"
                base = f"sharpness.{kind}.{norm}.points.{i}"
                key = f"{title}.{norm}.r{r:g}"
                short = f"{title} {norm} r={r:g}" if kind == "average" else f"worst {NORM_NAMES.get(norm, norm)} r={r:g}"
                out[key] = Reading(label, short, f"{base}.increase", *_est(p.get("increase")))
                for j, ((bkey, text), node) in enumerate(zip(buckets, p.get("by_bucket") or [])):
                    out[f"{key}.{bkey}"] = Reading(f"{label}, {text}", f"{short} {bkey}", f"{base}.by_bucket.{j}", *_est(node), bucket=bkey)
    return out, notes


def outcome_readings(doc: dict) -> tuple[dict[str, Reading], list[str]]:
    """The robustness outcomes of one report (larger = more damage), and notes on what it lacks."""
    out: dict[str, Reading] = {}
    notes: list[str] = []
    q = doc.get("quantize")
    if q is None:
        notes.append(f"{_absent(doc, 'quantize')}: no quantization outcomes")
    else:
        fd_label = q.get("fid_label") or "FD"
        for s in q.get("settings") or []:
            name = s["name"]
            drift = _num(s.get("relative_mse"))
            mse, mse_se = _est(s.get("sample_mse"))
            # relative_mse = sample_mse / sample variance: the same standard error, scaled alike.
            se = drift * mse_se / mse if drift is not None and mse and mse_se is not None else None
            out[f"quantize.{name}.drift"] = Reading(f"{name} sample drift", f"{name} drift", f"quantize.settings.{name}.relative_mse", drift, se)
            if s.get("fid_change") is not None:
                out[f"quantize.{name}.fd_change"] = Reading(f"{name} {fd_label} change", f"{name} {fd_label.split()[0]} change", f"quantize.settings.{name}.fid_change", *_est(s["fid_change"]))
            else:
                notes.append(f"{name} {fd_label} change: not scored (no FD reference)")
        if not any((s.get("bnb_type") or "") == "nf4" for s in q.get("settings") or []):
            notes.append("no nf4 setting in the audits (rank --quantize-settings W8A8,W4A4,bnb-nf4 adds one): no nf4 drift")
    e = doc.get("exposure")
    if e is None:
        notes.append(f"{_absent(doc, 'exposure')}: no exposure outcomes")
    else:
        what = "eps" if e.get("quantity", "eps") == "eps" else e["quantity"]
        for i, run in enumerate(e.get("runs") or []):
            steps = run["steps"]
            total, total_se = _est(run.get("gap_total"))
            rel = _num(run.get("gap_relative"))
            # gap_relative = gap_total / (sum of forward norms): the standard error scales alike.
            se = abs(rel * total_se / total) if rel is not None and total and total_se is not None else None
            out[f"exposure.{steps}.gap"] = Reading(f"exposure gap ({steps} steps)", f"gap {steps} steps", f"exposure.runs.{i}.gap_relative", rel, se, absolute=True)
            const = next((sc for sc in run.get("scaling") or [] if sc.get("form") == "constant"), None)
            if const is not None and _num(const.get("b")) is not None:
                out[f"exposure.{steps}.lambda"] = Reading(f"{what} scaling |lambda - 1| ({steps} steps)", f"|lambda-1| {steps} steps", f"exposure.runs.{i}.scaling.constant.b",
                                                          const["b"] - 1.0, None, absolute=True)
            else:
                notes.append(f"no constant {what} scaling at {steps} steps: no lambda outcome")
    return out, notes


# ---------------------------------------------------------------------------- across reports
def gather(docs: list[dict], names: list[str], which: str) -> tuple[list[Quantity], list[str]]:
    """Quantities present with a finite value in every report (in the first report's order);
    a note for each left out and for what the reports lack."""
    read = sharpness_readings if which == "measures" else outcome_readings
    per_doc, lacking = [], {}
    for doc, name in zip(docs, names):
        readings, lacks = read(doc)
        per_doc.append(readings)
        for n in lacks:
            lacking.setdefault(n, []).append(name)
    notes = [n if len(who) == len(names) else f"{n} ({', '.join(who)})" for n, who in lacking.items()]
    keys = list(dict.fromkeys(k for r in per_doc for k in r))
    quantities = []
    for key in keys:
        missing = [n for n, r in zip(names, per_doc) if key not in r]
        if missing:
            area = key.split(".")[0] if key.startswith(("quantize.", "exposure.")) else "sharpness"
            if any(d.get(area) is not None for n, d in zip(names, docs) if n in missing):  # else the section's note says it
                notes.append(f"{key}: not in the report of {', '.join(missing)}; left out")
            continue
        rs = [r[key] for r in per_doc]
        nonfinite = [n for n, r in zip(names, rs) if r.value is None]
        if nonfinite:
            notes.append(f"{key}: not finite for {', '.join(nonfinite)}; left out")
            continue
        first = rs[0]
        values = [abs(r.value) if r.absolute else r.value for r in rs]
        quantities.append(Quantity(key, first.label, first.short, first.path, values, [r.stderr for r in rs], first.absolute,
                                   [r.value for r in rs] if first.absolute else [], first.bucket))
    return quantities, notes
