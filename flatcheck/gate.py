"""The CI gate: thresholds on any number of an audit report -> pass or fail.

A rule names a number by a dotted path into the JSON report of `flatcheck audit` or of a
measure command (`quantize.settings.W4A4.relative_mse`; list items by index,
`exposure.runs.0.gap_relative` or `exposure.runs[0].gap_relative`). Items of a list of named
tables are reached by name too (`quantize.settings.W4A4.sample_mse`, or by index:
`quantize.settings.1.sample_mse`). A path that ends on an estimate ({"value", "stderr", ...})
means its value; append `.stderr` for its uncertainty. Each rule bounds the number from above or
below, either absolutely or relative to the same number in a baseline report:

    [[gate.rules]]
    metric = "quantize.settings.W4A4.relative_mse"
    max = 0.25                      # value <= 0.25          (also: min, or op = "<" + value)

    [[gate.rules]]
    metric = "sharpness.hessian.eigen.eigenvalues.0"
    max = 1.2                       # value <= 1.2 x baseline value
    relative = "ratio"              # or "delta": value <= baseline + 1.2

The Markdown and HTML reports print every number next to its path.

A rule may also say how its number's uncertainty counts (gate_uncertainty.py makes the interval):

    mode = "interval"               # fail only when the whole interval is beyond the bound
    confidence = 0.95               # (default; "strict": fail when any of it is; "point": the value alone)

"point" is the default, so a config written before modes gates as it did; [gate] mode / confidence set
the default of every rule. A number the report gives no uncertainty for is judged as a point, and its
row says so; a relative rule's interval is that of the difference to the baseline, paired where both
reports hold per-draw values drawn with the same seeds on the same bank, independent otherwise.

Config lives in `flatcheck.toml` (top level) or in `[tool.flatcheck]` of pyproject.toml. Every
config mistake raises InputError with one line (exit 2); the gate itself returns a GateResult whose
rows say which thresholds were crossed (the CLI exits 1 then). Before an audit, `check_rules` holds
every rule's path to what a run with its options will produce (the report schema and
audit.report_paths), so a path no such run has is refused before the work, not after it.
"""

from __future__ import annotations

import difflib
import json
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import InputError
from .gate_uncertainty import DEFAULT_LEVEL, Measured, difference, interval

if TYPE_CHECKING:
    from .measures.base import Items

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib  # type: ignore[no-redef]

# op name -> (function, symbol). max/min are the friendly spellings of <= and >=.
OPERATORS = {
    "<": (operator.lt, "<"),
    "<=": (operator.le, "<="),
    ">": (operator.gt, ">"),
    ">=": (operator.ge, ">="),
}
RELATIVE_MODES = ("ratio", "delta")
# How a rule treats its number's uncertainty (gate_uncertainty.py makes the interval):
#   point     the value alone (the default: what a gate without uncertainty did)
#   interval  fails only when the whole interval is beyond the bound (noise alone rarely fails it)
#   strict    fails when any of the interval crosses the bound (a regression rarely slips through)
MODES = ("point", "interval", "strict")
DEFAULT_CONFIDENCE = 0.95
_RULE_KEYS = {"metric", "max", "min", "op", "value", "relative", "name", "mode", "confidence"}
_GATE_KEYS = {"rules", "baseline", "mode", "confidence"}  # [gate] mode/confidence: defaults of every rule
# A number's key -> the sibling list of the per-draw values it is the mean of (pairing against a baseline): draw i
# of two reports with the same seeds and bank used the same probe, noise or direction.
PAIRED_ITEMS = {
    "increase": "per_draw",  # sharpness.average.*.points.*: one value per +-delta draw
    "loss": "loss_per_probe",  # bank
    "gap_total": "gap_total_per_sample",  # exposure.runs.*
    "variance_error_mean": "variance_error_mean_per_sample",  # exposure.runs.*
    "relative_mse": "relative_mse_per_sample",  # quantize.settings.*
}
CONFIG_NAMES = ("flatcheck.toml", "pyproject.toml")
EXAMPLE_PATH = "quantize.settings.W4A4.relative_mse"  # in every error that shows a path (a test resolves it)


