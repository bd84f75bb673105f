"""`flatcheck info`."""

from __future__ import annotations

from .options import COMMON, ModelArg, console, load_checkpoint, takes


@takes(COMMON)
def info(model: ModelArg = None, o=None) -> None:
    """Describe a checkpoint: pipeline and denoiser classes, parameters, sample shape, conditioning, schedule, weight files."""
    from ..core.info import describe_checkpoint
    from ..report.terminal import info_table
    from ..results import document, write_json

    ckpt, _ = load_checkpoint(model, o)
    result = describe_checkpoint(ckpt)
    if o.json:
        write_json(document("info", result), o.json)
    if o.json != "-":
        console(o.json).print(info_table(result))
