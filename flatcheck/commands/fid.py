"""`flatcheck fid`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.fd.options import FdOptions
from .destinations import FOLDER
from .options import (
    BATCH,
    COMMON,
    COND,
    DRY_RUN,
    FD,
    MEASURE_PROFILE,
    OUT,
    SAMPLER,
    SAMPLES_FROM,
    SEED,
    STEPS,
    ModelArg,
    check_inputs,
    measure_command,
    measure_profile,
    takes,
)

DEFAULT_SAMPLES = 1000  # ~35 s of DDIM-25 for the bundled models on a 2-core CPU
SamplesOpt = Annotated[
    Optional[int],
    typer.Option(
        "--samples",
        help=f"Samples to generate and score, default {DEFAULT_SAMPLES} (all of a --samples-from folder); "
        ">= 2048 gives a full-rank Inception covariance.",
        show_default=False,
    ),
]
SampleDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--sample-dir",
        help="Resumable sample folder: samples are written there once and reused by later runs "
        "(default with --out: OUT/samples-SAMPLER-STEPS).",
        show_default=False,
    ),
    FOLDER,
]


@takes(COMMON, MEASURE_PROFILE, DRY_RUN, SEED, OUT, COND, STEPS, SAMPLER, BATCH, FD, SAMPLES_FROM, steps=25)
def fid(
    model: ModelArg = None,
    samples: SamplesOpt = None,
    sample_dir: SampleDirOpt = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            help="Bootstrap resamples of the samples, for the standard error and the basic bootstrap interval.",
        ),
    ] = FdOptions.bootstrap,
    kid_subset_size: Annotated[
        Optional[int],
        typer.Option(
            "--kid-subset-size", help="KID subset size (default: min(1000, half the smaller set)).", show_default=False
        ),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Recompute the reference statistics (and do not write them to the cache)."),
    ] = False,
    o=None,
) -> None:
    """FD/FID and KID of the model's samples against a reference, with a basic bootstrap interval (torch-fidelity features)."""  # noqa: E501 - the command's --help text, shown with its line breaks
    check_inputs(o, model)  # paths and spellings, before torch is imported
    from ..core.fd.extractors import FEATURES
    from ..core.sampling import check_run, check_sampler_name
    from ..errors import InputError, require_at_least

    samples_from = o.samples_from
    sizes = measure_profile(o)
    # Every cheap check before anything loads.
    check_sampler_name(o.sampler)
    if samples is None and samples_from is None:
        samples = DEFAULT_SAMPLES if sizes is None else sizes.samples
    check_run(o.steps, o.batch_size, samples)
    if samples is not None and samples < 2:
        raise InputError(f"--samples must be >= 2 for a Frechet distance (got {samples})")
    require_at_least("bootstrap", bootstrap, 2)
    if o.features is not None and o.features.strip().lower() not in FEATURES:
        raise InputError(f"unknown --features '{o.features}' (choose from: {', '.join(FEATURES)})")
    if samples_from is not None and sample_dir is not None:
        raise InputError("give --samples-from (score a folder) or --sample-dir (generate into a folder), not both")
    if sample_dir is None and samples_from is None and o.out is not None:
        sample_dir = o.out / f"samples-{o.sampler or 'checkpoint'}-{o.steps}"
    if samples is None:  # all of the --samples-from folder
        from ..core.sample_store import SampleStore

        samples = SampleStore.read(samples_from).count
        if samples < 2:
            raise InputError(f"--samples-from '{samples_from}' holds {samples} sample(s); need at least 2")
    o.samples = samples

    def grid(report, out):
        from ..core.images import save_grid

        x = report._samples
        return [save_grid(x[:64].clamp(-1, 1), Path(out) / "fid-samples.png", nrow=8)]

    inputs = dict(
        sample_dir=str(sample_dir) if sample_dir else None,
        kid_subset_size=kid_subset_size,
        use_cache=not no_cache,
    )
    return measure_command(
        "fid",
        model,
        o,
        {},
        inputs=inputs,
        shared=dict(fid_bootstrap=bootstrap),
        require_fd=True,
        files=grid,
        sources={"fid_bootstrap": ("bootstrap",)},
    )
