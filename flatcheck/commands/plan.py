"""`flatcheck plan`: what an audit (or one measure) will compute, its memory per phase and its time, without running
it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .audit import AUDIT_RUN
from .options import AUDIT_SIZES, COMMON, ModelArg, takes


@takes(*AUDIT_RUN, COMMON, **AUDIT_SIZES)
def plan(
    model: ModelArg = None,
    only: Annotated[
        Optional[str],
        typer.Option(
            "--only",
            metavar="MEASURE",
            help="Plan one measure's command (sharpness, exposure, quantize or fid) instead of the whole audit.",
            show_default=False,
        ),
    ] = None,
    memory: Annotated[
        Optional[str],
        typer.Option(
            "--memory",
            metavar="SIZE",
            help="Plan against this much device memory (e.g. 80GB for one 80 GB GPU) instead of what this machine has "
            "free; with --device cuda, plan for a GPU this machine does not have.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            help="Audit options from this TOML file's [audit] tables, as `flatcheck audit --config` reads them.",
            show_default=False,
        ),
    ] = None,
    timing: Annotated[
        bool,
        typer.Option(
            "--timing/--no-timing",
            help="Time one forward and one forward + backward of the real model to estimate each phase's time "
            "(loads the weights; skipped when they do not fit).",
        ),
    ] = True,
    o=None,
) -> None:
    """Plan a run without running it: per measure and phase, the denoiser's forward passes, gradients and Hessian-vector products,
    the estimated peak memory (weights + parameter-sized vectors + one call's graph, traced on the meta device: no weights are
    loaded for it) and the estimated time on this device (calibrated by one timed forward and backward). Says whether the run
    fits, and which options would make it fit.

    Takes the audit's options (--quick, sizes, --skip) and the sharpness memory options (--params, --gradient-checkpointing)."""  # noqa: E501 - the command's --help text, shown with its line breaks
    from .options import audit_options, check_inputs
    from .planning import plan_command

    check_inputs(o, model)  # paths and spellings, before torch is imported

    table = None
    if config is not None:
        from ..gate import load_audit_table

        table = load_audit_table(config)
    audit_options(o, config=table, source=str(config))  # every option and [audit.<measure>] table, before any load
    return plan_command(
        model, o, only=only, memory=memory, timing=timing, audit_options=lambda dev: audit_options(o, dev, config=table)
    )
