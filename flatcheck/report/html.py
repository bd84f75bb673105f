"""The audit as one self-contained HTML file: inline CSS, plots embedded as base64 PNG, no scripts.

One file so it can be attached to a CI run or mailed; nothing is fetched when it opens.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from ..measures import REGISTRY
from ..results import number_rows
from .markdown import run_rows

CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:980px;\
color:#1b1f24;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;width:100%}\
td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}code{font:13px ui-monospace,Menlo,Consolas,monospace}\
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.good{background:#dafbe1}.fair{background:#fff8c5}.poor{background:#ffebe9}.info{background:#ddf4ff}.skipped,.error{background:#eaeef2}
.badge{display:inline-block;min-width:4.5em;text-align:center;border-radius:1em;padding:0 .6em;font-weight:600}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #d0d7de}img.pixels{image-rendering:pixelated}\
figcaption{color:#57606a;font-size:.9em}
caption{text-align:left;font-weight:600;padding:.3em 0}p.note{color:#57606a;font-size:.9em}\
p.more{font-size:.9em}details{margin-top:2em}summary{cursor:pointer;font-weight:600;font-size:1.1em}
"""


def embed_png(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def audit_html(report: dict, plots: dict[str, str | Path] | None = None, views: dict[str, list] | None = None) -> str:
    """plots: name -> PNG path; a name starting with an area goes in that area's section. views: area -> the
    measure's own view (the rich tables its command prints), shown under its plots. Every number, with the
    path a gate reads, is in a collapsed section at the end: it is long and mostly settings."""
    plots = plots or {}
    views = views or {}
    model = report.get("model", {})
    title = f"flatcheck audit: {model.get('source', '?')}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        "<table><tr><th>area</th><th>verdict</th><th>summary</th></tr>",
    ]
    for v in report.get("verdicts", []):
        cls = escape(v["status"])
        parts.append(
            f"<tr class='{cls}'><td>{escape(v['area'])}</td>"
            f"<td><span class='badge'>{cls}</span></td><td>{escape(v['line'])}</td></tr>"
        )
    parts.append("</table>")
    numbers = []  # (area, its number rows) for the section at the end
    for area in REGISTRY:
        parts.append(f"<h2 id='{area}'>{area}</h2>")
        section = report.get(area)
        if section is None:
            note = next((v["line"] for v in report.get("verdicts", []) if v["area"] == area), "not run")
            parts.append(f"<p><em>{escape(note)}</em></p>")
            continue
        for name, path in plots.items():
            if name.startswith(area):
                parts.append(_figure(name, path))
        parts += [rich_html(part) for part in views.get(area, [])]
        rows = list(number_rows(section))
        if rows:
            numbers.append((area, rows))
            parts.append(f"<p class='more'><a href='#numbers-{area}'>every {area} number, with its gate path</a></p>")
    for name, path in plots.items():
        if not name.startswith(tuple(REGISTRY)):
            parts.append(_figure(name, path))
    parts.append("<h2>run</h2><table>")
    parts += [f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in run_rows(report)]
    parts.append("</table>")
    if numbers:
        count = sum(len(rows) for _, rows in numbers)
        parts.append(
            f"<details id='numbers'><summary>every number, with the path a gate reads ({count} rows)</summary>"
        )
        for area, rows in numbers:
            parts.append(f"<h3 id='numbers-{area}'>{area}</h3>")
            parts.append("<table><tr><th>metric (gate path)</th><th>value</th></tr>")
            parts += [
                f"<tr><td><code>{escape(area + '.' + r.path)}</code></td><td class='num'>{escape(r.text())}</td></tr>"
                for r in rows
            ]
            parts.append("</table>")
        parts.append("</details>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _figure(name: str, path: str | Path) -> str:
    # Sample grids are scaled up pixel by pixel; plots are scaled down smoothly (nearest-pixel shrinking breaks text).
    cls = " class='pixels'" if name == "samples" else ""
    return (
        f"<figure><img{cls} alt='{escape(name)}' src='{embed_png(path)}'>"
        f"<figcaption>{escape(name)}</figcaption></figure>"
    )


def rich_html(part) -> str:
    """A measure's view in HTML: a rich Table as a table (its title the caption), a Text as a paragraph,
    anything else as the terminal would print it."""
    from rich.text import Text

    from ..measures.tables import Table  # every table flatcheck prints is this one (tests/test_tables.py)

    if isinstance(part, Table):
        return _table_html(part)
    if isinstance(part, Text):
        return f"<p class='note'>{_cell_html(part)}</p>"
    import io

    from rich.console import Console

    con = Console(file=io.StringIO(), width=120, color_system=None)
    con.print(part)
    return f"<pre>{escape(con.file.getvalue())}</pre>"


def _cell_html(cell) -> str:
    text = cell.plain if hasattr(cell, "plain") else str(cell)
    html = escape(text).replace("\n", "<br>")
    return f"<strong>{html}</strong>" if "bold" in str(getattr(cell, "style", "")) else html


def _table_html(t) -> str:
    out = ["<table class='view'>"]
    if t.title:
        out.append(f"<caption>{_cell_html(t.title)}</caption>")
    if t.show_header:
        out.append("<tr>" + "".join(f"<th>{_cell_html(c.header)}</th>" for c in t.columns) + "</tr>")
    # A column styled bold (the field names of a two-column table) reads as the row's header.
    heads = ["bold" in str(c.style) for c in t.columns]
    nums = [c.justify == "right" for c in t.columns]
    for row in zip(*(list(c.cells) for c in t.columns)):
        cells = []
        for cell, head, num in zip(row, heads, nums):
            tag, cls = "th" if head else "td", " class='num'" if num else ""
            cells.append(f"<{tag}{cls}>{_cell_html(cell)}</{tag}>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)
