"""`flatcheck exposure`."""

from __future__ import annotations

from typing import Annotated

import typer

from ..measures.exposure.config import ExposureConfig as C
from .options import (
    BATCH,
    COMMON,
    COND,
    DATA,
    DRY_RUN,
    FD,
    MEASURE_PROFILE,
    N_SAMPLES,
    NO_FID,
    OUT,
    SAMPLER,
    SEED,
    ModelArg,
    check_inputs,
    measure_command,
    measure_profile,
    takes,
)

StepsOpt = Annotated[
    str,
    typer.Option(
        "--steps",
        help="Sampling steps T', one or a comma-separated list (the paper uses 20,100); the first count's run is the "
        "shared samples.",
    ),
]
LinearOpt = Annotated[
    bool,
    typer.Option(
        "--linear-scale/--no-linear-scale", help="Also fit and check eps scaling linear in t (one more sampler run)."
    ),
]
CheckOpt = Annotated[
    bool,
    typer.Option(
        "--check-scaling/--no-check-scaling",
        help="Rerun the sampler with each fitted eps scaling and measure the gap again (one sampler run per form; "
        "audit --quick skips it).",
    ),
]
SaveSamplesOpt = Annotated[
    bool,
    typer.Option(
        "--save-samples",
        help="Store run (a)'s samples under OUT/samples-SAMPLER-STEPS (a resumable sample folder, e.g. for FID).",
    ),
]


@takes(
    COMMON,
    MEASURE_PROFILE,
    DRY_RUN,
    SEED,
    OUT,
    COND,
    DATA,
    N_SAMPLES,
    SAMPLER,
    BATCH,
    FD,
    NO_FID,
    samples=C.samples,
    sampler=C.sampler or "checkpoint",
)
def exposure(
    model: ModelArg = None,
    steps: StepsOpt = ",".join(map(str, C.steps)),
    linear_scale: LinearOpt = C.linear_scale,
    check_scaling: CheckOpt = C.check_scaling,
    save_samples: SaveSamplesOpt = False,
    o=None,
) -> None:
    """Exposure bias (Ning et al.): eps-norm gap between the sampler's inputs and forward-noised data, variance error,
    epsilon scaling that closes the gap (and a rerun checking it), x0-prediction drift, per sampling step; FD/FID of
    each step count's samples when a reference is known (--ref, or the digits data for the bundled models).
    The forward reference is the probe bank: --probes points of --data (or of the model's own samples, data-free)."""
    check_inputs(o, model)  # paths and spellings, before torch is imported
    from ..core.sampling import check_run, check_sampler_name, parse_steps
    from ..errors import InputError, require_at_least

    sizes = measure_profile(o)
    # Every cheap check before the model loads.
    step_list = parse_steps(steps) if sizes is None or "steps" in o.given else [sizes.steps]
    check_sampler_name(o.sampler)
    check_run(step_list[0], o.batch_size, o.samples)
    require_at_least("probes", o.probes, 2)
    if save_samples and o.out is None:
        raise InputError("--save-samples needs --out DIR")
    o.steps = step_list[0]  # the shared samples are the first step count's run (a)

    def stored_samples(report, out):
        from ..measures.exposure import save_samples as store

        return store(report.results["exposure"], out)

    return measure_command(
        "exposure",
        model,
        o,
        dict(steps=step_list, linear_scale=linear_scale, check_scaling=check_scaling, keep_samples=save_samples),
        files=stored_samples if save_samples else None,
        sources={"keep_samples": ("save_samples",)},
    )
