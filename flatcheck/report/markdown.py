"""Audit, compare and gate reports as GitHub-flavoured Markdown (also for $GITHUB_STEP_SUMMARY)."""

from __future__ import annotations

import os
from pathlib import Path

from ..measures import REGISTRY
from ..results import format_number, number_rows

STATUS_MARK = {"good": "🟢", "fair": "🟡", "poor": "🔴", "info": "🔵", "skipped": "⚪", "error": "❌"}


def _lo_hi(bank: dict) -> str:
    lo, hi = bank.get("t_range") or ("?", "?")
    return f"{lo}, {hi}"


def _esc(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def verdict_table(report: dict) -> str:
    rows = [
        [f"{STATUS_MARK.get(v['status'], '')} {v['area']}", v["status"], v["line"]] for v in report.get("verdicts", [])
    ]
    return _table(["area", "verdict", "summary"], rows)


def audit_markdown(report: dict, plots: dict[str, str] | None = None) -> str:
    """The whole audit: verdicts first, then every number (with the dotted path the gate uses), then the run."""
    model = report.get("model", {})
    out = [f"# flatcheck audit: {model.get('source', '?')}", "", verdict_table(report), ""]
    for area in REGISTRY:
        section = report.get(area)
        out.append(f"## {area}")
        if section is None:
            note = next((v["line"] for v in report.get("verdicts", []) if v["area"] == area), "not run")
            out += [f"_{note}_", ""]
            continue
        rows = [[f"`{area}.{r.path}`", r.text()] for r in number_rows(section)]
        out += [_table(["metric (gate path)", "value"], rows) if rows else "_no numbers_", ""]
        for name, path in (plots or {}).items():
            if name.startswith(area):
                out += [f"![{name}]({path})", ""]
    out += ["## run", "", _table(["", ""], run_rows(report)), ""]
    return "\n".join(out)


def _threads(env: dict) -> str:
    """Thread count (and why) and CPU instruction set: what else a CPU rerun needs to match bit for bit."""
    n = env.get("torch_threads")
    why = f" ({env['threads_reason']})" if env.get("threads_reason") else ""
    return f"{n} torch thread{'s' if n != 1 else ''}{why}, CPU {env.get('cpu_capability') or 'capability not recorded'}"


def run_rows(report: dict) -> list[list[str]]:
    """How the numbers were made: model, bank, samples, device, versions, seconds, peak memory, options."""
    model, env, bank, samples = (report.get(k) or {} for k in ("model", "environment", "bank", "samples"))
    rows = [
        ["model", f"{model.get('source')} ({model.get('denoiser_class')}, {model.get('parameters', 0):,} parameters)"],
        ["profile", str(report.get("options", {}).get("profile"))],
        [
            "probe bank",
            f"{bank.get('n')} probes, seed {bank.get('seed')}, t in [{_lo_hi(bank)}); {bank.get('source')}"
            if bank
            else "none (no measure used one)",
        ],
        [
            "samples",
            f"{samples.get('n')} x {samples.get('sampler')} {samples.get('steps')} steps, seed {samples.get('seed')}"
            + (f" ({samples['origin']})" if samples.get("origin") else ""),
        ],
        *([["loss", bank["loss_definition"]]] if bank.get("loss_definition") else []),
        *([["conditions", _conditions(report["conditioning"])]] if report.get("conditioning") else []),
        ["device", f"{env.get('device')} ({env.get('gpu') or env.get('platform')}; {_threads(env)})"],
        *(
            [
                [
                    "memory",
                    "; ".join(
                        f"{b['where']}: batch {b['requested']} did not fit, ran at {b['used']}"
                        for b in env["batch_backoff"]
                    ),
                ]
            ]
            if env.get("batch_backoff")
            else []
        ),
        [
            "versions",
            f"flatcheck {env.get('flatcheck')}, torch {env.get('torch')}, diffusers {env.get('diffusers')}, python "
            f"{env.get('python')}",
        ],
        ["seconds", ", ".join(f"{k} {v:.1f}" for k, v in (report.get("timings") or {}).items())],
        *([["peak memory", _peak_memory(env["peak_memory"])]] if env.get("peak_memory") else []),
    ]
    opts = report.get("options", {})
    rows.append(["options", ", ".join(f"{k}={v}" for k, v in opts.items() if k != "configs")])
    for name, config in (opts.get("configs") or {}).items():
        rows.append([f"{name} config", _config_text(name, config, opts)])
    return rows


def _config_text(name: str, config: dict, opts: dict) -> str:
    """A measure's config as k=v, then the run's options it works with (fid: the FD options, none of its own)."""
    own = ", ".join(f"{k}={v}" for k, v in config.items()) or "no options of its own"
    measure = REGISTRY.get(name)
    run = getattr(measure.config, "RUN_OPTIONS", ()) if measure is not None else ()
    if not run:
        return own
    shown = []
    for k in run:
        v = opts.get(k)
        if k == "ref" and v is None:  # no --ref: the reference is the --data images
            v = f"{opts['data']} (the --data images)" if opts.get("data") else "none"
        shown.append(f"{k}={v}")
    return f"{own}; scores with the run's {', '.join(shown)}"


PEAK_KINDS = {
    "rss": "peak RSS",
    "rss_since_start": "peak RSS since the process started",
    "cuda_max_allocated": "CUDA max allocated",
}


def _peak_memory(peak: dict) -> str:
    """'1.21 GiB (peak RSS); inputs 1.05, exposure 1.10, ... GiB': the run, then each phase, in one unit."""
    run = peak["run_bytes"]
    unit, scale = ("GiB", 2**30) if run >= 2**30 else ("MiB", 2**20)
    phases = ", ".join(f"{k} {v / scale:.2f}" for k, v in peak.get("by_phase", {}).items())
    reserved = (
        f"; reserved {peak['reserved_run_bytes'] / scale:.2f} {unit}"
        if peak.get("reserved_run_bytes") is not None
        else ""
    )
    return f"{run / scale:.2f} {unit} ({PEAK_KINDS.get(peak['kind'], peak['kind'])}){reserved}" + (
        f"; {phases} {unit}" if phases else ""
    )


def _conditions(c: dict) -> str:
    what = (
        f"{c['count']} classes"
        if c["kind"] == "class"
        else f"{c['count']} prompts ({', '.join(c.get('encoders') or [])})"
    )
    guidance = (
        f"guidance {c['guidance_scale']:g} ({c.get('guidance_source')})"
        if c["guidance_scale"] != 1
        else f"no guidance ({c.get('guidance_source')})"
    )
    return f"{what}; {c['assignment']}; {guidance}"


def compare_markdown(comparison: dict) -> str:
    names = comparison["models"]
    out = [f"# flatcheck compare: {' vs '.join(names)}", ""]
    header = ["area", *names]
    out += [_table(header, [[area, *comparison["verdicts"][area]] for area in comparison["verdicts"]]), ""]
    diff_names = [f"{n} − {names[0]}" for n in names[1:]]
    rows = [[f"`{r['path']}`", *r["text"], *(format_number(d) for d in r["diff"])] for r in comparison["rows"]]
    out += [_table(["metric", *names, *diff_names], rows), ""]
    return "\n".join(out)


GATE_COLUMNS = ["", "metric", "value", "interval", "must be", "bound", "baseline", "mode", "why"]


def gate_cells(r) -> list[str]:
    """One gate row as table cells (Markdown, terminal): value, interval, bound, mode, why it passed or failed."""
    interval = f"[{r.low:.4g}, {r.high:.4g}] {r.interval}" if r.low is not None else "none in the report"
    mode = r.mode if r.mode == "point" else f"{r.mode} {r.confidence:.0%}"
    if r.judged != r.mode:
        mode += f" (judged as {r.judged})"
    why = r.reason + (f"; {r.note}" if r.note and r.note != r.reason else "")
    return [
        "pass" if r.passed else "FAIL",
        r.metric if not r.name else f"{r.name}: {r.metric}",
        format_number(r.value, r.stderr),
        interval,
        r.condition,
        format_number(r.bound),
        format_number(r.baseline) if r.baseline is not None else "",
        mode,
        why,
    ]


def gate_markdown(result, source: str) -> str:
    head = (
        "✅ flatcheck gate passed"
        if result.passed
        else f"❌ flatcheck gate failed: {len(result.failures)} of {len(result.rows)} thresholds crossed"
    )
    rows = []
    for r in result.rows:
        cells = gate_cells(r)
        cells[1] = f"`{r.metric}`" if not r.name else f"{r.name}: `{r.metric}`"
        rows.append(cells)
    return "\n".join(
        [
            f"# {head}",
            "",
            f"report: {source}; config: {result.config}"
            + (f"; baseline: {result.baseline}" if result.baseline else ""),
            "",
            _table(GATE_COLUMNS, rows),
            "",
        ]
    )


def write_step_summary(markdown: str) -> Path | None:
    """Append to $GITHUB_STEP_SUMMARY when set (GitHub Actions shows it on the run page)."""
    dest = os.environ.get("GITHUB_STEP_SUMMARY")
    if not dest:
        return None
    with open(dest, "a", encoding="utf-8") as fh:
        fh.write(markdown.rstrip("\n") + "\n\n")
    return Path(dest)


def rank_markdown(ranking: dict) -> str:
    """The measure x outcome table, the sentences, how the intervals were made, what was left out."""
    cells = {(p["measure"], p["outcome"]): p for p in ranking["pairs"]}

    def cell(p):
        rho, tau = p["spearman"], p["kendall"]
        if rho["value"] is None:
            return "tied"
        ci = rho["checkpoints"]
        interval = f"[{ci['low']:.2f}, {ci['high']:.2f}]" if ci["low"] is not None else "[undefined]"
        tau_text = f", τ {tau['value']:+.2f}" if tau["value"] is not None else ""
        return f"ρ {rho['value']:+.2f} {interval}{tau_text}, p {p['p_value']:.2g}"

    outcomes = ranking["outcomes"]
    rows = [[m["label"], *(cell(cells[(m["key"], o["key"])]) for o in outcomes)] for m in ranking["measures"]]
    methods = ranking["bootstrap"]["methods"]
    out = [
        f"# flatcheck rank: {ranking['n']} checkpoints",
        "",
        f"Checkpoints: {', '.join(ranking['models'])}. "
        "Spearman ρ [95% bootstrap over checkpoints], Kendall τ-b and the permutation p-value of ρ; outcomes are "
        "signed so that larger = more damage.",
        "",
        _table(["sharpness measure", *(o["label"] for o in outcomes)], rows),
        "",
        "## In words",
        "",
    ]
    out += [f"- {p['sentence']}" for p in ranking["pairs"]]
    out += [
        "",
        "## Intervals",
        "",
        f"- over checkpoints: {methods['checkpoints']}",
        f"- over measurement noise: {methods['noise']}",
        f"- p: {methods['p_value']}",
        f"- {ranking['bootstrap']['rounds']} rounds each, seed {ranking['bootstrap']['seed']}",
        "",
    ]
    if ranking["notes"]:
        out += ["## Left out", "", *(f"- {n}" for n in ranking["notes"]), ""]
    return "\n".join(out)
