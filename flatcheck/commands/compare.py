"""`flatcheck compare A B [C ...]`: the same audit of several checkpoints, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._audit_options import (
    AuditSamplerOpt, BatchOpt, FidFeaturesOpt, FullOpt, ProbesOpt, QuickOpt, SamplesOpt, SkipOpt, StepsOpt, TimestepsOpt, build_options, profile_name,
)
from .options import (
    AllowPickleOpt, DataOpt, DebugOpt, DeviceOpt, DtypeOpt, JsonOpt, SchedulerOpt, WeightsOpt, console, load_checkpoint,
)

ModelsArg = Annotated[list[str], typer.Argument(help="Two or more checkpoints (folders, Hub ids or bundled names).", show_default=False)]


def compare(
    models: ModelsArg,
    quick: QuickOpt = False,
    full: FullOpt = False,
    data: DataOpt = None,
    probes: ProbesOpt = None,
    samples: SamplesOpt = None,
    steps: StepsOpt = None,
    sampler: AuditSamplerOpt = None,
    timesteps: TimestepsOpt = None,
    skip: SkipOpt = None,
    batch_size: BatchOpt = None,
    fid_features: FidFeaturesOpt = None,
    fid_weights: WeightsOpt = None,
    seed: int = 0,
    json: JsonOpt = None,
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Write the side-by-side table as Markdown here (also to $GITHUB_STEP_SUMMARY when set).", show_default=False)] = None,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    allow_pickle: AllowPickleOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Audit checkpoints with the same bank, seeds and settings, and show them side by side with the differences.

    For EMA vs raw weights, SAM vs baseline, before vs after fine-tuning. Differences larger than
    two standard errors are in bold.
    """
    from ..compare import audit_many, compare_reports
    from ..errors import InputError
    from ..report.audit_terminal import compare_renderable
    from ..report.jsonio import to_jsonable, write_json
    from ..report.markdown import compare_markdown, write_step_summary
    from ..report.writers import progress_bar, write_text

    if len(models) < 2:
        raise InputError("compare needs at least two checkpoints (e.g. flatcheck compare digits-base digits-sam)")
    if len(set(models)) < len(models):
        raise InputError("the same checkpoint is named twice")
    loaded = [load_checkpoint(m, scheduler, device, dtype, allow_pickle) for m in models]
    opts = build_options(profile_name(quick, full), loaded[0][1], seed=seed, data=data, probes=probes, samples=samples, steps=steps,
                         sampler=sampler, timesteps=timesteps, skip=skip, batch_size=batch_size, fid_features=fid_features,
                         fid_weights=str(fid_weights) if fid_weights else None)
    con = console(json)
    with progress_bar(con) as progress:
        reports = audit_many([c for c, _ in loaded], opts, progress)
    doc = to_jsonable(compare_reports(reports, models))
    con.print(compare_renderable(doc))
    md = compare_markdown(doc)
    write_step_summary(md)
    if markdown is not None:
        write_text(markdown, md)
    if json:
        write_json(doc, json)


ORDER = 20


def register(app) -> None:
    app.command()(compare)
