"""Rich renderables for the terminal: info, the audit (verdicts, then each measure's own view), compare and gate."""

from __future__ import annotations

from collections import Counter

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
        *([("configs", info.configs)] if info.configs else []),
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
    paths = [w.path for w in info.weight_files]
    for w in info.weight_files:
        # a single file holds several components: each row says whose tensors it counts
        part = f"{w.component} tensors, " if paths.count(w.path) > 1 else ""
        rows.append(("weights", f"{w.path} ({part}{w.format}, {_human_bytes(w.bytes)})"))
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


# The narrowest metric column the side-by-side table may have; below it, each metric gets its own line.
MIN_METRIC = 28
# The narrowest verdict column; below it, the verdicts are listed one model under the other.
MIN_VERDICT = 20


def compare_renderable(comparison: dict) -> Group:
    """The verdicts and the numbers that differ, laid out for the console's width when printed."""
    return Group(_ByWidth(lambda width: _compare_verdicts(comparison, width)), CompareNumbers(comparison))


class _ByWidth:
    """A renderable chosen when printed, from the width it gets (the terminal's, or a file's 80)."""

    def __init__(self, choose):
        self.choose = choose

    def __rich_console__(self, console, options):
        yield self.choose(options.max_width)


def _compare_verdicts(comparison: dict, width: int):
    names = comparison["models"]
    title = "flatcheck compare: " + " vs ".join(names)
    area_w = max(len(a) for a in comparison["verdicts"]) if comparison["verdicts"] else 4
    if width - area_w - 3 * (len(names) + 1) - 1 >= MIN_VERDICT * len(names):
        verdicts = Table(title=title, title_justify="left")
        verdicts.add_column("area", style="bold")
        for n in names:
            verdicts.add_column(n, overflow="fold")
        for area, cells in comparison["verdicts"].items():
            verdicts.add_row(area, *cells)
        return verdicts
    # Too narrow for a column per model: each area, then one model under the other.
    grid = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for area, cells in comparison["verdicts"].items():
        grid.add_row(Text(area, style="bold"), "")
        for n, cell in zip(names, cells):
            grid.add_row(" " + shorten_name(n, max(8, width // 3)), cell)
    return grid


def is_constant(row: dict) -> bool:
    """The same value (and uncertainty) in every model: a setting they share (a seed, a size, a radius)."""
    return len({(v, s, t) for v, s, t in zip(row["values"], row["stderrs"], row["text"])}) == 1


def shorten_path(path: str, width: int, initials: bool = True) -> str:
    """A dotted path in `width` characters, cut from the left: the leading names to their first letter
    ('s.a.adaptive.points.0.increase'), then, if that is still too long, its start dropped at a dot
    ('…a.p.0.increase'); without `initials`, the path's start dropped ('…points.0.increase')."""
    if len(path) <= width:
        return path
    short, parts = path, path.split(".")
    for i in range(len(parts) - 1 if initials else 0):
        parts[i] = parts[i][:1]
        short = ".".join(parts)
        if len(short) <= width:
            return short
    start = len(short) - width + 1 if width > 1 else len(short)
    tail = short[start:]
    if short[start - 1] != "." and "." in tail[:-1]:  # begin at a name, not inside one
        tail = tail[tail.index(".") + 1 :]
    return "…" + tail


def shorten_name(name: str, width: int) -> str:
    """A model's name (often a path) in `width` characters, its end kept: that is where paths differ."""
    return name if len(name) <= width else "…" + name[len(name) - width + 1 :]


class CompareNumbers:
    """compare's numbers in the terminal: the rows that differ between the models (the rows equal in all
    of them are counted, not listed), as one table when the metric names fit beside the values (shortened
    from the left down to MIN_METRIC), else each metric on its own line with its values under it.
    The JSON and Markdown keep every row."""

    def __init__(self, comparison: dict):
        self.names = comparison["models"]
        rows = comparison["rows"]
        self.rows = [r for r in rows if not is_constant(r)]
        self.hidden = len(rows) - len(self.rows)
        self.values = [list(r["text"]) for r in self.rows]
        self.diffs = [[_diff_text(d, r["stderr_diff"][i]) for i, d in enumerate(r["diff"])] for r in self.rows]

    def caption(self) -> Text:
        text = f"numbers (same bank, seeds and settings): {len(self.rows)} differ"
        if self.hidden:
            text += (
                f"; {self.hidden} equal in every model (settings such as seeds, sizes, radii) are not listed: "
                "every row, with its full gate path, is in --json and --markdown"
            )
        return Text(text, style="table.title")

    def __rich_console__(self, console, options):
        width = options.max_width
        yield self.caption()
        if not self.rows:
            return
        yield self._table(width) or self._lines(width)

    def _column_widths(self) -> tuple[list[int], list[int]]:
        cols = list(zip(*self.values)), list(zip(*self.diffs))
        return [max(len(c) for c in col) for col in cols[0]], [max(c.cell_len for c in col) for col in cols[1]]

    def _table(self, width: int) -> Table | None:
        """One row per metric; None when the metric column would be narrower than MIN_METRIC or two
        shortened names would read the same."""
        first = self.names[0]
        wv, wd = self._column_widths()
        # A header wider than its column wraps; the names keep at least this much room.
        wv = [max(w, min(len(n), 12)) for w, n in zip(wv, self.names)]
        wd = [max(w, min(len(n) + 3, 12)) for w, n in zip(wd, self.names[1:])]
        columns = 1 + len(wv) + len(wd)
        room = width - sum(wv) - sum(wd) - 3 * columns - 1  # each column's padding and border, the last border
        longest = max(len(r["path"]) for r in self.rows)
        metric_w = min(longest, room)
        if metric_w < min(MIN_METRIC, longest):
            return None
        labels = [shorten_path(r["path"], metric_w) for r in self.rows]
        twice = {k for k, n in Counter(labels).items() if n > 1}  # initials that merge names (W8A8, W4A4 -> W)
        labels = [shorten_path(r["path"], metric_w, False) if k in twice else k for k, r in zip(labels, self.rows)]
        if len(set(labels)) < len(labels):  # still one name for two metrics: each metric gets its own line instead
            return None
        shortened = labels != [r["path"] for r in self.rows]
        t = Table(title="(names shortened from the left)" if shortened else None, title_justify="left")
        t.add_column("metric", style="cyan", width=metric_w, no_wrap=True)
        for n, w in zip(self.names, wv):
            t.add_column(n, justify="right", width=w, overflow="fold")
        for n, w in zip(self.names[1:], wd):
            t.add_column(f"{n} − {first}", justify="right", width=w, overflow="fold")
        for label, values, diffs in zip(labels, self.values, self.diffs):
            t.add_row(label, *values, *diffs)
        return t

    def _lines(self, width: int) -> Group:
        """Each metric on its own line; under it the values in one line (under a header) if they fit,
        else one line per model: its value and its difference to the first."""
        wv, wd = self._column_widths()
        first = self.names[0]
        headers = [*self.names, *(f"{n} − {first}" for n in self.names[1:])]
        widths = [max(w, len(h)) for w, h in zip([*wv, *wd], headers)]
        out = []
        if 2 + sum(widths) + 2 * (len(widths) - 1) <= width:
            out.append(_aligned([Text(h, style="bold") for h in headers], widths))
            for r, values, diffs in zip(self.rows, self.values, self.diffs):
                out.append(Text(shorten_path(r["path"], width), style="cyan"))
                out.append(_aligned([Text(v) for v in values] + diffs, widths))
            return Group(*out)
        name_w = min(max(len(n) for n in self.names), max(8, width - 6 - max(wv) - max(wd, default=0)))
        out.append(
            Text(
                f"each metric, then per model: its value and its difference to {first} "
                "(bold: more than two standard errors)",
                style="dim",
            )
        )
        gv, gd = max(wv), max(wd, default=0)
        for r, values, diffs in zip(self.rows, self.values, self.diffs):
            out.append(Text(shorten_path(r["path"], width), style="cyan"))
            # Columns aligned across metrics when they fit; else this metric's own widths (one long FD cell must
            # not push every other metric off the line); else the difference, then the value, on lines of their own.
            vw, dw = (
                (gv, gd)
                if 6 + name_w + gv + gd <= width
                else (max(len(v) for v in values), max((d.cell_len for d in diffs), default=0))
            )
            for i, (n, v) in enumerate(zip(self.names, values)):
                name, diff = Text(shorten_name(n, name_w)), [diffs[i - 1]] if i else []
                if 6 + name_w + vw + (dw if diff else 0) <= width:
                    out.append(_aligned([name, Text(v), *diff], [name_w, vw, dw], left_first=True))
                    continue
                fits = 4 + name_w + vw <= width
                out.append(_aligned([name, Text(v)], [name_w, vw], left_first=True) if fits else Text("  ") + name)
                if not fits:
                    out.append(Text("    " + v))
                if diff:
                    out.append(Text("    ") + diff[0])
        return Group(*out)


def _aligned(cells: list[Text], widths: list[int], left_first: bool = False) -> Text:
    """One line of cells, right-aligned in their widths (the first left-aligned if asked), two spaces apart."""
    line = Text("  ")
    for i, (cell, w) in enumerate(zip(cells, widths)):
        pad = " " * max(0, w - cell.cell_len)
        line.append("  " if i else "")
        if i == 0 and left_first:
            line.append_text(cell)
            line.append(pad)
        else:
            line.append(pad)
            line.append_text(cell)
    return line


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
    """The gate's rows, narrower than the Markdown table: the interval under the value, the bound with its
    condition, the pairing with the mode; why each row passed or failed in a line under the table (how the
    interval was made is in the Markdown and the JSON)."""
    head = Text(
        "gate passed"
        if result.passed
        else f"gate FAILED: {len(result.failures)} of {len(result.rows)} thresholds crossed",
        style="bold green" if result.passed else "bold red",
    )
    t = Table(show_lines=False)
    t.add_column("")
    t.add_column("metric", no_wrap=True)  # a folded path cannot be copied into a config
    for col in ("value [interval]", "must be", "mode"):
        t.add_column(col, overflow="fold")
    why = []
    for i, r in enumerate(result.rows, 1):
        value = format_number(r.value, r.stderr)
        if r.low is not None:
            value += f"\n[{r.low:.4g}, {r.high:.4g}]"
        bound = r.condition + (f" = {r.bound:.4g}" if r.baseline is not None and r.bound is not None else "")
        mode = r.mode if r.mode == "point" else f"{r.mode} {r.confidence:.0%}"
        if r.judged != r.mode:
            mode += f" (judged as {r.judged})"
        if r.pairing:
            mode += f", {r.pairing}"
        status = Text("pass", style="green") if r.passed else Text("FAIL", style="bold red")
        t.add_row(status, f"{i}. {r.name or r.metric}", value, bound, mode)
        reason = r.reason + (f"; {r.note}" if r.note and r.note != r.reason else "")
        why.append(Text(f"{i}. {'pass' if r.passed else 'FAIL'}: {reason}", style="" if r.passed else "red"))
    return Group(head, t, *why)


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
