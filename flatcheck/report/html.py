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
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #d0d7de;image-rendering:pixelated}\
figcaption{color:#57606a;font-size:.9em}
"""


def embed_png(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def audit_html(report: dict, plots: dict[str, str | Path] | None = None) -> str:
    """plots: name -> PNG path; a name starting with an area goes in that area's section."""
    plots = plots or {}
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
    for area in REGISTRY:
        parts.append(f"<h2 id='{area}'>{area}</h2>")
        section = report.get(area)
        if section is None:
            note = next((v["line"] for v in report.get("verdicts", []) if v["area"] == area), "not run")
            parts.append(f"<p><em>{escape(note)}</em></p>")
            continue
        for name, path in plots.items():
            if name.startswith(area):
                parts.append(
                    f"<figure><img alt='{escape(name)}' src='{embed_png(path)}'>"
                    f"<figcaption>{escape(name)}</figcaption></figure>"
                )
        parts.append("<table><tr><th>metric (gate path)</th><th>value</th></tr>")
        for r in number_rows(section):
            parts.append(
                f"<tr><td><code>{escape(area + '.' + r.path)}</code></td><td class='num'>{escape(r.text())}</td></tr>"
            )
        parts.append("</table>")
    for name, path in plots.items():
        if not name.startswith(tuple(REGISTRY)):
            parts.append(
                f"<figure><img alt='{escape(name)}' src='{embed_png(path)}'>"
                f"<figcaption>{escape(name)}</figcaption></figure>"
            )
    parts.append("<h2>run</h2><table>")
    parts += [f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in run_rows(report)]
    parts.append("</table></body></html>\n")
    return "\n".join(parts)
