"""Exposure-bias results for people: a rich table and a PNG of the per-step curves."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from ...core.stats import interval_text
from ..tables import Table
from .measure import ExposureResult, ExposureRun


def _pm(v: float, se: float | None) -> str:
    return f"{v:+.3g} ± {se:.2g}" if se is not None else f"{v:+.3g}"


def _short(sampler: str) -> str:
    return sampler.removesuffix("Scheduler").removesuffix("Discrete")


def view(result: ExposureResult, model: str = "", max_rows: int = 10) -> list:
    """A summary row per step count (and eps-scaling form), then a few steps of each run's curves."""
    qn = result.quantity  # eps, or v for flow-matching models
    head = Table(
        title=f"flatcheck exposure: {model}".rstrip(": "),
        title_justify="left",
        caption=f"reference: {result.reference}. gap = ||{qn}|| on the sampler's inputs - on forward-noised data, "
        "summed over steps; eps scaling divides eps by lambda_t = b + k t and reruns the sampler.",
        caption_justify="left",
    )
    for col in ("run", f"{qn}-norm gap", "gap/fwd", "variance err", f"{qn} scale (data)", f"{qn} scaling", "gap after"):
        head.add_column(col, justify="left" if col in ("run", "eps scaling") else "right")
    for run in result.runs:
        scalings = run.scaling or [None]
        for i, sc in enumerate(scalings):
            row = (
                [
                    f"{_short(run.sampler)} {run.steps}",
                    _pm(run.gap_total.value, run.gap_total.stderr),
                    f"{run.gap_relative:+.2%}",
                    _pm(run.variance_error_mean.value, run.variance_error_mean.stderr),
                    _pm(run.eps_scale_forward.value, run.eps_scale_forward.stderr),
                ]
                if i == 0
                else [""] * 5
            )
            fit = after = ""
            if sc is not None:
                fit = f"b={sc.b:.4f}" + (f" k={sc.k:.2g}" if sc.form == "linear" else "")
                after = (
                    f"{_pm(sc.gap_total.value, sc.gap_total.stderr)} {'helps' if sc.helps else 'worse'}"
                    if sc.checked
                    else "not checked"
                )
            head.add_row(*row, fit, after)
    parts = [head]
    scored = [run for run in result.runs if run.fid is not None]
    if scored:
        q = Table(
            title=f"sample quality per step count ({scored[0].samples} samples, same seeds)",
            title_justify="left",
            caption=result.fid_warning,
            caption_justify="left",
        )
        q.add_column("run")
        q.add_column(scored[0].fid_label or "FD", justify="right")
        for run in scored:
            e = run.fid
            q.add_row(
                f"{_short(run.sampler)} {run.steps}",
                interval_text(e.value, e.ci_low, e.ci_high, getattr(e, "bias_corrected", None)),
            )
        parts.append(q)
    elif result.fid_warning:
        parts.append(Text(result.fid_warning, style="dim"))
    for run in result.runs:
        parts.append(_steps_table(run, max_rows, qn))
    return parts


def _steps_table(run: ExposureRun, max_rows: int, qn: str = "eps") -> Table:
    n = len(run.timesteps)
    k = min(n, max_rows)
    pick = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})
    t = Table(
        title=f"{_short(run.sampler)} {run.steps} steps: {len(pick)} of {n} shown; sqrt(d) = {run.sqrt_d:.3g}",
        title_justify="left",
    )
    for col in ("step", "t", f"||{qn}|| sampler", f"||{qn}|| fwd", "gap", "variance err", "x0 drift"):
        t.add_column(col, justify="right")
    for i in pick:
        t.add_row(
            str(i),
            str(run.timesteps[i]),
            f"{run.eps_norm_sampled.mean[i]:.4g}",
            f"{run.eps_norm_forward.mean[i]:.4g}",
            _pm(run.gap.mean[i], run.gap.stderr[i]),
            _pm(run.variance_error.mean[i], run.variance_error.stderr[i]),
            f"{run.x0_drift.mean[i]:.3g}",
        )
    return t


