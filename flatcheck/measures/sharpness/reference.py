"""A scale for the headline sharpness numbers: each one's percentile among known checkpoints (torch-free).

A sharpness number alone says little (is a top eigenvalue of 125 sharp?). A reference table
(flatcheck/assets/sharpness_reference.json, made by examples/zoo/sharpness_reference.py from real
reports) holds the headline numbers of known checkpoints in sets; a set is one model family, one
size class and one set of measurement settings. A number gets a percentile only against a set whose
family, size class, probe bank and the settings that define that number all equal the run's: anything
else is a different quantity, and the report says there is no reference and why.

Percentile: 100 x (reference values below + half the equal ones) / n ("sharper than p% of them";
larger = sharper, like every sharpness number). The same functions read a report (the script that
builds the table) and a fresh result (the run), so both sides are computed alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ...errors import InputError

FORMAT = 1
SHIPPED = "the shipped table"  # how the default table is named in messages
# The headline numbers (the verdict line's), in the order the verdict names them.
METRICS = {
    "top_eigenvalue": "top Hessian eigenvalue",
    "trace": "Hessian trace",
    "average": "average-case relative loss increase",
    "worst": "worst-case relative loss increase",
    "curvature": "landscape curvature",
}


@dataclass
class ReferencePoint:
    """One headline number against the reference set."""

    name: str  # a key of METRICS
    label: str
    value: float | None
    percentile: float | None  # % of the set's checkpoints below this value (ties count half); None: no reference
    n: int = 0  # reference checkpoints compared with
    below: int | None = None  # how many of them are below (strictly)
    ref_min: float | None = None
    ref_median: float | None = None
    ref_max: float | None = None
    why: str | None = None  # why there is no percentile


@dataclass
class SharpnessReference:
    """Where this run's headline sharpness numbers sit among a reference set of checkpoints."""

    label: str  # "relative to 14 reference checkpoints (digits-quick)", or "no reference: why"
    set: str | None  # the matching set's name; None: none matched
    title: str | None  # what the set is
    n: int  # checkpoints in the set
    family: str  # this run's, as the table names them
    size_class: str
    table: str  # which table was read
    metrics: dict[str, ReferencePoint] = field(default_factory=dict)
    why: str | None = None  # why no set matched


# ---------------------------------------------------------------------------- what a run is
def size_class(parameters: int) -> str:
    """The decade of the denoiser's parameter count: '100K-1M', '1M-10M', ... '1B-10B'."""
    names = ["1", "10", "100", "1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T"]
    k = max(0, min(len(names) - 2, int(math.floor(math.log10(max(parameters, 1))))))
    return f"{names[k]}-{names[k + 1]} parameters"


def family(denoiser_class: str, space: str, prediction: str, conditioning: str) -> str:
    return f"{denoiser_class} ({space}, {prediction} prediction, conditioning {conditioning})"


def context_of_report(model: dict) -> dict:
    """Family and size class from a report's `model` section."""
    return {
        "family": family(
            model.get("denoiser_class"), model.get("space"), model.get("prediction_type"), model.get("conditioning")
        ),
        "size_class": size_class(int(model.get("parameters") or 0)),
    }


def context_of_denoiser(denoiser) -> dict:
    """The same from a live core.denoiser.Denoiser."""
    info = denoiser.info
    parameters = sum(p.numel() for p in denoiser.net.parameters())
    return {
        "family": family(type(denoiser.net).__name__, info.space, denoiser.prediction_type, info.conditioning),
        "size_class": size_class(parameters),
    }


def bank_of(section: dict) -> dict:
    """The probe-bank settings every headline number depends on."""
    config = section.get("config") or {}
    return {
        "source": section.get("source"),
        "probes": section.get("probes"),
        "t_range": list(section.get("t_range") or []),
        "params": config.get("params"),
    }


def headline(section: dict) -> dict[str, tuple[float | None, dict]]:
    """name -> (value, the settings that define it) of each headline number a report's sharpness section holds.

    Only settings that change what is estimated count (sub-bank sizes, radius, norm, ascent steps, landscape
    span and points); those that only change its noise (draws, Lanczos iterations, seed) do not. An
    eigenvalue that did not converge has no value."""
    config = section.get("config") or {}
    out: dict[str, tuple[float | None, dict]] = {}
    h = section.get("hessian")
    if h:
        eig = (h.get("eigen") or {}).get("eigenvalues") or []
        if eig:
            value = _num(eig[0]) if h["eigen"].get("converged", True) else None
            out["top_eigenvalue"] = (value, {"hessian_probes": h.get("probes")})
        if h.get("trace") is not None:
            out["trace"] = (_num(h["trace"].get("value")), {"hessian_probes": h.get("probes")})
    for kind in ("average", "worst"):
        for sweep in (section.get(kind) or [])[:1]:  # the verdict's: the first norm, its last radius
            p = (sweep.get("points") or [None])[-1]
            if p is None:
                continue
            settings = {"norm": sweep.get("norm"), "radius": p.get("radius"), "eta": config.get("eta")}
            if kind == "worst":
                settings["ascent_steps"] = sweep.get("steps")
            out[kind] = (_num(p.get("relative")), settings)
    land = section.get("landscape")
    if land:
        settings = {"landscape_probes": land.get("probes"), "span": land.get("span"), "points": len(land["alphas"])}
        out["curvature"] = (_num(land.get("curvature")), settings)
    return out


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


