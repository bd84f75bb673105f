"""The sharpness numbers `rank` correlates, read from a report's sharpness section (larger = sharper):
hessian.top_eigenvalue         top Hessian eigenvalue (deterministic: no standard error)
hessian.trace[.tLO-HI]         Hutchinson trace, whole bank and per timestep bucket
avg.<norm>.r<R>[.tLO-HI]       average-case sharpness: mean loss increase under random
                               perturbations of radius R (adaptive or absolute norm)
worst.<norm>.r<R>[.tLO-HI]     worst-case sharpness: loss increase after the ascent step(s)
                               (adaptive norm = ASAM, absolute = SAM; no standard error)
"""

from __future__ import annotations

from ..base import Reading, estimate, number

NORM_NAMES = {"adaptive": "ASAM", "absolute": "SAM"}  # worst-case sharpness under each norm


def _bucket(b) -> tuple[str, str]:
    lo, hi = b
    return f"t{lo:g}-{hi:g}", f"t in [{lo:g}, {hi:g})"


def readings(s: dict) -> tuple[dict[str, Reading], list[str]]:
    """The sharpness measures of one report's sharpness section, and notes on what it lacks."""
    out: dict[str, Reading] = {}
    notes: list[str] = []
    buckets = [_bucket(b) for b in s.get("buckets") or []]
    h = s.get("hessian")
    if h:
        eig = (h.get("eigen") or {}).get("eigenvalues") or []
        if eig:
            out["hessian.top_eigenvalue"] = Reading(
                "top Hessian eigenvalue", "top eigenvalue", "sharpness.hessian.eigen.eigenvalues.0", number(eig[0])
            )
            if not h["eigen"].get("converged", True):
                notes.append("top Hessian eigenvalue did not converge")
        if h.get("trace") is not None:
            out["hessian.trace"] = Reading("Hessian trace", "trace", "sharpness.hessian.trace", *estimate(h["trace"]))
        for j, ((key, text), node) in enumerate(zip(buckets, h.get("trace_by_bucket") or [])):
            out[f"hessian.trace.{key}"] = Reading(
                f"Hessian trace, {text}",
                f"trace {key}",
                f"sharpness.hessian.trace_by_bucket.{j}",
                *estimate(node),
                bucket=key,
            )
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
                short = (
                    f"{title} {norm} r={r:g}" if kind == "average" else f"worst {NORM_NAMES.get(norm, norm)} r={r:g}"
                )
                out[key] = Reading(label, short, f"{base}.increase", *estimate(p.get("increase")))
                for j, ((bkey, text), node) in enumerate(zip(buckets, p.get("by_bucket") or [])):
                    out[f"{key}.{bkey}"] = Reading(
                        f"{label}, {text}", f"{short} {bkey}", f"{base}.by_bucket.{j}", *estimate(node), bucket=bkey
                    )
    return out, notes
