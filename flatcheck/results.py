"""The one JSON contract: results -> JSON documents, the dotted paths that name their numbers, the schemas.

Everything that reads or writes a report goes through here: the commands (--json), report/
(Markdown, HTML and compare show numbers under their paths) and gate.py (thresholds on paths).

  to_jsonable / write_json   dataclasses, tensors, numpy, paths -> plain JSON (NaN/Inf -> null)
  number_rows                every number of a document with its dotted path and uncertainty
  item_name_key              how list items are named in paths (quantize.settings.W4A4...)
  schema / validate          the versioned JSON Schemas: the report (audit and every measure
                             command), info, compare, gate, rank

A report document is the same for `flatcheck audit` and for each measure command (a single
command is the audit with the other measures skipped), so a gate path works on both.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

# Document kind -> schema version. The major version changes when a field is removed or changes meaning.
VERSIONS = {
    "report": "1.7",
    "info": "1.3",
    "compare": "1.0",
    "gate": "1.1",
    "sample": "1.0",
    "rank": "1.0",
    "plan": "1.1",
}
SCHEMAS = tuple(VERSIONS)


# ---------------------------------------------------------------------------- to JSON
def to_jsonable(obj):
    """Plain JSON data: dataclasses by field (private `_fields` left out; `__json__` when defined)."""
    # Tensors and arrays exist only where torch / numpy were imported: a document of plain data (info's)
    # is written without importing them.
    torch = sys.modules.get("torch")
    np = sys.modules.get("numpy")

    if hasattr(obj, "__json__") and not isinstance(obj, type):
        return to_jsonable(obj.__json__())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj) if not f.name.startswith("_")
        }
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if torch is not None and isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if np is not None and isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if np is not None and isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN/Inf; null means "not finite"
    if torch is not None and isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    return obj


def write_json(payload, dest: str | Path) -> None:
    """Write to a path (atomically) or to stdout when dest is '-'."""
    text = _items_on_one_line(json.dumps(to_jsonable(payload), indent=2, allow_nan=False)) + "\n"
    if str(dest) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(dest)


# Lists of per-draw values (core.stats.per_item: bank.loss_per_probe, ..._per_sample, per_draw) go on one line: a
# 1000-probe list takes ~10 KB so, ~18 KB one number a line. Only numbers and nulls are inside them.
_ITEM_LIST = re.compile(r'("(?:\w+_per_(?:probe|sample)|per_draw)": )\[([-+.\deE,\snul]*)\]')


def _items_on_one_line(text: str) -> str:
    def one_line(m: re.Match) -> str:
        inside = m.group(2).strip()
        return m.group(1) + "[" + (", ".join(x.strip() for x in inside.split(",")) if inside else "") + "]"

    return _ITEM_LIST.sub(one_line, text)


def document(kind: str, payload) -> dict:
    """A versioned JSON document of a kind (info, compare, gate): its schema_version, then the payload."""
    return {"schema_version": VERSIONS[kind], **to_jsonable(payload)}


# ---------------------------------------------------------------------------- schemas
@lru_cache(maxsize=None)
def schema(kind: str = "report") -> dict:
    """The JSON Schema of a document kind. The report schema is assembled from the base
    (schemas/report.schema.json) and each measure package's schema.json fragment."""
    if kind not in SCHEMAS:
        raise ValueError(f"no schema '{kind}' (have: {', '.join(SCHEMAS)})")
    doc = json.loads((resources.files("flatcheck") / "schemas" / f"{kind}.schema.json").read_text())
    if kind == "report":
        from .measures import REGISTRY

        names = list(REGISTRY)
        verdicts = doc["properties"]["verdicts"]
        verdicts.update(minItems=len(names), maxItems=len(names))
        verdicts["items"]["properties"]["area"]["enum"] = names
        doc["properties"]["options"]["properties"]["skip"]["items"]["enum"] = names
        for name in names:
            fragment = json.loads((resources.files("flatcheck") / "measures" / name / "schema.json").read_text())
            doc["$defs"][name] = fragment
            doc["properties"][name] = {
                "oneOf": [{"type": "null"}, {"$ref": f"#/$defs/{name}"}, {"$ref": "#/$defs/incomplete"}]
            }
            doc["required"].append(name)
    return doc