@dataclass
class Rule:
    metric: str  # dotted path into the report
    op: str  # one of OPERATORS: the number must satisfy `value op bound`
    threshold: float
    relative: str | None = None  # None (absolute), "ratio" or "delta" against the baseline
    name: str | None = None
    mode: str = "point"  # one of MODES
    confidence: float = DEFAULT_CONFIDENCE  # of the interval (interval and strict modes; shown in every mode)

    def describe(self) -> str:
        if self.relative == "ratio":
            return f"{self.op} {self.threshold:g} x baseline"
        if self.relative == "delta":
            return f"{self.op} baseline {'+' if self.threshold >= 0 else '-'} {abs(self.threshold):g}"
        return f"{self.op} {self.threshold:g}"


@dataclass
class GateConfig:
    rules: list[Rule]
    baseline: str | None = None  # a JSON report or a checkpoint, from the config
    audit: dict = field(default_factory=dict)  # audit options ([audit] table) for the model the gate audits
    source: str = ""  # the file it came from


@dataclass
class GateRow:
    metric: str
    condition: str  # e.g. "<= 0.25" or "<= 1.2 x baseline"
    value: float | None  # None: the report holds null (not finite)
    stderr: float | None
    bound: float | None  # the number the value was compared with
    baseline: float | None
    passed: bool
    name: str | None = None
    note: str = ""
    mode: str = "point"  # as the rule asked
    confidence: float = DEFAULT_CONFIDENCE
    judged: str = "point"  # as judged: "point" where the report has no uncertainty for an interval/strict rule
    low: float | None = None  # the interval on the value's scale (a relative rule's carries the baseline's too)
    high: float | None = None
    interval: str = ""  # how the interval was made ("" when there is none)
    pairing: str | None = None  # relative rules with an interval: "paired" or "independent"
    reason: str = ""  # why it passed or failed, in words

    def text(self) -> str:
        """The row in one line (JUnit failure messages, CI annotations)."""
        label = f"{self.name}: " if self.name else ""
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        ci = "" if self.low is None else f" [{self.low:.4g}, {self.high:.4g}]"
        return f"{label}{self.metric} = {value}{ci} must be {self.condition} ({self.judged}): {self.reason}"


@dataclass
class GateResult:
    passed: bool
    rows: list[GateRow]
    config: str
    baseline: str | None

    @property
    def failures(self) -> list[GateRow]:
        return [r for r in self.rows if not r.passed]


# ---------------------------------------------------------------------------- config
def find_config(start: Path | None = None) -> Path | None:
    """flatcheck.toml, else a pyproject.toml with [tool.flatcheck], in `start` (default: cwd)."""
    start = Path.cwd() if start is None else Path(start)
    for name in CONFIG_NAMES:
        p = start / name
        if p.is_file() and (name == "flatcheck.toml" or "flatcheck" in _read_toml(p).get("tool", {})):
            return p
    return None


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read gate config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"gate config {path} is not valid TOML: {exc}") from None


def load_config(path: str | Path | None = None) -> GateConfig:
    """Read a gate config: an explicit file, or the one `find_config` finds. InputError if none."""
    if path is None:
        found = find_config()
        if found is None:
            raise InputError(
                "no gate config: pass --config FILE or add flatcheck.toml / [tool.flatcheck] in pyproject.toml"
            )
        path = found
    path = Path(path)
    if not path.is_file():
        raise InputError(f"gate config {path} does not exist")
    doc = _read_toml(path)
    if path.name == "pyproject.toml":
        doc = doc.get("tool", {}).get("flatcheck")
        if doc is None:
            raise InputError(f"{path} has no [tool.flatcheck] table")
    return parse_config(doc, str(path))


