"""`flatcheck info`."""

from __future__ import annotations

from .options import COMMON, ModelArg, check_run_options, console, takes


@takes(COMMON)
def info(model: ModelArg = None, o=None) -> None:
    """Describe a checkpoint: pipeline and denoiser classes, parameters, sample shape, conditioning, schedule, weight files.

    Read from the configs and the safetensors headers: no weights are loaded, so any size is described in seconds.
    """  # noqa: E501 - the command's --help text, shown with its line breaks
    from ..core.info import describe_files
    from ..report.terminal import info_table
    from ..results import document, write_json

    # Nothing runs, so the run options are only checked (torch would cost more than the whole description).
    check_run_options(o)
    result = describe_files(
        model, scheduler=o.scheduler, allow_pickle=o.allow_pickle, variant=o.variant, model_config=o.model_config
    )
    if o.json:
        write_json(document("info", result), o.json)
    if o.json != "-":
        console(o.json).print(info_table(result))
