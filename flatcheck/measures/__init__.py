"""The measures flatcheck knows, in the order the audit runs them.

Adding a measure: a package under measures/ exporting a `Measure` (see base.py), and one line here.
"""

from __future__ import annotations

from .base import Measure, Skipped, Verdict
from .exposure import MEASURE as EXPOSURE
from .fid import MEASURE as FID
from .quantize import MEASURE as QUANTIZE
from .sharpness import MEASURE as SHARPNESS

# Report order (JSON, tables); the audit runs them by `Measure.order`.
REGISTRY: dict[str, Measure] = {m.name: m for m in (SHARPNESS, EXPOSURE, QUANTIZE, FID)}


def in_run_order(skip=()) -> list[str]:
    """The measures a run with `skip` runs, in the order the audit runs them."""
    return sorted((n for n in REGISTRY if n not in skip), key=lambda n: REGISTRY[n].order)


def get(name: str) -> Measure:
    from ..errors import InputError

    if name not in REGISTRY:
        raise InputError(f"no measure '{name}' (use {', '.join(REGISTRY)})")
    return REGISTRY[name]


__all__ = ["REGISTRY", "Measure", "Skipped", "Verdict", "get", "in_run_order"]