def load_audit_table(path: str | Path) -> dict:
    """The [audit] table of a config file (flatcheck.toml, or pyproject.toml's [tool.flatcheck]): the
    audit's options and [audit.<measure>] tables, for `flatcheck audit --config` (no [gate] needed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config {path} does not exist")
    doc = _read_toml(path)
    if path.name == "pyproject.toml":
        doc = doc.get("tool", {}).get("flatcheck") or {}
    audit = doc.get("audit", {}) if isinstance(doc, dict) else None
    if not isinstance(audit, dict):
        raise InputError(f"{path}: [audit] must be a table of audit options")
    return audit


def parse_config(doc: dict, source: str = "<config>") -> GateConfig:
    """The [gate] and [audit] tables of a config document -> GateConfig (InputError on mistakes)."""
    if not isinstance(doc, dict):
        raise InputError(f"{source}: the flatcheck config must be a table")
    unknown = set(doc) - {"gate", "audit"}
    if unknown:
        raise InputError(f"{source}: unknown table(s) {', '.join(sorted(unknown))} (expected [gate] and [audit])")
    gate = doc.get("gate")
    if not isinstance(gate, dict):
        raise InputError(f"{source}: missing [gate] table with [[gate.rules]]")
    audit = doc.get("audit", {})
    if not isinstance(audit, dict):
        raise InputError(f"{source}: [audit] must be a table of audit options")
    extra = set(gate) - _GATE_KEYS
    if extra:
        raise InputError(
            f"{source}: unknown key(s) in [gate]: {', '.join(sorted(extra))} (expected {', '.join(sorted(_GATE_KEYS))})"
        )
    defaults = {
        "mode": _parse_mode(gate.get("mode", "point"), f"{source}: [gate]"),
        "confidence": _parse_confidence(gate.get("confidence", DEFAULT_CONFIDENCE), f"{source}: [gate]"),
    }
    raw_rules = gate.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise InputError(f"{source}: [gate] has no rules (add [[gate.rules]] tables with metric and max/min)")
    baseline = gate.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise InputError(f"{source}: gate.baseline must be a path or model name (a string)")
    rules = [parse_rule(r, f"{source}: rule {i + 1}", **defaults) for i, r in enumerate(raw_rules)]
    check_satisfiable(rules, source)
    return GateConfig(rules, baseline, dict(audit), source)


def check_satisfiable(rules: list[Rule], source: str) -> None:
    """InputError when two rules on the same number (and the same baseline mode) bound it from above and below
    with nothing in between: such a gate fails whatever the run measures."""
    for i, upper in enumerate(rules):
        for j, lower in enumerate(rules):
            if (upper.metric, upper.relative) != (lower.metric, lower.relative):
                continue
            if upper.op not in ("<", "<=") or lower.op not in (">", ">="):
                continue
            strict = upper.op == "<" or lower.op == ">"
            if upper.threshold < lower.threshold or (strict and upper.threshold == lower.threshold):
                a, b = sorted((i, j))
                raise InputError(
                    f"{source}: rules {a + 1} and {b + 1} on '{upper.metric}' can never both hold "
                    f"({lower.describe()} and {upper.describe()})"
                )


def _parse_mode(mode: Any, where: str) -> str:
    if mode not in MODES:
        raise InputError(f"{where}: mode must be one of {', '.join(MODES)} (got {mode!r})")
    return mode


def _parse_confidence(c: Any, where: str) -> float:
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < 1:
        raise InputError(f"{where}: confidence must be a number between 0 and 1, e.g. 0.95 (got {c!r})")
    return float(c)


def parse_rule(raw: Any, where: str, mode: str = "point", confidence: float = DEFAULT_CONFIDENCE) -> Rule:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a rule must be a table (metric = ..., max = ...)")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(_RULE_KEYS))})"
        )
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        raise InputError(f"{where}: 'metric' must be a dotted path into the report, e.g. {EXAMPLE_PATH}")
    metric = metric.strip()
    parse_path(metric, where)  # syntax check now, not at gate time
    bounds = [k for k in ("max", "min", "op") if k in raw]
    if len(bounds) != 1:
        raise InputError(f"{where} ({metric}): give exactly one of max, min or op (+ value)")
    kind = bounds[0]
    if kind == "op":
        op = raw["op"]
        if op not in OPERATORS:
            raise InputError(f"{where} ({metric}): op must be one of {', '.join(OPERATORS)} (got {op!r})")
        if "value" not in raw:
            raise InputError(f"{where} ({metric}): op needs a value")
        threshold = raw["value"]
    else:
        if "value" in raw:
            raise InputError(f"{where} ({metric}): 'value' goes with 'op', not with {kind}")
        op, threshold = ("<=" if kind == "max" else ">="), raw[kind]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise InputError(f"{where} ({metric}): the threshold must be a finite number (got {threshold!r})")
    relative = raw.get("relative")
    if relative is not None and relative not in RELATIVE_MODES:
        raise InputError(f"{where} ({metric}): relative must be 'ratio' or 'delta' (got {relative!r})")
    if relative == "ratio" and threshold <= 0:  # the bound is threshold x the baseline: 0 or less bounds nothing real
        raise InputError(
            f"{where} ({metric}): a ratio threshold must be > 0 (got {threshold!r}): the bound is that many times the "
            "baseline's value; use relative = 'delta' for an offset"
        )
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise InputError(f"{where} ({metric}): name must be a string")
    mode = _parse_mode(raw.get("mode", mode), f"{where} ({metric})")
    confidence = _parse_confidence(raw.get("confidence", confidence), f"{where} ({metric})")
    return Rule(metric, op, float(threshold), relative, name, mode, confidence)


# ---------------------------------------------------------------------------- paths
_PATH_TOKEN = re.compile(r"[^.\[\]]+|\[\d+\]")


def parse_path(path: str, where: str = "metric") -> list[str | int]:
    """'a.b[2].c' or 'a.b.2.c' -> ['a', 'b', 2, 'c'] (digits are list indices or dict keys)."""
    if not re.fullmatch(r"[^.\[\]]+(\[\d+\])*(\.[^.\[\]]+(\[\d+\])*)*", path):
        raise InputError(f"{where}: '{path}' is not a dotted path (e.g. {EXAMPLE_PATH})")
    return [int(tok[1:-1]) if tok.startswith("[") else tok for tok in _PATH_TOKEN.findall(path)]


def lookup(report: dict, path: str) -> tuple[float | None, float | None]:
    """(value, stderr) of the number at `path`; InputError naming what exists when it is not there."""
    m = measure(report, path)
    return m.value, m.stderr


def measure(report: dict, path: str) -> Measured:
    """The number at `path` with what the report says of its uncertainty (stderr, a stored interval and its
    level, the per-draw values it is the mean of); InputError naming what exists when it is not there."""
    node, parents, last = _walk(report, path)
    if is_estimate_node(node):
        value, stderr = _number(node["value"], path), node.get("stderr")
        lo, hi = node.get("ci_low"), node.get("ci_high")
        bootstrap = "bias_corrected" in node  # FD and its paired changes: their stderr is the resamples' sd
        level = next((p["ci_level"] for p in reversed(parents) if isinstance(p, dict) and "ci_level" in p), None)
        n = node.get("n")
        return Measured(
            value,
            float(stderr) if _finite(stderr) else None,
            n if isinstance(n, int) and not isinstance(n, bool) else None,
            (float(lo), float(hi)) if _finite(lo) and _finite(hi) else None,
            float(level) if _finite(level) else (DEFAULT_LEVEL if bootstrap else None),
            bootstrap,
            _items(node["value"], parents[-1] if parents else None, last),
        )
    value = _number(node, path)
    items = _items(value, parents[-1] if parents else None, last)
    if items is not None:  # a plain mean whose draws the report keeps (quantize relative_mse): their s.e.
        n = len(items)
        mean = sum(items) / n
        se = math.sqrt(sum((x - mean) ** 2 for x in items) / (n - 1) / n)
        return Measured(value, se, n, items=items)
    return Measured(value)


def is_estimate_node(node: Any) -> bool:
    return isinstance(node, dict) and "value" in node


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _number(node: Any, path: str) -> float | None:
    if node is None:
        return None  # null = not finite in our JSON
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        kind = "a table" if isinstance(node, dict) else "a list" if isinstance(node, list) else type(node).__name__
        raise InputError(f"metric '{path}' is {kind}, not a number")
    return float(node)


def _items(value: Any, parent: Any, key: str | None) -> list[float] | None:
    """The per-draw values beside a number (PAIRED_ITEMS), when they are finite and their mean is its value up to
    the rounding the report keeps them at (core.stats.per_item: 6 significant digits)."""
    sibling = PAIRED_ITEMS.get(str(key))
    items = parent.get(sibling) if isinstance(parent, dict) and sibling else None
    if not isinstance(items, list) or len(items) < 2 or not all(_finite(x) for x in items) or not _finite(value):
        return None
    mean = sum(items) / len(items)
    scale = sum(abs(x) for x in items) / len(items)
    return [float(x) for x in items] if abs(mean - value) <= 1e-5 * scale + 1e-12 else None


def _walk(report: dict, path: str) -> tuple[Any, list, str | None]:
    """(the node at `path`, the nodes above it from the root, the last key)."""
    node: Any = report
    walked: list[str] = []
    parents: list = []
    for key in parse_path(path):
        parents.append(node)
        if isinstance(node, list):
            idx = key if isinstance(key, int) else (int(key) if str(key).isdigit() else None)
            if idx is None:  # a list of named items (quantize.settings.W4A4): pick by name
                from .results import item_name_key

                name_key = item_name_key(node)
                names = [item[name_key] for item in node] if name_key else []
                idx = names.index(key) if key in names else None
                if idx is None:
                    have = f"names: {', '.join(names[:12])}" if names else f"use an index 0..{len(node) - 1}"
                    raise InputError(f"metric '{path}': no '{key}' in '{'.'.join(walked) or 'report'}' ({have})")
            if not 0 <= idx < len(node):
                raise InputError(
                    f"metric '{path}': '{'.'.join(walked) or 'report'}' is a list of {len(node)}; use an index "
                    f"0..{len(node) - 1}"
                )
            node = node[idx]
        elif isinstance(node, dict):
            k = str(key)
            if k not in node:
                have = ", ".join(sorted(map(str, node))[:12]) or "nothing"
                raise InputError(f"metric '{path}': no '{k}' in '{'.'.join(walked) or 'report'}' (it has: {have})")
            node = node[k]
        elif node is None:
            raise InputError(
                f"metric '{path}': '{'.'.join(walked)}' was not measured in this report (skipped or failed)"
            )
        else:
            raise InputError(f"metric '{path}': '{'.'.join(walked)}' is a number, not a table")
        walked.append(str(key))
    return node, parents, (walked[-1] if walked else None)


# ---------------------------------------------------------------------------- paths a run will have
def check_metric(path: str, produced: Mapping[str, Items], where: str = "metric") -> None:
    """InputError unless a report of a run with these options can hold a number at `path`, known before the run:
    the report schema (results.schema: an object's listed properties are the keys it can have, tests/
    test_gate_paths.py checks them against real reports) and what the options produce (`produced`:
    audit.report_paths: which list items, how many, which parts stay empty). One line naming the path and the
    closest paths that exist. A part the schema leaves open (options.configs) is not checked."""
    tokens = parse_path(path, where)
    found = _problem([str(t) for t in tokens], produced)
    if found is None:
        return
    problem, closest = found
    hint = f" (closest: {', '.join(closest)})" if closest else ""
    raise InputError(f"{where}: '{path}': {problem}{hint}")


_NUMBER_TYPES = {"number", "integer"}


def _problem(keys: list[str], produced: Mapping[str, Items], suggest: bool = True) -> tuple[str, list[str]] | None:
    """(what is wrong, the closest paths that exist) for the path `keys`, or None when a run can have it."""
    from .results import NAME_KEYS, schema

    root = schema("report")
    node, walked, pattern = root, [], []

    def near(candidates, rest: list[str], limit: int = 3) -> list[str]:
        if not suggest:
            return []
        picks = difflib.get_close_matches(keys[len(walked)], [str(c) for c in candidates], n=limit, cutoff=0.5)
        picks = picks or [str(c) for c in list(candidates)[:limit]]
        out = []
        for c in picks:
            full = [*walked, c, *rest]
            out.append(".".join(full) if _problem(full, produced, suggest=False) is None else ".".join([*walked, c]))
        return out

    for i, key in enumerate(keys):
        node = _resolve(root, node)
        at = ".".join(walked) or "report"
        items = produced.get(".".join(pattern))
        kind = _kind(node)
        if kind == "array":
            names = items.names if items is not None else None
            limit = len(names) if names is not None else items.count if items is not None else None
            why = f" ({items.why})" if items is not None and items.why else ""
            if key.isdigit():
                if limit is not None and int(key) >= limit:
                    where = f"'{at}' has {limit} item{'s' if limit != 1 else ''} in a run with these options{why}"
                    return where, near(names or range(limit), keys[i + 1 :])
            elif names is not None:
                if key not in names:
                    return f"no '{key}' in '{at}' in a run with these options{why}", near(names, keys[i + 1 :])
            elif not any(k in _resolve(root, node.get("items", {})).get("properties", {}) for k in NAME_KEYS):
                return f"'{at}' is a list: use an index (e.g. {at}.0)", []
            node = node.get("items", {})
            pattern.append("*")
        elif kind == "object":
            props, extra = node.get("properties"), node.get("additionalProperties")
            if props is not None and key in props:
                node = props[key]
            elif isinstance(extra, dict):
                if items is not None and items.names is not None and key not in items.names:
                    return f"no '{key}' in '{at}' in a run with these options", near(items.names, keys[i + 1 :])
                node = extra
            elif props is not None:
                return f"no '{key}' in '{at}'", near(props, keys[i + 1 :])
            else:
                return None  # a table whose keys are not known before the run (options.configs.<measure>)
            pattern.append(key)
        elif kind == "number":
            return f"'{at}' is a number: nothing is under it", []
        elif kind == "text":
            return f"'{at}' is {_describe(node)}, not a number", []
        else:
            return None  # the schema does not say what is there
        walked.append(key)
        here = produced.get(".".join(pattern))
        if here is not None and here.absent:
            return f"'{'.'.join(walked)}' is empty in a run with these options: {here.absent}", []
    node = _resolve(root, node)
    kind = _kind(node)
    if kind in ("number", "unknown") or node is root["$defs"].get("estimate"):
        return None
    at = ".".join(walked)
    if kind == "array":
        return f"'{at}' is a list, not a number: add an index (e.g. {at}.0)", []
    if kind == "object":
        props = node.get("properties") or {}
        numeric = [k for k, v in props.items() if _problem([*keys, k], produced, suggest=False) is None]
        return f"'{at}' is a table, not a number", [f"{at}.{k}" for k in numeric[:3]] if suggest else []
    return f"'{at}' is {_describe(node)}, not a number", []


def _resolve(root: dict, node: dict) -> dict:
    """A schema node with its $ref followed and a oneOf/anyOf of null and one thing reduced to that thing."""
    for _ in range(8):
        if "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
            continue
        branches = [b for b in node.get("oneOf", node.get("anyOf", [])) if b.get("type") != "null"]
        if branches:
            kinds = [_kind(_resolve(root, b)) for b in branches]
            # several alternatives: a number if any is one, else the first table or list
            pick = next((b for b, k in zip(branches, kinds) if k == "number"), None)
            node = pick or next((b for b, k in zip(branches, kinds) if k in ("object", "array")), branches[0])
            continue
        return node
    return node


def _kind(node: dict) -> str:
    types = node.get("type")
    types = set(types) if isinstance(types, list) else {types} if types else set()
    if "$ref" in node or "oneOf" in node or "anyOf" in node:
        return "unknown"
    if "object" in types or "properties" in node or "additionalProperties" in node:
        return "object"
    if "array" in types:
        return "array"
    if types & _NUMBER_TYPES:
        return "number"
    if types & {"string", "boolean"} or "enum" in node or "const" in node:
        return "text"
    return "unknown"


def _describe(node: dict) -> str:
    types = node.get("type")
    return "a boolean" if types == "boolean" or (isinstance(types, list) and "boolean" in types) else "text"


def check_rules(cfg: GateConfig, produced: Mapping[str, Items]) -> None:
    """Every rule's metric against what a run with these options produces (before the run)."""
    for i, rule in enumerate(cfg.rules):
        check_metric(rule.metric, produced, where=f"{cfg.source}: rule {i + 1}")


