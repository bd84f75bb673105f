"""The FD figure the reports embed: the bootstrap distribution, the estimate and its interval."""

from __future__ import annotations

from pathlib import Path

from ...core.fd.score import FidResult


def plot(r: FidResult, path: str | Path) -> Path | None:
    """The resampled FDs as a histogram, with the estimate and its basic bootstrap interval over them.

    Drawn so that an interval that excludes its estimate reads as what it is: the resamples sit above the
    estimate by FD's small-N bias, and the basic interval reflects them about the estimate, which centres
    it near 2 FD - mean(resampled), the bias-corrected value (marked)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    v = r.value
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.axvspan(
        v.ci_low,
        v.ci_high,
        color="#1f77b4",
        alpha=0.15,
        lw=0,
        label=f"{r.ci_level:.0%} {r.ci_method} interval [{v.ci_low:.4g}, {v.ci_high:.4g}]\n"
        "(the resamples reflected about the estimate)",
    )
    rounds = None if r._rounds is None else np.asarray(r._rounds, np.float64)
    if rounds is not None and len(rounds):
        ax.hist(
            rounds,
            bins=max(5, min(40, len(rounds) // 4)),
            color="#8c8c8c",
            alpha=0.8,
            label=f"FD of each of {len(rounds)} resamples of the {r.num_samples} samples",
        )
        corrected = 2 * v.value - float(rounds.mean())
        ax.axvline(
            corrected,
            color="#d62728",
            ls="--",
            lw=1.5,
            label=f"bias-corrected: 2·FD − mean(resampled) = {corrected:.4g}",
        )
    ax.axvline(v.value, color="#1f77b4", lw=2.5, label=f"{r.label} = {v.value:.4g} (the {r.num_samples} samples)")
    ax.set_xlabel(r.label, fontsize=11)
    ax.set_ylabel("resamples", fontsize=11)
    ax.tick_params(labelsize=10)
    ax.set_title(f"{r.label} vs {r.reference.spec}: bootstrap over the samples, reference fixed", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    from ...core.images import save_figure

    return save_figure(fig, path, tight=False, bbox_inches="tight")
