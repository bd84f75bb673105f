"""Where a report goes: terminal, JSON, Markdown (+ $GITHUB_STEP_SUMMARY), HTML, plots, a measure's files."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from ..measures import REGISTRY
from ..results import to_jsonable, write_json


def write_text(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_reports(
    report,
    con,
    *,
    json=None,
    out: Path | None = None,
    markdown: Path | None = None,
    html: Path | None = None,
    details: bool = True,
) -> dict:
    """The audit's outputs, every requested form; returns the JSON document (with artifact paths filled in)."""
    from .html import audit_html
    from .markdown import audit_markdown, write_step_summary
    from .plots import make_plots
    from .terminal import audit_renderable

    plots = {}
    if out is not None:
        out = Path(out)
        plots = make_plots(report, out / "plots")
        report.artifacts = {name: str(p) for name, p in plots.items()}
        report.artifacts.update(
            json=str(out / "audit.json"), markdown=str(out / "audit.md"), html=str(out / "audit.html")
        )
    for dest in (markdown, html):
        if dest is not None:
            report.artifacts[Path(dest).suffix.lstrip(".") or "file"] = str(dest)
    doc = to_jsonable(report)
    model = doc.get("model", {}).get("source", "")
    # The HTML shows each measure's own tables (its command's view) under its plots.
    results = getattr(report, "results", {}) if out is not None or html is not None else {}
    views = {name: REGISTRY[name].view(r, model) for name, r in results.items() if r is not None}
    if out is not None:
        write_json(doc, out / "audit.json")
        # Markdown next to its plots: image links are relative to the report's folder.
        write_text(out / "audit.md", audit_markdown(doc, {k: str(Path(p).relative_to(out)) for k, p in plots.items()}))
        write_text(out / "audit.html", audit_html(doc, plots, views))
    if markdown is not None:
        write_text(markdown, audit_markdown(doc))
    if html is not None:
        if not plots:  # the HTML embeds its plots, so they need not outlive it
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                write_text(html, audit_html(doc, make_plots(report, Path(tmp)), views))
        else:
            write_text(html, audit_html(doc, plots, views))
    if json:
        write_json(doc, json)
    write_step_summary(audit_markdown(doc))
    # With --json - the JSON owns stdout and `con` is stderr: verdicts only there.
    con.print(audit_renderable(report, doc, details=details and json != "-"))
    written = [out / "audit.json", out / "audit.md", out / "audit.html"] if out is not None else []
    written += [p for p in (markdown, html, json) if p is not None and str(p) != "-"]
    if written:  # the last line says where every file went
        con.print(f"reports: {', '.join(escape(str(p)) for p in written)}", highlight=False)
    return doc


def write_measure_outputs(
    report, name: str, con, *, json=None, out: Path | None = None, extra_files: list[Path] = ()
) -> dict:
    """A measure command's outputs: the measure's own view (on stderr with --json -), the report
    document as JSON (the audit's, with the other measures null), and the measure's files in --out."""
    from .terminal import foreign_samples, run_table

    measure = REGISTRY[name]
    result = report.results[name]
    model = report.model.get("source", "")
    files = list(extra_files)
    if out is not None and measure.save is not None:
        files = measure.save(result, Path(out), model) + files
    report.artifacts.update({Path(f).name: str(f) for f in files})
    doc = to_jsonable(report)
    if json:
        write_json(doc, json)
    for part in measure.view(result, model):
        con.print(part)
    if foreign_samples(doc) is not None:
        con.print(foreign_samples(doc))
    con.print(f"[bold]{name}[/bold]: {escape(report.verdict(name).line)}", highlight=False)
    con.print(run_table(doc))
    if files:
        con.print(f"files in {out}/: {', '.join(Path(f).name for f in files)}")
    if json and str(json) != "-":
        con.print(f"report: {escape(str(json))}", highlight=False)
    return doc
