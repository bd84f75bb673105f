"""`flatcheck info`."""

from __future__ import annotations

from .options import (
    AllowPickleOpt, DebugOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelArg, OutOpt, SchedulerOpt, SeedOpt, console, load_checkpoint,
)


def info(
    model: ModelArg = None,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    seed: SeedOpt = 0,
    json: JsonOpt = None,
    out: OutOpt = None,
    allow_pickle: AllowPickleOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Describe a checkpoint: pipeline and denoiser classes, parameters, sample shape, conditioning, schedule, weight files."""
    from ..info import describe_checkpoint
    from ..report.jsonio import write_json
    from ..report.terminal import info_table

    ckpt, _ = load_checkpoint(model, scheduler, device, dtype, allow_pickle)
    result = describe_checkpoint(ckpt)
    if json:
        write_json(result, json)
    if json != "-":
        console(json).print(info_table(result))


ORDER = 0  # position in `flatcheck --help`


def register(app) -> None:
    app.command()(info)