def plot(result: ExposureResult, path: str | Path, model: str = "") -> Path:
    """Four panels over the training timestep t (sampling runs right to left), one colour per step count."""
    qn = result.quantity
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    ax_norm, ax_gap, ax_var, ax_drift = axes.ravel()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # Legends as large as the tick labels (seven small ones inside the panels were unreadable in the HTML
    # report): the line styles in the panel that uses them, a colour per run under the figure.
    runs, scaled = [], False
    for c, run in zip(colors * 4, result.runs):
        t = np.asarray(run.timesteps)
        ax_norm.plot(t, run.eps_norm_sampled.mean, color=c)
        ax_norm.plot(t, run.eps_norm_forward.mean, color=c, ls="--")
        label = f"{run.sampler} {run.steps} steps"
        if run.scaling and run.scaling[0].checked:
            sc = run.scaling[0]
            ax_norm.plot(t, sc.eps_norm_applied.mean, color=c, ls=":")
            label += f" (eps/{sc.b:.3f})"
            scaled = True
        runs.append(Line2D([], [], color=c, lw=2.5, label=label))
        _band(ax_gap, t, run.gap.mean, run.gap.stderr, c)
        _band(ax_var, t, run.variance_error.mean, run.variance_error.stderr, c)
        _band(ax_drift, t, run.x0_drift.mean, run.x0_drift.stderr, c)
    if result.runs:
        ax_norm.axhline(result.runs[0].sqrt_d, color="grey", lw=0.8)
    styles = [
        Line2D([], [], color="black", label="sampler's inputs"),
        Line2D([], [], color="black", ls="--", label="forward-noised data"),
        *([Line2D([], [], color="black", ls=":", label="sampler, eps scaled")] if scaled else []),
        Line2D([], [], color="grey", lw=0.8, label="sqrt(d)"),
    ]
    ax_norm.legend(handles=styles, fontsize=10)
    runs.append(Patch(color="grey", alpha=0.3, label="± 2 standard errors"))
    for ax, title in (
        (ax_norm, f"||{qn}_theta||: sampler's inputs vs forward-noised data"),
        (ax_gap, f"{qn}-norm gap (sampler - forward)"),
        (ax_var, "variance error delta_t (sampler from data at t_0)"),
        (ax_drift, "x0-prediction drift to the final sample (RMS)"),
    ):
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("timestep t")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    for ax in (ax_gap, ax_var):
        ax.axhline(0, color="black", lw=0.6)
    fig.suptitle(f"exposure bias{': ' + model if model else ''}  ({result.reference})", fontsize=10)
    fig.tight_layout()
    fig.legend(handles=runs, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=10, frameon=False)
    from ...core.images import save_figure

    return save_figure(fig, path, tight=False, bbox_inches="tight")


def save(result: ExposureResult, folder: Path, model: str = "") -> list[Path]:
    """--out DIR: the curves as exposure.png."""
    return [plot(result, Path(folder) / "exposure.png", model)]


def _band(ax, t, mean, se, color):
    import numpy as np

    m, s = np.asarray(mean), np.asarray(se)
    ax.plot(t, m, color=color)
    ax.fill_between(t, m - 2 * s, m + 2 * s, color=color, alpha=0.2, lw=0)


def save_samples(result: ExposureResult, folder: Path) -> list[Path]:
    """Each run (a)'s samples as a resumable sample folder OUT/samples-SAMPLER-STEPS (the run keeps them)."""
    from ...core.sample_store import SampleStore

    written = []
    batch = result.config.batch_size
    for run in result.runs:
        target = Path(folder) / f"samples-{run.sampler}-{run.steps}"
        store = SampleStore.open(target, run._spec, batch)
        if store.count == 0:  # same spec, same samples: a folder already filled is left as it is
            for start in range(0, len(run._samples), batch):
                store.add_shard(start, run._samples[start : start + batch])
        run.samples_dir = str(target)
        written.append(target)
    return written
