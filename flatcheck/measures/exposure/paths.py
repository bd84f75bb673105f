"""What an exposure run with a given config puts in its report section (for the gate's paths; torch-free)."""

from __future__ import annotations

from ..base import Items
from .config import ExposureConfig

# What a rerun with the fitted scaling adds to each of its forms (measure.py's _check_scaling).
CHECKED = ("eps_norm_raw", "eps_norm_applied", "gap", "gap_total", "gap_abs_total", "gap_change", "helps")


def produces(config: ExposureConfig) -> dict[str, Items]:
    forms = ("constant", "linear") if config.linear_scale else ("constant",)
    out = {
        "runs": Items(count=len(config.steps), why=f"steps = {','.join(map(str, config.steps))}"),
        "runs.*.scaling": Items(names=forms, why="linear_scale = " + str(config.linear_scale).lower()),
    }
    if not config.check_scaling:
        for key in CHECKED:
            out[f"runs.*.scaling.*.{key}"] = Items(absent="check_scaling = false (the scaling is fitted, not rerun)")
    return out
