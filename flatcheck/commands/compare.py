"""`flatcheck compare A B [C ...]`: the same audit of several checkpoints, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .audit import AUDIT_RUN
from .destinations import FILE
from .options import (
    AUDIT_SIZES,
    COMMON,
    audit_options,
    check_inputs,
    console,
    load_checkpoint,
    run_with_progress,
    show_table_document,
    takes,
)

ModelsArg = Annotated[
    list[str], typer.Argument(help="Two or more checkpoints (folders, Hub ids or bundled names).", show_default=False)
]
MarkdownOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--markdown",
        help="Write the side-by-side table as Markdown here (also to $GITHUB_STEP_SUMMARY when set).",
        show_default=False,
    ),
    FILE,
]


LoraBOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--lora-b",
        help="A LoRA for the second checkpoint only: `compare BASE BASE --lora-b LORA` puts base and base+LoRA side "
        "by side (same bank and seeds). --lora applies to every checkpoint.",
        show_default=False,
    ),
]


@takes(*AUDIT_RUN, COMMON, **AUDIT_SIZES)
def compare(models: ModelsArg, markdown: MarkdownOpt = None, lora_b: LoraBOpt = None, o=None) -> None:
    """Audit checkpoints with the same bank, seeds and settings, and show them side by side with the differences.

    For EMA vs raw weights, SAM vs baseline, before vs after fine-tuning, base vs base+LoRA (--lora-b).
    Differences larger than two standard errors are in bold.
    """
    from ..errors import InputError

    if len(models) < 2:
        raise InputError("compare needs at least two checkpoints (e.g. flatcheck compare digits-base digits-sam)")
    names = list(models)
    loras = [o.lora] * len(models)
    if lora_b is not None:  # the second column is the second checkpoint with this LoRA (on top of --lora's, if any)
        if o.lora is not None:
            raise InputError("--lora-b is the second checkpoint's LoRA: give it without --lora")
        loras[1] = lora_b
        names[1] = f"{models[1]}+lora:{Path(lora_b).name}"
    if len(set(names)) < len(names):
        raise InputError("the same checkpoint is named twice (base vs base+LoRA: compare BASE BASE --lora-b LORA)")
    o.lora_b = lora_b
    check_inputs(o, *models)  # paths and spellings, before torch is imported
    audit_options(o)  # every option, before any checkpoint loads
    from ..compare import audit_many, compare_reports
    from ..report.markdown import compare_markdown
    from ..report.terminal import compare_renderable
    from ..results import document

    loaded = [
        load_checkpoint(m, o, lora=lo, option="--lora-b" if i == 1 and lora_b is not None else "--lora")
        for i, (m, lo) in enumerate(zip(models, loras))
    ]
    opts = audit_options(o, loaded[0][1])
    con = console(o.json)
    reports = run_with_progress(con, audit_many, [c for c, _ in loaded], opts)
    doc = document("compare", compare_reports(reports, names))
    show_table_document(con, doc, compare_renderable(doc), compare_markdown(doc), markdown, o.json)
