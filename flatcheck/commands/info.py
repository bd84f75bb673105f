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
    from ..core.checkpoint import load_keywords
    from .options import check_lora_options

    check_lora_options(o)  # --lora: its file checked; whether it fits the model is known only once weights load
    result = describe_files(model, **load_keywords(o))
    if o.json:
        write_json(document("info", result), o.json)
    if o.json != "-":
        con = console(o.json)
        con.print(info_table(result))
        if o.lora is not None:
            con.print(f"LoRA {o.lora}: a LoRA file; the base model is described (the other commands fuse it)")
