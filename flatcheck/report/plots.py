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
