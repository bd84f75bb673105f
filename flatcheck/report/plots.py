"""PNG plots of an audit (matplotlib, Agg backend: no display needed).

Names start with the area they belong to, so Markdown and HTML place them in that section.
Each plot reads the report's JSON document, so a saved report can be re-plotted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

PlotFn = Callable[[dict, Path], "Path | None"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def make_plots(report, folder: Path) -> dict[str, Path]:
    """Every plot the report's contents allow: name -> PNG path."""
    from .jsonio import to_jsonable

    folder = Path(folder)
    doc = to_jsonable(report)
    plots: dict[str, Path] = {}
    samples = getattr(report, "_samples", None)
    if samples is not None and len(samples):
        from ..images import save_grid

        n = min(64, len(samples))
        # Latent samples are shown channel 0 only: a picture of the latent, not a decoded image.
        x = samples[:n, :1] if samples.shape[1] not in (1, 3) else samples[:n]
        plots["samples"] = save_grid(x, folder / "samples.png", nrow=min(16, n), scale=3)
    for name, fn in PLOTS.items():
        area = name.split("-")[0]
        if doc.get(area) is None:
            continue
        path = fn(doc[area], folder / f"{name}.png")
        if path is not None:
            plots[name] = path
    return plots


def _errorbar(ax, x, curve: dict, label: str, **kw) -> None:
    y, se = curve.get("mean") or [], curve.get("stderr") or []
    y = [float("nan") if v is None else v for v in y]
    se = [0.0 if v is None else v for v in se] if len(se) == len(y) else None
    ax.errorbar(x, y, yerr=se, marker="o", ms=3, capsize=2, label=label, **kw)


def plot_exposure(section: dict, path: Path) -> Path | None:
    runs = section.get("runs") or []
    if not runs:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in runs:
        ts = run["timesteps"]
        _errorbar(axes[0], ts, run["gap"], f"{run['steps']} steps: sampled - forward")
        for sc in run.get("scaling") or []:
            _errorbar(axes[0], ts, sc["gap"], f"{run['steps']} steps, eps scaled ({sc['form']})", linestyle="--")
        _errorbar(axes[1], ts, run["variance_error"], f"{run['steps']} steps")
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set(title="eps-norm gap (exposure bias)", xlabel="timestep t", ylabel="||eps(x_hat_t)|| - ||eps(x_t)||")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set(title="variance error", xlabel="timestep t", ylabel="delta_t")
    for ax in axes:
        ax.invert_xaxis()  # sampling runs from high t to low t
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_quantize(section: dict, path: Path) -> Path | None:
    settings = section.get("settings") or []
    if not settings:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    names = [s["name"] for s in settings]
    rel = [s["relative_mse"] or 0.0 for s in settings]
    axes[0].bar(names, rel, color="#4c72b0")
    axes[0].set(title="sample drift vs full precision", ylabel="MSE / sample variance")
    change = [s["probe_loss_change"]["value"] or 0.0 for s in settings]
    err = [s["probe_loss_change"].get("stderr") or 0.0 for s in settings]
    axes[1].bar(names, change, yerr=err, capsize=3, color="#dd8452")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set(title="probe-bank loss change", ylabel="quantized - full precision")
    return _save(fig, path)


def plot_sharpness(section: dict, path: Path) -> Path | None:
    average, worst, land = section.get("average") or [], section.get("worst") or [], section.get("landscape")
    if not (average or worst or land):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for case in average:
        pts = case["points"]
        axes[0].errorbar([p["radius"] for p in pts], [p["increase"]["value"] for p in pts],
                         yerr=[p["increase"].get("stderr") or 0 for p in pts], marker="o", ms=3, capsize=2, label=f"average, {case['norm']}")
    for case in worst:
        pts = case["points"]
        axes[0].plot([p["radius"] for p in pts], [p["increase"] for p in pts], marker="s", ms=3, linestyle="--", label=f"worst, {case['norm']}")
    axes[0].set(xscale="log", title="loss increase under weight perturbation", xlabel="radius r (relative to |theta|)", ylabel="L(theta+delta) - L(theta)")
    if average or worst:
        axes[0].legend(fontsize=7)
    if land and land.get("alphas"):
        axes[1].plot(land["alphas"], land["curve"], marker="o", ms=3)
        axes[1].set(title="filter-normalised 1-D landscape", xlabel="alpha", ylabel="mean probe loss")
    else:
        axes[1].axis("off")
    return _save(fig, path)


PLOTS: dict[str, PlotFn] = {"sharpness": plot_sharpness, "exposure": plot_exposure, "quantize": plot_quantize}
