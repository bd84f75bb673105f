"""`flatcheck sharpness`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..measures.sharpness.config import SharpnessConfig as C
from .options import (
    BATCH,
    COMMON,
    COND,
    DATA,
    DRY_RUN,
    MEASURE_PROFILE,
    OUT,
    SAMPLES,
    SEED,
    TIMESTEPS,
    ModelArg,
    check_inputs,
    comma_list,
    comma_numbers,
    measure_command,
    measure_profile,
    takes,
)

RadiiOpt = Annotated[
    Optional[str],
    typer.Option(
        "--radii",
        help="Comma list of relative radii r > 0, for both the average and the worst case (default: average "
        f"{','.join(map(str, C.radii))}; worst {','.join(map(str, C.worst_radii))} - an ascent direction moves the "
        "loss at ~100x smaller radii than a random one).",
        show_default=False,
    ),
]
WorstRadiiOpt = Annotated[
    Optional[str],
    typer.Option(
        "--worst-radii",
        help="Comma list of radii for the worst case only (overrides --radii there).",
        show_default=False,
    ),
]


@takes(COMMON, MEASURE_PROFILE, DRY_RUN, SEED, OUT, COND, DATA, TIMESTEPS, SAMPLES, BATCH, probes=128, samples=128)
def sharpness(
    model: ModelArg = None,
    measures: Annotated[
        str,
        typer.Option(
            "--measures",
            help="Comma list of: avg (average case), worst (worst case), hessian (top eigenvalues + trace), landscape "
            "(filter-normalised 1-D/2-D).",
        ),
    ] = ",".join(C.measures),
    norms: Annotated[
        str,
        typer.Option(
            "--norms",
            help="Comma list of: adaptive (each weight moves ~r of itself; ASAM), absolute (isotropic, "
            "|delta| = r |theta|; SAM).",
        ),
    ] = ",".join(C.norms),
    radii: RadiiOpt = None,
    worst_radii: WorstRadiiOpt = None,
    draws: Annotated[
        int,
        typer.Option(
            "--draws",
            help="Gaussian perturbations per radius (average case), each as a +-delta pair; the ± is over them.",
        ),
    ] = C.draws,
    ascent_steps: Annotated[
        int,
        typer.Option(
            "--ascent-steps", help="Projected gradient ascent steps (worst case); 1 = SAM/ASAM's one-step estimate."
        ),
    ] = C.ascent_steps,
    buckets: Annotated[int, typer.Option("--buckets", help="Timestep buckets for the breakdown.")] = C.buckets,
    block_radius: Annotated[
        float, typer.Option("--block-radius", help="Radius of the per-block average case (down/mid/up...).")
    ] = C.block_radius,
    block_average: Annotated[
        bool,
        typer.Option(
            "--block-average/--no-block-average",
            help="The per-block average case (2 x --draws bank evaluations per block); without it blocks are compared "
            "by their Hessian trace only.",
        ),
    ] = C.block_average,
    hessian_probes: Annotated[
        int, typer.Option("--hessian-probes", help="Probes (spread over the bank's timesteps) in the Hessian sub-bank.")
    ] = C.hessian_probes,
    top_k: Annotated[
        int,
        typer.Option(
            "--top-k",
            help="Top Hessian eigenvalues, a repeated one counted as often as it repeats (block Lanczos, blocks of "
            "--top-k vectors).",
        ),
    ] = C.top_k,
    lanczos_iters: Annotated[
        int,
        typer.Option("--lanczos-iters", help="At most this many HVPs for the eigenvalues (whole blocks of --top-k)."),
    ] = C.lanczos_iters,
    lanczos_basis: Annotated[
        int,
        typer.Option(
            "--lanczos-basis",
            metavar="BLOCKS",
            help="Krylov blocks of --top-k vectors kept (at least 3); beyond them Lanczos restarts. "
            "Memory: BLOCKS x top-k + 2 parameter-sized vectors, whatever --lanczos-iters is.",
        ),
    ] = C.lanczos_basis,
    tol: Annotated[
        float,
        typer.Option(
            "--tol",
            help="Eigenvalues stop once their joint error bound <= tol x the smallest |eigenvalue| of the top k.",
        ),
    ] = C.tol,
    hutchinson_draws: Annotated[
        int, typer.Option("--hutchinson-draws", help="Rademacher draws for the Hessian trace (the ± is over them).")
    ] = C.hutchinson_draws,
    landscape_probes: Annotated[
        int, typer.Option("--landscape-probes", help="Probes in the landscape sub-bank.")
    ] = C.landscape_probes,
    landscape_span: Annotated[
        float,
        typer.Option(
            "--landscape-span", help="Landscape axes run over [-span, span] (1 = a step as large as each filter)."
        ),
    ] = C.landscape_span,
    landscape_points: Annotated[
        int, typer.Option("--landscape-points", help="Points of the 1-D curve.")
    ] = C.landscape_points,
    landscape_grid: Annotated[
        int, typer.Option("--landscape-grid", help="Points per axis of the 2-D surface (0: no surface).")
    ] = C.landscape_grid,
    params: Annotated[
        Optional[str],
        typer.Option(
            "--params",
            metavar="GLOBS",
            help="Measure only these parameters: comma-separated globs on their names (e.g. "
            "'mid_block.*,up_blocks.0.*'); the rest stay fixed. Reports say which.",
            show_default=False,
        ),
    ] = None,
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(
            "--gradient-checkpointing",
            help="Recompute activations in backward passes (gradients, HVPs): less memory for large denoisers, about "
            "one more forward per pass.",
        ),
    ] = False,
    reference: Annotated[
        Optional[str],
        typer.Option(
            "--reference",
            metavar="TABLE|none",
            help="Sharpness reference table for the headline numbers' percentiles (default: the shipped one, "
            "flatcheck/assets/sharpness_reference.json; 'none': no comparison).",
            show_default=False,
        ),
    ] = None,
    o=None,
) -> None:
    """How flat is the denoiser's training loss around its weights: average- and worst-case sharpness over a sweep of radii, Hessian top eigenvalues and trace, filter-normalised landscapes, broken down by timestep bucket and by block. Every measure shares one seeded probe bank; weights are restored bit for bit.

    Radii r are relative: |delta| ~ r |theta| (absolute norm), or each weight moved by ~r of itself (adaptive).

    Defaults were chosen by measurement on the bundled digits models (examples/evidence/sharpness.md). The bundled models use their digits data; other models are data-free: the bank's x0 are drawn from --samples of the model's own samples."""  # noqa: E501 - the command's --help text, shown with its line breaks
    check_inputs(o, model)
    measure_profile(o)
    config = dict(
        measures=comma_list(measures),
        norms=comma_list(norms),
        draws=draws,
        ascent_steps=ascent_steps,
        buckets=buckets,
        block_radius=block_radius,
        block_average=block_average,
        hessian_probes=hessian_probes,
        top_k=top_k,
        lanczos_iters=lanczos_iters,
        lanczos_basis=lanczos_basis,
        tol=tol,
        hutchinson_draws=hutchinson_draws,
        landscape_probes=landscape_probes,
        landscape_span=landscape_span,
        landscape_points=landscape_points,
        landscape_grid=landscape_grid,
        params=params,
        gradient_checkpointing=gradient_checkpointing,
        reference=reference,
    )
    if radii is not None:
        config["radii"] = config["worst_radii"] = comma_numbers(radii, "--radii")
    if worst_radii is not None:
        config["worst_radii"] = comma_numbers(worst_radii, "--worst-radii")
    return measure_command("sharpness", model, o, config, sources={"worst_radii": ("radii", "worst_radii")})
