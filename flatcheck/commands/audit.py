"""`flatcheck audit`: every measure on one shared bank and sample set, and every report format."""

from __future__ import annotations

from ._audit_options import (
    AuditSamplerOpt, BatchOpt, FidFeaturesOpt, FullOpt, HtmlOpt, MarkdownOpt, ProbesOpt, QuickOpt, ReportDirOpt, SamplesOpt, SkipOpt, StepsOpt,
    TimestepsOpt, build_options, profile_name,
)
from .options import (
    AllowPickleOpt, DataOpt, DebugOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelArg, SchedulerOpt, WeightsOpt, console, load_checkpoint,
)


def audit(
    model: ModelArg = None,
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
    out: ReportDirOpt = None,
    markdown: MarkdownOpt = None,
    html: HtmlOpt = None,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    allow_pickle: AllowPickleOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Audit a checkpoint: sharpness, exposure bias, quantization and FD/FID, with one verdict per area.

    Bundled digits models use their training set as reference data (--data none for data-free).
    """
    from ..audit import audit_checkpoint
    from ..report.writers import progress_bar, write_reports

    ckpt, dev = load_checkpoint(model, scheduler, device, dtype, allow_pickle)
    opts = build_options(profile_name(quick, full), dev, seed=seed, data=data, probes=probes, samples=samples, steps=steps,
                         sampler=sampler, timesteps=timesteps, skip=skip, batch_size=batch_size, fid_features=fid_features,
                         fid_weights=str(fid_weights) if fid_weights else None)
    con = console(json)
    with progress_bar(con) as progress:
        report = audit_checkpoint(ckpt, opts, progress)
    write_reports(report, con, json=json, out=out, markdown=markdown, html=html)


ORDER = 10


def register(app) -> None:
    app.command()(audit)
