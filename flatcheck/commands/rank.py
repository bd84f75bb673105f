"""`flatcheck rank CKPT CKPT CKPT...`: does flatness predict robustness? Rank correlations over a zoo."""

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
    console,
    load_checkpoint,
    run_with_progress,
    show_table_document,
    takes,
)

ModelsArg = Annotated[
    list[str],
    typer.Argument(
        help="Three or more checkpoints (folders, Hub ids or bundled names); with --reports, audit JSON reports.",
        show_default=False,
    ),
]
ReportsOpt = Annotated[
    bool,
    typer.Option(
        "--reports",
        help="The arguments are audit reports (flatcheck audit --json, or a compare/rank JSON holding reports) "
        "of one bank, seed set and option set: rank them without auditing. Audit options are then ignored; --seed "
        "seeds the bootstrap.",
    ),
]
PlotOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--plot",
        help="Write a scatter-plot grid PNG here: a row per measure, a column per outcome, one point per checkpoint.",
        show_default=False,
    ),
    FILE,
]
MarkdownOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--markdown",
        help="Write the rank table and sentences as Markdown here (also to $GITHUB_STEP_SUMMARY when set).",
        show_default=False,
    ),
    FILE,
]
BootstrapOpt = Annotated[
    int,
    typer.Option(
        "--bootstrap", help="Bootstrap rounds of each interval (over checkpoints, and over measurement noise)."
    ),
]
MeasuresOpt = Annotated[
    Optional[str],
    typer.Option(
        "--measures",
        help="Only these sharpness measures: comma-separated globs of their keys, e.g. 'hessian.*,worst.adaptive.*'. "
        "Default: every whole-bank measure; the per-timestep-bucket versions (keys ending .tLO-HI) when a pattern "
        "names them, e.g. '*'. The JSON lists the keys.",
        show_default=False,
    ),
]
SettingsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--quantize-settings",
        help="Quantization settings of every audit, comma-separated: WxAy (W8A8, W6A6, W4A4...) "
        "and bitsandbytes bnb-int8/bnb-nf4/bnb-fp4 (default: the profile's, e.g. W8A8,W4A4 with --quick).",
        show_default=False,
    ),
]
OutcomesOpt = Annotated[
    Optional[str],
    typer.Option(
        "--outcomes",
        help="Only these robustness outcomes: comma-separated globs of their keys, e.g. 'quantize.W4A4.*' "
        "(default: all).",
        show_default=False,
    ),
]


@takes(*AUDIT_RUN, COMMON, **AUDIT_SIZES)
def rank(
    models: ModelsArg,
    reports: ReportsOpt = False,
    plot: PlotOpt = None,
    markdown: MarkdownOpt = None,
    bootstrap: BootstrapOpt = 2000,
    measures: MeasuresOpt = None,
    outcomes: OutcomesOpt = None,
    quantize_settings: SettingsOpt = None,
    o=None,
) -> None:
    """Audit checkpoints with one bank and seed set, then rank-correlate every sharpness measure with every robustness outcome.

    Spearman's rho and Kendall's tau-b over the checkpoints, each with a 95% bootstrap interval over
    checkpoints and one over measurement noise (the reports' standard errors). Outcomes are signed
    so that larger means more damage: a positive rho means sharper checkpoints suffer more.
    """  # noqa: E501 - the command's --help text, shown with its line breaks
    from ..errors import InputError
    from ..rank import MIN_CHECKPOINTS, load_reports, rank_reports
    from ..report.markdown import rank_markdown
    from ..report.terminal import rank_renderable
    from ..results import document

    if reports and quantize_settings:
        raise InputError("--quantize-settings sets what the audits run: it has no effect with --reports")
    if getattr(o, "lora", None) is not None:
        # One adapter on every ranked checkpoint answers no question; ranking LoRAs is ranking their audits
        raise InputError(
            "rank takes no --lora (it would put one adapter on every checkpoint): audit each base+LoRA with "
            "`flatcheck audit BASE --lora FILE --json R.json`, then `flatcheck rank --reports R1.json R2.json ...`"
        )
    if len(set(models)) < len(models):
        raise InputError(f"the same {'report' if reports else 'checkpoint'} is named twice")
    con = console(o.json)
    if reports:  # counted once read: a compare or rank JSON holds several
        docs, names = load_reports(models)
    else:
        if len(models) < MIN_CHECKPOINTS:  # before minutes of auditing
            raise InputError(
                f"rank needs at least {MIN_CHECKPOINTS} checkpoints (got {len(models)}), e.g. flatcheck rank "
                "digits-base digits-ema digits-sam"
            )
        skipped = set(o.skip or ())
        if "sharpness" in skipped or {"quantize", "exposure"} <= skipped:
            raise InputError(
                "rank correlates sharpness with quantize and exposure outcomes: --skip sharpness, or both quantize "
                "and exposure, leaves nothing to rank"
            )
        from ..compare import audit_many
        from ..results import to_jsonable

        config = None
        if quantize_settings:
            from ..measures.quantize import QuantizeConfig, check_bitsandbytes

            names = [x.strip() for x in quantize_settings.split(",") if x.strip()]
            settings = QuantizeConfig(settings=names).settings  # a bad name fails here, before any model loads
            if any(s.backend == "bnb" for s in settings):
                check_bitsandbytes()
            config = {"quantize": {"settings": names}}
        audit_options(o, config=config)  # every option, before any checkpoint loads
        loaded = [load_checkpoint(m, o) for m in models]
        opts = audit_options(o, loaded[0][1], config=config)
        # One bank, one seed set, every checkpoint audited once (compare's run).
        docs = [to_jsonable(r) for r in run_with_progress(con, audit_many, [c for c, _ in loaded], opts)]
        names = list(models)
    ranking = rank_reports(docs, names, seed=o.seed, rounds=bootstrap, measures=measures, outcomes=outcomes)
    doc = document("rank", ranking)
    if plot is not None:
        from ..report.plots import rank_scatter

        doc["artifacts"] = {"plot": str(rank_scatter(doc, plot))}
    show_table_document(con, doc, rank_renderable(doc), rank_markdown(doc), markdown, o.json)
