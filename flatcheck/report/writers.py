"""Where an audit goes: terminal, JSON, Markdown (+ $GITHUB_STEP_SUMMARY), HTML, plots."""

from __future__ import annotations

import contextlib
from pathlib import Path

from .jsonio import to_jsonable, write_json


@contextlib.contextmanager
def progress_bar(con):
    """A rich progress display on `con`; yields progress(task, done, total) for the measures."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=con, transient=True) as bar:
        def update(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        yield update


def write_text(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_reports(report, con, *, json=None, out: Path | None = None, markdown: Path | None = None, html: Path | None = None,
                  details: bool = True) -> dict:
    """Write every requested form; returns the JSON document (with artifact paths filled in)."""
    from .audit_terminal import audit_renderable
    from .html import audit_html
    from .markdown import audit_markdown, write_step_summary
    from .plots import make_plots

    plots = {}
    if out is not None:
        out = Path(out)
        plots = make_plots(report, out / "plots")
        report.artifacts = {name: str(p) for name, p in plots.items()}
        report.artifacts.update(json=str(out / "audit.json"), markdown=str(out / "audit.md"), html=str(out / "audit.html"))
    for dest in (markdown, html):
        if dest is not None:
            report.artifacts[Path(dest).suffix.lstrip(".") or "file"] = str(dest)
    doc = to_jsonable(report)
    if out is not None:
        write_json(doc, out / "audit.json")
        # Markdown next to its plots: image links are relative to the report's folder.
        write_text(out / "audit.md", audit_markdown(doc, {k: str(Path(p).relative_to(out)) for k, p in plots.items()}))
        write_text(out / "audit.html", audit_html(doc, plots))
    if markdown is not None:
        write_text(markdown, audit_markdown(doc))
    if html is not None:
        if not plots:  # the HTML embeds its plots, so they need not outlive it
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                write_text(html, audit_html(doc, make_plots(report, Path(tmp))))
        else:
            write_text(html, audit_html(doc, plots))
    if json:
        write_json(doc, json)
    write_step_summary(audit_markdown(doc))
    # With --json - the JSON owns stdout and `con` is stderr: verdicts only there.
    con.print(audit_renderable(doc, details=details and json != "-"))
    if out is not None:
        con.print(f"reports: {out / 'audit.json'}, {out / 'audit.md'}, {out / 'audit.html'}")
    return doc
