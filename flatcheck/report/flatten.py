"""A JSON report -> rows of (dotted path, number, uncertainty).

Markdown, HTML and `compare` all show numbers this way, and the paths are exactly the ones
the gate accepts, so a user can copy a row's path into flatcheck.toml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

# Lists of items longer than this are cut in tables (the JSON has them all).
MAX_LIST_ROWS = 12
# Short lists of numbers (top-k eigenvalues) are rows; longer ones are curves, plotted instead.
MAX_NUMBERS = 4
# Keys that name the items of a list (quantize settings, sharpness norms and blocks...): paths use
# the name instead of the index, so they survive a change of order. The gate reads them the same way.
NAME_KEYS = ("name", "block", "norm", "form")
# Echoes of the options (the report's "options" has them), not measurements.
SKIP_KEYS = frozenset({"config"})


@dataclass
class NumberRow:
    path: str
    value: float | None  # None: not finite
    stderr: float | None = None
    ci: tuple[float, float] | None = None
    n: int | None = None

    def text(self, digits: int = 4) -> str:
        return format_number(self.value, self.stderr, self.ci, digits)


def is_estimate(node: Any) -> bool:
    return isinstance(node, dict) and "value" in node and bool({"stderr", "ci_low", "ci_high"} & set(node))


def format_number(value, stderr=None, ci=None, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        s = f"{value:d}"
    else:
        s = f"{value:.{digits}g}"
    if stderr is not None:
        return f"{s} ± {stderr:.2g}"
    if ci is not None:
        return f"{s} [{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"
    return s


def number_rows(node: Any, prefix: str = "") -> Iterator[NumberRow]:
    """Every number under `node`, depth first, in the report's own key order."""
    if is_estimate(node):
        lo, hi = node.get("ci_low"), node.get("ci_high")
        yield NumberRow(prefix, _num(node["value"]), _num(node.get("stderr")), (lo, hi) if lo is not None and hi is not None else None, node.get("n"))
        return
    if isinstance(node, dict):
        for k, v in node.items():
            if k in SKIP_KEYS:
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


def item_name_key(items: list) -> str | None:
    """The key that names every item of `items` uniquely, if there is one."""
    for key in NAME_KEYS:
        names = [v.get(key) if isinstance(v, dict) else None for v in items]
        if items and all(isinstance(n, str) and n and "." not in n for n in names) and len(set(names)) == len(names):
            return key
    return None


def _num(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None
