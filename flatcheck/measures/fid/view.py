"""FD/FID results for people: one rich table; the label is always the result's own ("FID" only for Inception)."""

from __future__ import annotations

from rich.text import Text

from ...core.fd.score import FidResult
from ...core.stats import interval_text
from ..tables import Table


def fd_text(r: FidResult) -> str:
    """'FD (digits-cnn) 3.12 [2.71, 3.53]': the value with its basic bootstrap interval, as every command prints it
    ('4.38 (bias-corrected 1.9) [0, 3.11]' where the interval, built around the bias-corrected value, excludes it)."""
    v = r.value
    return f"{r.label} {interval_text(v.value, v.ci_low, v.ci_high, getattr(v, 'bias_corrected', None))}"


def view(r: FidResult, model: str = "") -> list:
    t = Table(title=f"flatcheck fid: {model}".rstrip(": "), show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    v = r.value
    corrected = getattr(v, "bias_corrected", None)
    t.add_row(
        r.label,
        f"{interval_text(v.value, v.ci_low, v.ci_high, corrected)} {r.ci_level:.0%} {r.ci_method} interval, "
        f"bootstrap standard error {v.stderr:.2g} ({r.bootstrap_rounds} resamples of the samples, reference fixed)",
    )
    if not v.ci_low <= v.value <= v.ci_high:
        way = "below" if v.value > v.ci_high else "above"
        around = f" {corrected:.4g}" if corrected is not None else ""
        t.add_row(
            "",
            f"the interval lies {way} the estimate: FD is biased at this N, a resample's FD more so, and the "
            f"basic interval takes that shift off: it is built around the bias-corrected value{around} "
            "(2 FD - mean of the resampled FDs), not the raw FD",
        )
    if r.kid is not None:
        t.add_row(
            "KID",
            f"{r.kid.value:.4g} ± {r.kid.stderr:.2g} (mean over {r.kid_subsets} subsets of {r.kid_subset_size} "
            f"± its standard error; std over subsets {r.kid_subset_std:.2g})",
        )
    else:
        t.add_row("KID", "n/a (the reference is a mu/sigma file)")
    t.add_row("samples", f"{r.num_samples:,}")
    ref = r.reference
    count = f"{ref.num_images:,} images" if ref.num_images is not None else "statistics only"
    t.add_row("reference", f"{ref.spec} ({ref.kind}, {count}; statistics: {ref.cache})")
    t.add_row("features", f"{r.features} ({r.feature_dim}-dim)")
    parts = [t]
    if r.warning:
        parts.append(Text(f"warning: {r.warning}", style="yellow"))
    for note in r.notes:
        parts.append(Text(f"note: {note}", style="dim"))
    return parts