# ---------------------------------------------------------------------------- the gate
def load_report(path: str | Path) -> dict:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read report {p}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p} is not a JSON report: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{p} is not a flatcheck report (expected a JSON object)")
    return doc


def evaluate(
    rules: list[Rule], report: dict, baseline: dict | None = None, *, config: str = "", baseline_name: str | None = None
) -> GateResult:
    """Check every rule against `report` (and `baseline` for relative rules). Never raises on a crossed threshold."""
    rows = []
    pairable = baseline is not None and same_draws(report, baseline)
    for rule in rules:
        value = measure(report, rule.metric)
        base = None
        if rule.relative:
            if baseline is None:
                raise InputError(
                    f"rule on '{rule.metric}' is relative to a baseline: "
                    "pass --baseline REPORT.json|MODEL or set gate.baseline"
                )
            base = measure(baseline, rule.metric)
        rows.append(_check(rule, value, base, pairable))
    return GateResult(all(r.passed for r in rows), rows, config, baseline_name)


def same_draws(report: dict, baseline: dict) -> bool:
    """Both reports drew with the same seeds on the same probe bank (its size, seed, source and timesteps), so
    draw i of one and draw i of the other used the same random numbers: their differences can be paired."""
    seeds, bank_a, bank_b = report.get("seeds"), report.get("bank"), baseline.get("bank")
    if not seeds or seeds != baseline.get("seeds") or not isinstance(bank_a, dict) or not isinstance(bank_b, dict):
        return False
    keys = ("n", "seed", "source", "t_range")
    return all(bank_a.get(k) == bank_b.get(k) for k in keys)


