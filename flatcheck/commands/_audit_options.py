"""Options shared by `audit`, `compare` and `gate` (they all run the same audit)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

QuickOpt = Annotated[bool, typer.Option("--quick", help="CI profile: 64 probes, 64 samples x 20 steps, two quantization settings (about a minute on a 2-core CPU for the bundled models).")]
FullOpt = Annotated[bool, typer.Option("--full", help="Paper-grade profile: 50,000 samples x 100 steps, 2048 probes. Needs a GPU (refused on CPU).")]
SamplesOpt = Annotated[Optional[int], typer.Option("--samples", help="Full-precision samples (shared by quantize and FD/FID). Default: from the profile.", show_default=False)]
StepsOpt = Annotated[Optional[int], typer.Option("--steps", help="Sampling steps. Default: from the profile.", show_default=False)]
ProbesOpt = Annotated[Optional[int], typer.Option("--probes", help="Probe bank size. Default: from the profile.", show_default=False)]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Batch size for every forward pass. Default: from the profile.", show_default=False)]
AuditSamplerOpt = Annotated[Optional[str], typer.Option("--sampler", help="Sampler for every generation (ddim, ddpm, dpm-solver++, ...). Default: ddim.", show_default=False)]
TimestepsOpt = Annotated[Optional[str], typer.Option("--timesteps", help="Timestep range LO:HI of the probe bank (default: the whole schedule).", show_default=False)]
SkipOpt = Annotated[Optional[list[str]], typer.Option("--skip", help="Skip an area (sharpness, exposure, quantize, fid); repeatable.", show_default=False)]
FidFeaturesOpt = Annotated[Optional[str], typer.Option("--fid-features", "--features", help="Feature network for FD/FID: inception, digits-cnn, clip, dinov2. Default: digits-cnn for the bundled digits models, else inception.", show_default=False)]
ReportDirOpt = Annotated[Optional[Path], typer.Option("--out", help="Folder for audit.json, audit.md, audit.html and the plots.", show_default=False)]
MarkdownOpt = Annotated[Optional[Path], typer.Option("--markdown", help="Write the Markdown report here (it also goes to $GITHUB_STEP_SUMMARY when that is set).", show_default=False)]
HtmlOpt = Annotated[Optional[Path], typer.Option("--html", help="Write the self-contained HTML report here.", show_default=False)]


def profile_name(quick: bool, full: bool) -> str:
    from ..errors import InputError

    if quick and full:
        raise InputError("--quick and --full exclude each other")
    return "quick" if quick else "full" if full else "default"


def build_options(profile: str, device, *, config: dict | None = None, **given):
    """AuditOptions from a profile, a config's [audit] table, then the command line (which wins)."""
    from ..audit import options_for
    from ..errors import InputError

    merged = dict(config or {})
    if "profile" in merged and profile == "default":
        profile = merged.pop("profile")
    else:
        merged.pop("profile", None)
    for key in list(merged):
        if key in ("skip", "quantize_settings") and isinstance(merged[key], str):
            merged[key] = [merged[key]]
    merged.update({k: v for k, v in given.items() if v is not None and v != []})
    if "skip" in merged:
        merged["skip"] = tuple(merged["skip"])
    opts = options_for(profile, **merged)
    if opts.profile == "full" and device.type == "cpu":
        raise InputError("--full generates 50,000 samples and needs a GPU (about a week on a CPU); use the default profile or --quick here")
    return opts
