"""Quantization for people: terminal tables (`view`), the drift figure reports embed (`plot`),
and the sample grids of --out (`save`): one renderer for the command and the audit."""

from __future__ import annotations

from pathlib import Path

import torch
from rich import box
from rich.markup import escape
from rich.text import Text

from ...core.stats import interval_text
from ..tables import Table
from .measure import QuantizeResult

TOP_LAYERS = 10


def _est(e, fmt="{:.3g}") -> str:
    if e is None:
        return "-"
    return fmt.format(e.value) + (f"±{e.stderr:.1g}" if e.stderr is not None else "")


def _share(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def settings_table(r: QuantizeResult, model: str = "") -> Table:
    title = f"flatcheck quantize: {model}" if model else "flatcheck quantize"
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("setting", no_wrap=True)
    for col in ("quantized", "sample MSE", "PSNR", "Δ loss", "time"):
        t.add_column(col, justify="right", no_wrap=True)
    fp = r.full_precision
    t.add_row(
        "full prec.",
        "-",
        "0",
        "∞",
        f"({fp.probe_loss.value:.4g})",
        f"{fp.sampling_seconds:.1f}s" if fp.sampling_seconds is not None else "given",
    )
    for s in r.settings:
        timing = f"{s.sampling_seconds:.1f}s" + (f" {s.time_ratio:.2f}x" if s.time_ratio is not None else "")
        t.add_row(
            s.name,
            f"{s.layers}/{_share(s.weight_share)}",
            _est(s.sample_mse),
            f"{s.sample_psnr.value:.1f}",
            _est(s.probe_loss_change, "{:+.2g}"),
            timing,
        )
    return t


def fid_table(r: QuantizeResult) -> Table | None:
    """FD/FID per setting with its 95% basic bootstrap interval, and the change from full precision (paired)."""
    if not r.fid_label:
        return None
    t = Table(
        title=f"{r.fid_label} per setting ({r.samples} samples each)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    t.add_column("setting", no_wrap=True)
    for col in (r.fid_label, "change", "KID"):  # cells wrap at spaces: a bias-corrected FD is long at 80 columns
        t.add_column(col, justify="right")
    fp = r.full_precision
    t.add_row("full prec.", _interval(fp.fid), "-", _est(fp.kid))
    for s in r.settings:
        t.add_row(s.name, _interval(s.fid), _interval(s.fid_change, "{:+.3g}"), _est(s.kid))
    return t


def _interval(e, fmt="{:.3g}") -> str:
    """value [low, high] for an Estimate with a confidence interval (with the bias-corrected value where the
    bootstrap interval, built around it, excludes the value)."""
    if e is None:
        return "-"
    return interval_text(e.value, e.ci_low, e.ci_high, getattr(e, "bias_corrected", None), fmt, "{:.3g}")


def sensitivity_table(r: QuantizeResult, top: int = TOP_LAYERS) -> Table | None:
    if not r.sensitivity:
        return None
    t = Table(
        title=f"most sensitive layers, one at a time at {r.sensitivity_setting} ({r.sensitivity_samples} samples, "
        f"{r.sensitivity_steps} steps; whole setting: MSE {r.sensitivity_setting_drift:.3g}), "
        f"top {min(top, len(r.sensitivity))} of {len(r.sensitivity)}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    t.add_column("#", justify="right")
    t.add_column("layer", no_wrap=True)
    t.add_column("role", no_wrap=True)
    t.add_column("sample MSE", justify="right", no_wrap=True)
    t.add_column("share", justify="right", no_wrap=True)
    own = next((s for s in r.settings if s.name == r.sensitivity_setting), None)
    for row in r.sensitivity[:top]:
        role = (
            {"Conv2d": "conv", "Linear": "linear"}[row.kind]
            if row.role == "other"
            else {"attention": "attn"}.get(row.role, row.role)
        )
        if own is not None and (row.wbits, row.abits) != (own.wbits, own.abits):  # e.g. first/last kept at 8 bits
            role += f" W{row.wbits or '-fp'}A{row.abits or '-fp'}"
        t.add_row(str(row.rank), row.name, role, _est(row.drift_mse), _share(row.share_of_setting))
    return t


def view(r: QuantizeResult, model: str = "") -> list:
    notes = Text.from_markup(
        f"[dim]quantized: Conv2d/Linear layers / share of all parameters stored quantized. PSNR in dB. "
        f"Δ loss: paired change of the probe-bank loss (full precision's in brackets). "
        f"share: a layer's drift / the whole setting's.\n"
        f"{r.samples} samples per setting ({r.sampler}, {r.steps} steps, seed {r.seed}), the same seeds and noise as "
        "full precision; MSE on [-1, 1] pixels (latent models: decoded), PSNR peak-to-peak 2.\n"
        f"calibration: {escape(r.calibration_data)}\n"
        + (f"decoder: {escape(r.decoder)}\n" if r.decoder else "")
        + (f"LoRA: {escape(r.lora)}\n" if getattr(r, "lora", None) else "")
        + f"layers: {r.layers_total} Conv2d/Linear; {escape(r.layer_policy)}; weights per output channel symmetric, "
        f"activations per tensor asymmetric\nprobes: {r.probes}"
        + (
            f"\n{r.fid_label}: 95% basic bootstrap interval (samples resampled, reference fixed); Δ is paired with "
            "full precision (same seeds, same resamples); KID ± the standard error of its mean over subsets. "
            f"{escape(r.fid_warning or '')}"
            if r.fid_label
            else f"\n{escape(r.fid_warning)}"
            if r.fid_warning
            else ""
        )
        + "[/dim]"
    )
    parts = [settings_table(r, model), notes]
    fid = fid_table(r)
    if fid is not None:
        parts.append(fid)
    sens = sensitivity_table(r)
    if sens is not None:
        parts.append(sens)
    return parts


def plot(r: QuantizeResult, path: Path) -> Path | None:
    """Sample drift and probe-loss change per setting, side by side."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    if not r.settings:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    names = [s.name for s in r.settings]
    axes[0].bar(names, [s.relative_mse or 0.0 for s in r.settings], color="#4c72b0")
    axes[0].set(title="sample drift vs full precision", ylabel="MSE / sample variance")
    axes[1].bar(
        names,
        [s.probe_loss_change.value or 0.0 for s in r.settings],
        yerr=[s.probe_loss_change.stderr or 0.0 for s in r.settings],
        capsize=3,
        color="#dd8452",
    )
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set(title="probe-bank loss change", ylabel="quantized - full precision")
    from ...core.images import save_figure

    return save_figure(fig, path, tight=False, bbox_inches="tight")


def save(r: QuantizeResult, out_dir: str | Path, model: str = "", rows: int = 8, scale: int = 4) -> list[Path]:
    """--out DIR: side-by-side.png (a row per sample: full precision, then each setting) and samples-<setting>.png."""
    from ...core.images import save_grid

    out_dir = Path(out_dir)
    fp = r.samples_of("full-precision")
    if fp is None:
        return []
    names = ["full-precision"] + [s.name for s in r.settings]
    sets = [r.samples_of(n) for n in names]
    written = []
    k = min(rows, len(fp))
    cols = [s[:k] for s in sets if s is not None]
    side = torch.stack(cols, 1).flatten(0, 1)  # row i: sample i under every setting
    written.append(save_grid(side, out_dir / "side-by-side.png", nrow=len(cols), scale=scale))
    for n, s in zip(names, sets):
        if s is not None:
            written.append(save_grid(s, out_dir / f"samples-{n}.png", scale=scale))
    return written