_NEGATION = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}
WITHIN_NOISE = "within noise"  # ends the reason of a rule that held only thanks to its interval


def _check(rule: Rule, m: Measured, base: Measured | None, pairable: bool = False) -> GateRow:
    fn, sym = OPERATORS[rule.op]
    row = GateRow(
        rule.metric,
        rule.describe(),
        m.value,
        m.stderr,
        None,
        base.value if base is not None else None,
        False,
        rule.name,
        mode=rule.mode,
        confidence=rule.confidence,
    )
    if rule.relative and row.baseline is None:
        row.note = row.reason = "baseline value is not finite"
        return row
    if rule.relative == "ratio":
        if row.baseline <= 0:  # a ratio bound flips or vanishes for non-positive baselines
            row.note = row.reason = f"baseline {row.baseline:g} is not positive: use relative = 'delta'"
            return row
        row.bound = row.baseline * rule.threshold
    elif rule.relative == "delta":
        row.bound = row.baseline + rule.threshold
    else:
        row.bound = rule.threshold
    value, bound = m.value, row.bound
    if value is None:
        row.note = row.reason = "value is not finite"
        return row
    # The interval on the value's scale; a relative rule's carries the baseline's uncertainty too.
    if rule.relative:
        k = rule.threshold if rule.relative == "ratio" else 1.0
        iv, pairing = difference(m, base, k, rule.confidence, pairable)
        if iv is not None:
            centre = value - k * base.value
            row.low, row.high, row.interval, row.pairing = (
                value - (centre - iv.low),
                value + (iv.high - centre),
                (iv.method),
                pairing,
            )
    else:
        iv = interval(m, rule.confidence)
        if iv is not None:
            row.low, row.high, row.interval = iv.low, iv.high, iv.method
    point_ok = bool(fn(value, bound))
    said = f"value {value:.4g} {sym if point_ok else _NEGATION[rule.op]} {bound:.4g}"
    if rule.mode == "point" or row.low is None:
        row.judged, row.passed, row.reason = "point", point_ok, said
        if rule.mode != "point":
            row.note = f"no uncertainty in the report: judged as a point, not as {rule.mode}"
        return row
    row.judged = rule.mode
    upper = rule.op in ("<", "<=")
    # interval: the end most favourable to the rule decides (fail only when all of it is beyond the bound);
    # strict: the least favourable end decides (fail when any of it is).
    use_low = upper == (rule.mode == "interval")
    end = row.low if use_low else row.high
    row.passed = bool(fn(end, bound))
    level = f"{rule.confidence:.0%} interval"
    end_text = f"{'low' if use_low else 'high'} end {end:.4g}"
    if rule.mode == "interval":
        if not row.passed:
            row.reason = f"the whole {level} is {_NEGATION[rule.op]} {bound:.4g} ({end_text})"
        elif point_ok:
            row.reason = said
        else:
            row.reason = f"{said}, but the {level} reaches the bound ({end_text}): {WITHIN_NOISE}"
    else:
        if row.passed:
            row.reason = f"the whole {level} is {sym} {bound:.4g} ({end_text})"
        elif point_ok:
            row.reason = f"{said}, but the {level} crosses the bound ({end_text})"
        else:
            row.reason = said
    return row