def validate(doc: dict, kind: str = "report") -> list[str]:
    """Schema violations of a document, as 'path: message' lines (empty: valid)."""
    import jsonschema
    from referencing import Registry, Resource

    # compare embeds whole reports: its "$ref": "report.schema.json" resolves to the report schema.
    report = schema("report")
    registry = Registry().with_resource(report["$id"], Resource.from_contents(report))
    v = jsonschema.Draft202012Validator(schema(kind), registry=registry)
    return [f"{e.json_path}: {e.message}" for e in v.iter_errors(doc)]


# ---------------------------------------------------------------------------- numbers and their paths
# Lists of items longer than this are cut in tables (the JSON has them all).
MAX_LIST_ROWS = 12
# Short lists of numbers (top-k eigenvalues) are rows; longer ones are curves, plotted instead.
MAX_NUMBERS = 4
# Keys that name the items of a list (quantize settings, sharpness norms and blocks...): paths use
# the name instead of the index, so they survive a change of order. The gate reads them the same way.
NAME_KEYS = ("name", "block", "norm", "form")
# Echoes of the options (the report's "options" has them), not measurements.
SKIP_KEYS = frozenset({"config"})
# Per-draw values kept for the gate's pairing (bank.loss_per_probe, ..._per_sample): their mean is tabulated already.
ITEM_SUFFIXES = ("_per_probe", "_per_sample")


@dataclass
class NumberRow:
    path: str
    value: float | None  # None: not finite
    stderr: float | None = None
    ci: tuple[float, float] | None = None
    n: int | None = None
    corrected: float | None = None  # a bootstrap estimate's bias-corrected value (FD), which its interval is around

    def text(self, digits: int = 4) -> str:
        return format_number(self.value, self.stderr, self.ci, digits, self.corrected)


def is_estimate(node: Any) -> bool:
    return isinstance(node, dict) and "value" in node and bool({"stderr", "ci_low", "ci_high"} & set(node))


def format_number(value, stderr=None, ci=None, digits: int = 4, corrected=None) -> str:
    """'v ± se', else 'v [lo, hi]'. With a bias-corrected value whose interval leaves out v (FD at small N):
    'v ± se (bias-corrected c) [lo, hi]', so that the interval is shown beside the number it is built around."""
    if value is None:
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        s = f"{value:d}"
    else:
        s = f"{value:.{digits}g}"
    if corrected is not None and ci is not None and not ci[0] <= value <= ci[1]:
        pm = f" ± {stderr:.2g}" if stderr is not None else ""
        return f"{s}{pm} (bias-corrected {corrected:.{digits}g}) [{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"
    if stderr is not None:
        return f"{s} ± {stderr:.2g}"
    if ci is not None:
        return f"{s} [{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"
    return s


def number_rows(node: Any, prefix: str = "") -> Iterator[NumberRow]:
    """Every number under `node`, depth first, in the report's own key order."""
    if is_estimate(node):
        lo, hi = node.get("ci_low"), node.get("ci_high")
        yield NumberRow(
            prefix,
            _num(node["value"]),
            _num(node.get("stderr")),
            (lo, hi) if lo is not None and hi is not None else None,
            node.get("n"),
            _num(node.get("bias_corrected")),
        )
        return
    if isinstance(node, dict):
        for k, v in node.items():
            if k in SKIP_KEYS or k.endswith(ITEM_SUFFIXES):
                continue
            yield from number_rows(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list):
        if len(node) > MAX_NUMBERS and all(isinstance(v, (int, float)) or v is None for v in node):
            return  # a curve (one number per step, radius, ...): plotted, not tabulated; the gate still reaches it
        key_of = item_name_key(node)
        for i, v in enumerate(node[:MAX_LIST_ROWS]):
            # Named items by name (the gate accepts both): stable when the list's order changes.
            key = v[key_of] if key_of else str(i)
            yield from number_rows(v, f"{prefix}.{key}" if prefix else key)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield NumberRow(prefix, node)


def all_numbers(node: Any, skip: tuple[str, ...] = (), path: str = "") -> Iterator[tuple[str, float]]:
    """(path, value) of every number under `node`, curves and long lists included (number_rows tabulates a
    report and leaves those out); keys containing a word of `skip` are left out with what is under them.
    For comparing two documents number by number (two runs that must agree)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if not any(word in k for word in skip):
                yield from all_numbers(v, skip, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from all_numbers(v, skip, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, float(node)


def item_name_key(items: list) -> str | None:
    """The key that names every item of `items` uniquely, if there is one."""
    for key in NAME_KEYS:
        names = [v.get(key) if isinstance(v, dict) else None for v in items]
        if items and all(isinstance(n, str) and n and "." not in n for n in names) and len(set(names)) == len(names):
            return key
    return None


def _num(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None
