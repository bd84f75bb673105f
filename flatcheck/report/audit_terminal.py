"""Rich renderables for audit, compare and gate: verdicts first, details after."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .flatten import format_number, number_rows
from .markdown import AREAS, _run_rows

STATUS_STYLE = {"good": "bold green", "fair": "bold yellow", "poor": "bold red", "info": "bold cyan", "skipped": "dim", "error": "bold magenta"}


def verdict_table(report: dict, title: str | None = None) -> Table:
    t = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 1))
    t.add_column("area", style="bold")
    t.add_column("status")
    t.add_column("summary", overflow="fold")
    for v in report.get("verdicts", []):
        t.add_row(v["area"], Text(v["status"], style=STATUS_STYLE.get(v["status"], "")), v["line"])
    return t


def details_table(report: dict, area: str) -> Table | None:
    """The area's numbers that carry an uncertainty (Markdown, HTML and JSON have every number)."""
    section = report.get(area)
    if section is None:
        return None
    t = Table(title=area, title_justify="left", show_lines=False)
    t.add_column("metric (gate path)", style="cyan", overflow="fold")
    t.add_column("value", justify="right", no_wrap=True)
    rows = [r for r in number_rows(section) if r.stderr is not None or r.ci is not None]
    for r in rows:
        t.add_row(f"{area}.{r.path}", r.text())
    return t if rows else None


def audit_renderable(report: dict, details: bool = True) -> Group:
    title = f"flatcheck audit: {report.get('model', {}).get('source', '?')}"
    parts = [verdict_table(report, title)]
    if details:
        parts += [t for t in (details_table(report, a) for a in AREAS) if t is not None]
        run = Table(title="run", title_justify="left", show_header=False, box=None)
        run.add_column(style="bold")
        run.add_column(overflow="fold")
        for k, v in _run_rows(report):
            run.add_row(k, v)
        parts.append(run)
    return Group(*parts)


def compare_renderable(comparison: dict) -> Group:
    names = comparison["models"]
    verdicts = Table(title="flatcheck compare: " + " vs ".join(names), title_justify="left")
    verdicts.add_column("area", style="bold")
    for n in names:
        verdicts.add_column(n, overflow="fold")
    for area, cells in comparison["verdicts"].items():
        verdicts.add_row(area, *cells)
    t = Table(title="numbers (same bank, seeds and settings)", title_justify="left")
    t.add_column("metric", style="cyan", overflow="fold")
    for n in names:
        t.add_column(n, justify="right", no_wrap=True)
    for n in names[1:]:
        t.add_column(f"{n} − {names[0]}", justify="right", no_wrap=True)
    for r in comparison["rows"]:
        diffs = [_diff_text(d, r["stderr_diff"][i]) for i, d in enumerate(r["diff"])]
        t.add_row(r["path"], *r["text"], *diffs)
    return Group(verdicts, t)


def _diff_text(d, se) -> Text:
    if d is None:
        return Text("n/a", style="dim")
    s = format_number(d, se)
    if d > 0:
        s = "+" + s
    # Flag differences larger than two standard errors of the difference.
    style = "bold" if se is not None and se > 0 and abs(d) > 2 * se else ""
    return Text(s, style=style)


def gate_renderable(result) -> Group:
    head = Text("gate passed" if result.passed else f"gate FAILED: {len(result.failures)} of {len(result.rows)} thresholds crossed",
                style="bold green" if result.passed else "bold red")
    t = Table(show_lines=False)
    for col in ("", "metric", "value", "must be", "bound", "baseline", "note"):
        t.add_column(col, overflow="fold")
    for r in result.rows:
        t.add_row(Text("pass", style="green") if r.passed else Text("FAIL", style="bold red"), r.metric, format_number(r.value, r.stderr),
                  r.condition, format_number(r.bound), format_number(r.baseline) if r.baseline is not None else "", r.note)
    return Group(head, t)
