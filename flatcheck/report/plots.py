"""The PNG figures a report embeds: the samples' grid and each measure's own plot.

Names start with the measure they belong to, so Markdown and HTML place them in its section.
Each measure draws its figure from its typed result (measures/<name>/view.py: `plot`), the same
figure its command writes: one plot per measure.
"""

from __future__ import annotations

from pathlib import Path

from ..measures import REGISTRY


def make_plots(report, folder: Path) -> dict[str, Path]:
    """Every plot the report's results allow: name -> PNG path."""
    folder = Path(folder)
    plots: dict[str, Path] = {}
    samples = getattr(report, "_samples", None)
    if samples is not None and len(samples):
        from ..core.images import save_grid

        n = min(64, len(samples))  # images: latent models' samples were decoded by their autoencoder
        plots["samples"] = save_grid(samples[:n], folder / "samples.png", nrow=min(16, n), scale=3)
    for name, measure in REGISTRY.items():
        result = report.results.get(name)
        if result is None:
            continue
        path = measure.plot(result, folder / f"{name}.png")
        if path is not None:
            plots[name] = path
    return plots


# A grid taller than this many measure rows is unreadable: the rest are left out (and said so).
MAX_SCATTER_ROWS = 24


def rank_scatter(ranking: dict, path: Path) -> Path:
    """A grid of scatter plots: a row per sharpness measure, a column per outcome, one named point
    per checkpoint, Spearman's rho in each title (from a rank JSON document)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    measures = ranking["measures"][:MAX_SCATTER_ROWS]
    outcomes = ranking["outcomes"]
    cells = {(p["measure"], p["outcome"]): p for p in ranking["pairs"]}
    names = [Path(m.rstrip("/")).name or m for m in ranking["models"]]
    fig, axes = plt.subplots(
        len(measures), len(outcomes), figsize=(2.8 * len(outcomes), 2.4 * len(measures)), squeeze=False
    )
    for i, m in enumerate(measures):
        for j, o in enumerate(outcomes):
            ax = axes[i][j]
            ax.scatter(m["values"], o["values"], s=14)
            for name, x, y in zip(names, m["values"], o["values"]):
                ax.annotate(name, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
            rho = cells[(m["key"], o["key"])]["spearman"]["value"]
            ax.set_title(f"rho = {rho:+.2f}" if rho is not None else "rho undefined (tied)", fontsize=8)
            ax.set_xlabel(m["label"], fontsize=6, labelpad=7)  # room for the axis exponent
            ax.set_ylabel(o["label"], fontsize=6)
            ax.tick_params(labelsize=6)
            ax.ticklabel_format(style="sci", scilimits=(-2, 3))
            for axis in (ax.xaxis, ax.yaxis):  # values span decades: few ticks, scientific notation, a small exponent
                axis.set_major_locator(MaxNLocator(4))
                axis.get_offset_text().set_fontsize(6)
    if len(ranking["measures"]) > len(measures):
        fig.suptitle(
            f"first {len(measures)} of {len(ranking['measures'])} measures (choose with --measures)", fontsize=9
        )
    from ..core.images import save_figure

    return save_figure(fig, path, dpi=90)
