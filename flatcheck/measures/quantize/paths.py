"""What a quantize run with a given config puts in its report section (for the gate's paths; torch-free)."""

from __future__ import annotations

from ..base import Items
from .config import QuantizeConfig


def produces(config: QuantizeConfig) -> dict[str, Items]:
    names = tuple(s.name for s in config.settings)
    out = {"settings": Items(names=names, why=f"settings = {','.join(names)}")}
    if not config.sensitivity_samples:
        out["sensitivity"] = Items(absent="sensitivity_samples = 0 (no per-layer scan)")
    return out
