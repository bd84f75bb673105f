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


@takes(*AUDIT_RUN, COMMON, **AUDIT_SIZES)
def compare(models: ModelsArg, markdown: MarkdownOpt = None, o=None) -> None:
    """Audit checkpoints with the same bank, seeds and settings, and show them side by side with the differences.

    For EMA vs raw weights, SAM vs baseline, before vs after fine-tuning. Differences larger than
    two standard errors are in bold.
    """
    from ..errors import InputError

    if len(models) < 2:
        raise InputError("compare needs at least two checkpoints (e.g. flatcheck compare digits-base digits-sam)")
    if len(set(models)) < len(models):
        raise InputError("the same checkpoint is named twice")
    check_inputs(o, *models)  # paths and spellings, before torch is imported
    audit_options(o)  # every option, before any checkpoint loads
    from ..compare import audit_many, compare_reports
    from ..report.markdown import compare_markdown
    from ..report.terminal import compare_renderable
    from ..results import document

    loaded = [load_checkpoint(m, o) for m in models]
    opts = audit_options(o, loaded[0][1])
    con = console(o.json)
    reports = run_with_progress(con, audit_many, [c for c, _ in loaded], opts)
    doc = document("compare", compare_reports(reports, models))
    show_table_document(con, doc, compare_renderable(doc), compare_markdown(doc), markdown, o.json)
