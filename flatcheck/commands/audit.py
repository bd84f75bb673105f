"""`flatcheck audit`: every measure on one shared bank and sample set, and every report format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .destinations import FILE
from .options import (
    AUDIT_SIZES,
    BATCH,
    COMMON,
    COND,
    DATA,
    DRY_RUN,
    FD,
    MEMORY,
    PROFILE,
    REPORTS,
    SAMPLES,
    SAMPLES_FROM,
    SEED,
    TIMESTEPS,
    ModelArg,
    audit_options,
    check_inputs,
    console,
    load_checkpoint,
    run_with_progress,
    sample_folder_inputs,
    takes,
)

# The audit's run, shared by audit, compare and gate: sizes default to the profile's (None).
AUDIT_RUN = (PROFILE, SEED, DATA, TIMESTEPS, SAMPLES, BATCH, COND, FD, MEMORY)


@takes(*AUDIT_RUN, SAMPLES_FROM, REPORTS, DRY_RUN, COMMON, **AUDIT_SIZES)
def audit(
    model: ModelArg = None,
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            help="Read audit options from this TOML file's [audit] table and its [audit.<measure>] tables "
            "(flatcheck.toml, or [tool.flatcheck] of a pyproject.toml); options given here win.",
            show_default=False,
        ),
    ] = None,
    model_card: Annotated[
        Optional[Path],
        typer.Option(
            "--model-card",
            metavar="README.md",
            help="Write the headline numbers into this model card: a Markdown section between flatcheck markers and "
            "model-index results in its YAML front matter (created if absent; the rest of the file is kept).",
            show_default=False,
        ),
        FILE,
    ] = None,
    o=None,
) -> None:
    """Audit a checkpoint: sharpness, exposure bias, quantization and FD/FID, with one verdict per measure.

    Bundled digits models use their training set as reference data (--data none for data-free).
    """
    check_inputs(o, model)  # paths and spellings, before torch is imported
    from ..api import audit as run_audit
    from ..errors import AuditInterrupted, Interrupted, RunError
    from ..report.writers import write_reports

    table = None
    if config is not None:
        from ..gate import load_audit_table

        table = load_audit_table(config)
    audit_options(o, config=table, source=str(config))  # every option and [audit.<measure>] table, before any load
    if o.dry_run:
        from .planning import plan_command

        return plan_command(model, o, audit_options=lambda dev: audit_options(o, dev, config=table))
    ckpt, dev = load_checkpoint(model, o)
    inputs = sample_folder_inputs(o, ckpt, also_given=table or {})
    opts = audit_options(o, dev, config=table)
    if not inputs and o.out is not None:  # a rerun with the same options resumes the shared samples from here
        inputs = dict(sample_root=str(o.out / "samples"))
    con = console(o.json)
    try:
        report = run_with_progress(con, run_audit, ckpt, options=opts, run=dict(inputs=inputs))
    except AuditInterrupted as stop:  # Ctrl-C between or in measures: what finished is still written
        write_reports(stop.report, con, json=o.json, out=o.out, markdown=o.markdown, html=o.html)
        raise Interrupted(
            f"interrupted during {stop.measure}: the report of the measures that finished was written "
            "(weights in memory were restored)"
        ) from None
    write_reports(report, con, json=o.json, out=o.out, markdown=o.markdown, html=o.html)
    if not report.complete:  # exit 3, after the report of what finished (a model card only of a whole audit)
        name, why = next(iter(report.incomplete.items()))
        raise RunError(f"{name} did not finish ({why['error']}); the report of the measures that finished was written")
    if model_card is not None:
        from ..card import write_card

        write_card(model_card, report.to_dict())