# ---------------------------------------------------------------------------- the table
def load_table(path: str | None = None) -> tuple[dict, str]:
    """(table, how it is named) of `path`, default the shipped one; InputError in one line when unreadable."""
    if path is None:
        text, name = (resources.files("flatcheck") / "assets" / "sharpness_reference.json").read_text(), SHIPPED
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"sharpness reference table '{path}' is not a file")
        text, name = p.read_text(), str(p)
    try:
        table = json.loads(text)
    except ValueError as exc:
        raise InputError(f"sharpness reference table {name} is not JSON ({exc})") from None
    if not isinstance(table, dict) or table.get("format") != FORMAT or not isinstance(table.get("sets"), list):
        raise InputError(f"sharpness reference table {name} is not a format-{FORMAT} table (see {SHIPPED})")
    return table, name


def percentile(value: float, values: list[float]) -> tuple[float, int]:
    """(mid-rank percentile of `value` among `values`, how many are strictly below)."""
    below = sum(v < value for v in values)
    equal = sum(v == value for v in values)
    return 100.0 * (below + 0.5 * equal) / len(values), below


def _differs(mine: dict, theirs: dict) -> str | None:
    """'probes 128 (reference: 64)' for each setting that differs, None when all match."""
    keys = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
    return ", ".join(f"{k} {_show(mine.get(k))} (reference: {_show(theirs.get(k))})" for k in keys) or None


def _show(v) -> str:
    return "all" if v is None else f"[{', '.join(map(str, v))})" if isinstance(v, list) else str(v)


def compare(section: dict, context: dict, table: dict, table_name: str = SHIPPED) -> SharpnessReference:
    """This run's headline numbers (`section`: its sharpness section as JSON data) against the set of `table`
    with the same family, size class and probe bank."""
    numbers = headline(section)
    bank = bank_of(section)
    same_kind = [s for s in table["sets"] if s["context"] == context]
    why = None
    if not same_kind:
        kinds = sorted({f"{s['context']['family']}, {s['context']['size_class']}" for s in table["sets"]})
        have = "; ".join(kinds) or "no sets"
        why = f"no reference set for {context['family']}, {context['size_class']} (it has: {have})"
    else:
        matching = [s for s in same_kind if s["bank"] == bank]
        if not matching:
            why = "; ".join(f"{s['name']}: {_differs(bank, s['bank'])}" for s in same_kind)
            why = f"the probe bank differs from every reference set of this family and size ({why})"
    base = dict(family=context["family"], size_class=context["size_class"], table=table_name)
    if why is not None:
        points = {k: ReferencePoint(k, METRICS[k], v, None, why="no reference set") for k, (v, _) in numbers.items()}
        return SharpnessReference(f"no reference: {why}", None, None, 0, metrics=points, why=why, **base)
    ref = matching[0]
    points = {}
    for key, (value, settings) in numbers.items():
        points[key] = _point(key, value, settings, ref)
    n = len(ref["checkpoints"])
    label = f"relative to {n} reference checkpoints ({ref['name']}: {ref['title']})"
    return SharpnessReference(label, ref["name"], ref["title"], n, metrics=points, **base)


def _point(key: str, value: float | None, settings: dict, ref: dict) -> ReferencePoint:
    point = ReferencePoint(key, METRICS[key], value, None)
    theirs = ref["settings"].get(key)
    if theirs is None:
        point.why = f"the set {ref['name']} has no {METRICS[key]}"
        return point
    differs = _differs(settings, theirs)
    if differs:
        point.why = f"measured with other settings: {differs}"
        return point
    values = sorted(v for v in (c["values"].get(key) for c in ref["checkpoints"]) if v is not None)
    if value is None or not values:
        point.why = "not finite or not converged" if value is None else f"the set {ref['name']} has no values"
        return point
    point.percentile, point.below = percentile(value, values)
    point.n = len(values)
    point.ref_min, point.ref_max = values[0], values[-1]
    mid = len(values) // 2
    point.ref_median = values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])
    return point


def summary(ref: SharpnessReference) -> str:
    """The verdict's clause: 'relative to 14 reference checkpoints (digits-quick): top eigenvalue p79, ...'."""
    if ref.set is None:
        if ref.why and ref.why.startswith("the probe bank differs"):  # every difference of every set: too long here
            why = "how: sharpness.reference.why"
            return f"no reference: the probe bank differs from every reference set of this family and size ({why})"
        return ref.label
    shown = [f"{p.label} p{p.percentile:.0f}" for p in ref.metrics.values() if p.percentile is not None]
    missing = [p.label for p in ref.metrics.values() if p.percentile is None]
    text = f"relative to {ref.n} reference checkpoints ({ref.set}): " + (", ".join(shown) or "no number comparable")
    if missing:
        text += f" (no percentile for {', '.join(missing)}: why in sharpness.reference)"
    return text
