"""Rich renderables for the terminal: info, the audit (verdicts, then each measure's own view), compare and gate."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from ..core.info import CheckpointInfo
from ..measures import REGISTRY
from ..measures.tables import Table
from ..results import format_number
from .markdown import run_rows


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def info_table(info: CheckpointInfo) -> Table:
    t = Table(title=f"flatcheck info: {info.source}", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    rows = [
        ("checkpoint", f"{info.form} at {info.path}"),
        ("pipeline", info.pipeline_class or "(bare model folder)"),
        ("denoiser", info.denoiser_class),
        ("parameters", f"{info.parameters:,}"),
        ("dtype", info.dtype),
        (
            "sample shape",
            " x ".join(map(str, info.sample_shape))
            + f" ({info.space})"
            + (f" -> images {' x '.join(map(str, info.image_shape))}" if info.space == "latent" else ""),
        ),
        (
            "conditioning",
            info.conditioning
            + (
                f" ({info.num_classes} classes"
                + (f", null class {info.null_label})" if info.null_label is not None else ")")
                if info.num_classes
                else ""
            )
            + (f"; encoders: {', '.join(info.text_encoders)}" if info.text_encoders else ""),
        ),
        (
            "guidance",
            f"{info.guidance_scale:g} (the pipeline's default)" if info.guidance_scale is not None else "none",
        ),
        ("autoencoder", info.vae_class or "none"),
        ("scheduler", f"{info.scheduler_class} (from {info.scheduler_origin})"),
        ("train timesteps", str(info.num_train_timesteps)),
        ("beta schedule", str(info.beta_schedule)),
        (
            "prediction type",
            ("flow matching (velocity eps - x0)" if info.prediction_type == "flow" else info.prediction_type)
            + (" + learned variance" if info.learned_variance else ""),
        ),
        ("flatcheck runs it", info.supported),
    ]
    for w in info.weight_files:
        rows.append(("weights", f"{w.path} ({w.format}, {_human_bytes(w.bytes)})"))
    for k, v in rows:
        t.add_row(k, v)
    return t


STATUS_STYLE = {
    "good": "bold green",
    "fair": "bold yellow",
    "poor": "bold red",
    "info": "bold cyan",
    "skipped": "dim",
    "error": "bold magenta",
}


def verdict_table(report: dict, title: str | None = None) -> Table:
    t = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 1))
    t.add_column("area", style="bold")
    t.add_column("status")
    t.add_column("summary", overflow="fold")
    for v in report.get("verdicts", []):
        t.add_row(v["area"], Text(v["status"], style=STATUS_STYLE.get(v["status"], "")), v["line"])
    return t


def run_table(doc: dict) -> Table:
    """Model, bank, samples, device, versions, seconds, options: how the numbers were made."""
    run = Table(title="run", title_justify="left", show_header=False, box=None)
    run.add_column(style="bold")
    run.add_column(overflow="fold")
    for k, v in run_rows(doc):
        run.add_row(k, v)
    return run


def foreign_samples(doc: dict) -> Text | None:
    """A warning when the samples are another run's (--allow-foreign-samples): every number of them is that run's."""
    folder = (doc.get("samples") or {}).get("folder") or {}
    if not folder.get("other_run"):
        return None
    return Text(
        f"warning: the samples scored here are another run's ({folder['other_run']}), read from {folder['path']} "
        "under --allow-foreign-samples",
        style="yellow",
    )


def audit_renderable(report, doc: dict, details: bool = True, title: str = "flatcheck audit") -> Group:
    """Verdicts, then (details) each measure's own view of its result - the view its command prints - and the run."""
    model = doc.get("model", {}).get("source", "?")
    parts = [verdict_table(doc, f"{title}: {model}")]
    if foreign_samples(doc) is not None:
        parts.append(foreign_samples(doc))
    if details:
        for name, measure in REGISTRY.items():
            result = report.results.get(name)
            if result is not None:
                parts += measure.view(result, model)
        parts.append(run_table(doc))
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
    head = Text(
        "gate passed"
        if result.passed
        else f"gate FAILED: {len(result.failures)} of {len(result.rows)} thresholds crossed",
        style="bold green" if result.passed else "bold red",
    )
    t = Table(show_lines=False)
    for col in ("", "metric", "value", "must be", "bound", "baseline", "note"):
        t.add_column(col, overflow="fold")
    for r in result.rows:
        t.add_row(
            Text("pass", style="green") if r.passed else Text("FAIL", style="bold red"),
            r.metric,
            format_number(r.value, r.stderr),
            r.condition,
            format_number(r.bound),
            format_number(r.baseline) if r.baseline is not None else "",
            r.note,
        )
    return Group(head, t)


def _rank_cell(pair: dict) -> Text:
    rho, tau = pair["spearman"], pair["kendall"]
    if rho["value"] is None:
        return Text("tied", style="dim")
    ci = rho["checkpoints"]
    interval = f"[{ci['low']:.2f},{ci['high']:.2f}]" if ci["low"] is not None else "[undefined]"
    tau_text = f"{tau['value']:+.2f}" if tau["value"] is not None else "n/a"
    p = pair["p_value"]
    # Bold where the interval over checkpoints leaves out 0 and unrelated orderings rarely agree as well (p < 0.05).
    clear = ci["low"] is not None and (ci["low"] > 0 or ci["high"] < 0) and p is not None and p < 0.05
    return Text(f"{rho['value']:+.2f} {interval}\nτ {tau_text}, p {p:.2g}", style="bold" if clear else "")


def rank_renderable(ranking: dict) -> Group:
    """The measure x outcome table (rho [interval over checkpoints], tau), one sentence per pair, the notes."""
    n = ranking["n"]
    cells = {(p["measure"], p["outcome"]): p for p in ranking["pairs"]}
    t = Table(
        title=f"flatcheck rank: {n} checkpoints ({', '.join(ranking['models'])})\n"
        f"Spearman rho [95% bootstrap over checkpoints, {ranking['bootstrap']['rounds']} rounds] and Kendall tau (τ), "
        "permutation p of rho; bold: interval without 0 and p < 0.05; outcomes: larger = more damage",
        title_justify="left",
        show_lines=True,
    )
    t.add_column("measure", style="cyan", no_wrap=True)
    for o in ranking["outcomes"]:
        t.add_column(o["short"], justify="right", overflow="fold")
    for m in ranking["measures"]:
        t.add_row(m["short"], *(_rank_cell(cells[(m["key"], o["key"])]) for o in ranking["outcomes"]))
    parts = [
        t,
        Text(
            "In words (second interval: parametric bootstrap over measurement noise, the reports' standard errors):",
            style="bold",
        ),
    ]
    parts += [Text(p["sentence"]) for p in ranking["pairs"]]
    if ranking["notes"]:
        parts.append(Text("Left out: " + "; ".join(ranking["notes"]) + ".", style="dim"))
    if (ranking.get("artifacts") or {}).get("plot"):
        from .plots import MAX_SCATTER_ROWS

        shown = min(len(ranking["measures"]), MAX_SCATTER_ROWS)
        parts.append(
            Text(
                f"scatter plots: {ranking['artifacts']['plot']}"
                + (
                    f" (the first {shown} of {len(ranking['measures'])} measures: choose with --measures)"
                    if shown < len(ranking["measures"])
                    else ""
                )
            )
        )
    return Group(*parts)
