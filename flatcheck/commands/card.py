"""`flatcheck card REPORT.json README.md`: a model card's flatcheck section from a report, without re-running."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .destinations import FILE, check
from .options import DEBUG, takes


@takes(DEBUG)
def card(
    report: Annotated[
        Path, typer.Argument(metavar="REPORT", help="A report JSON (flatcheck audit/sharpness/... --json).")
    ],
    card_path: Annotated[
        Path,
        typer.Argument(metavar="CARD", help="The model card (README.md): created, or its flatcheck parts updated."),
    ],
    o=None,
) -> None:
    """Write a report's headline numbers into a Hugging Face model card: a Markdown section between
    <!-- flatcheck:begin --> and <!-- flatcheck:end --> and `model-index` evaluation results in the YAML front
    matter. The rest of the file is left byte for byte; running twice changes nothing."""
    from ..card import write_card
    from ..errors import InputError
    from ..gate import load_report

    check("CARD", card_path, FILE)
    doc = load_report(report)
    if not isinstance(doc.get("verdicts"), list) or "model" not in doc:
        raise InputError(f"{report} is not a flatcheck audit or measure report (no verdicts)")
    write_card(card_path, doc)
    typer.echo(f"model card: {card_path}")
