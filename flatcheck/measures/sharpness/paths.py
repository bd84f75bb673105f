"""What a sharpness run with a given config puts in its report section (for the gate's paths; torch-free)."""

from __future__ import annotations

from ..base import Items
from .config import SharpnessConfig


def produces(config: SharpnessConfig) -> dict[str, Items]:
    """Place in the section -> its items, or why it is empty (measure.py's _measure decides the same way)."""
    chosen = set(config.measures)
    missing = {
        m: Items(absent=f"sharpness.measures has no {m} ({','.join(config.measures)})")
        for m in ("avg", "worst", "hessian", "landscape")
        if m not in chosen
    }
    buckets = Items(count=config.buckets, why=f"buckets = {config.buckets}")
    norms = Items(names=tuple(config.norms), why=f"norms = {','.join(config.norms)}")
    out: dict[str, Items] = {"buckets": buckets, "loss_by_bucket": buckets, "t_range": Items(count=2)}
    if "avg" in chosen:
        out.update(
            {
                "average": norms,
                "average.*.points": Items(count=len(config.radii), why=f"{len(config.radii)} radii"),
                "average.*.points.*.by_bucket": buckets,
                "average.*.points.*.per_draw": Items(count=config.draws, why=f"draws = {config.draws}"),
            }
        )
    else:
        out["average"] = missing["avg"]
    if "worst" in chosen:
        ascent = Items(count=config.ascent_steps, why=f"ascent_steps = {config.ascent_steps}")
        out.update(
            {
                "worst": norms,
                "worst.*.points": Items(count=len(config.worst_radii), why=f"{len(config.worst_radii)} worst_radii"),
                "worst.*.points.*.ascent": ascent,
                "worst.*.points.*.by_bucket": buckets,
            }
        )
    else:
        out["worst"] = missing["worst"]
    if "hessian" in chosen:
        top = Items(count=config.top_k, why=f"top_k = {config.top_k}")
        out.update(
            {
                "hessian.eigen.eigenvalues": top,
                "hessian.eigen.residuals": top,
                "hessian.trace_by_bucket": buckets,
            }
        )
    else:
        out["hessian"] = missing["hessian"]
        out["blocks.*.hessian_trace"] = out["blocks.*.trace_per_parameter"] = missing["hessian"]
    if "landscape" in chosen:
        points = Items(count=config.landscape_points, why=f"landscape_points = {config.landscape_points}")
        out.update({"landscape.alphas": points, "landscape.curve": points})
        if config.landscape_grid:
            grid = Items(count=config.landscape_grid, why=f"landscape_grid = {config.landscape_grid}")
            out.update({"landscape.grid": grid, "landscape.surface": grid, "landscape.surface.*": grid})
        else:
            out["landscape.grid"] = out["landscape.surface"] = Items(absent="landscape_grid = 0 (no 2-D surface)")
    else:
        out["landscape"] = missing["landscape"]
    block_average = "avg" in chosen and config.block_average
    if block_average:
        out["blocks.*.average"] = Items(names=tuple(config.norms[:1]), why=f"the first norm, {config.norms[0]}")
    else:
        why = "block_average = false" if "avg" in chosen else missing["avg"].absent
        out["blocks.*.average"] = out["block_radius"] = Items(absent=why)
    if (config.reference or "").lower() == "none":
        out["reference"] = Items(absent="sharpness.reference = none (no comparison)")
    else:  # a headline number is there whenever its measure runs (its percentile is null without a match)
        headline = {"hessian": ("top_eigenvalue", "trace"), "avg": ("average",), "worst": ("worst",)}
        headline["landscape"] = ("curvature",)
        names = tuple(n for m in ("hessian", "avg", "worst", "landscape") if m in chosen for n in headline[m])
        out["reference.metrics"] = Items(names=names, why=f"measures = {','.join(config.measures)}")
    if not block_average and "hessian" not in chosen:
        out["blocks"] = Items(absent="no per-block measure in this run (hessian, or avg with block_average)")
    return out
