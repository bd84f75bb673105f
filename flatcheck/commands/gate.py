"""`flatcheck gate`: audit (or read a report), check the thresholds of flatcheck.toml, exit 1 if one is crossed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .audit import AUDIT_RUN
from .destinations import FILE
from .options import (
    AUDIT_SIZES,
    COMMON,
    REPORTS,
    ModelArg,
    audit_options,
    check_inputs,
    console,
    load_checkpoint,
    run_with_progress,
    takes,
)

ConfigOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--config",
        help="Gate config (flatcheck.toml, or a pyproject.toml with [tool.flatcheck]). Default: ./flatcheck.toml, "
        "then ./pyproject.toml.",
        show_default=False,
    ),
]
BaselineOpt = Annotated[
    Optional[str],
    typer.Option(
        "--baseline",
        help="For relative rules: a JSON report, or a checkpoint that is then audited with the same settings.",
        show_default=False,
    ),
]
JunitOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--junit",
        help="Also write the outcome as JUnit XML here (one test case per rule; failures carry the row), for "
        "GitHub, GitLab or Jenkins test reports.",
        show_default=False,
    ),
    FILE,
]
ReportOpt = Annotated[
    Optional[Path],
    typer.Option("--report", help="Gate this JSON report instead of auditing MODEL.", show_default=False),
]


@takes(*AUDIT_RUN, REPORTS, COMMON, **AUDIT_SIZES, seed=None)
def gate(
    model: ModelArg = None,
    config: ConfigOpt = None,
    baseline: BaselineOpt = None,
    report: ReportOpt = None,
    junit: JunitOpt = None,
    o=None,
) -> int:
    """Check thresholds on any number of the audit report; exit 1 and list the failing rows when one is crossed.

    Audit options come from the config's [audit] table; options given here override them. Under GitHub Actions
    failed rules are also annotations, and $GITHUB_OUTPUT gets verdict, failed, rules and report.
    """
    import os

    from ..errors import EXIT_GATE_FAILED, InputError
    from ..gate import check_rules, evaluate, load_config, load_report, lookup
    from ..report.ci import OUTPUT
    from ..report.markdown import gate_markdown, write_step_summary
    from ..report.terminal import gate_renderable
    from ..report.writers import write_reports, write_text
    from ..results import document, to_jsonable, write_json

    if o.out is not None:  # beside the audit's files (checked with --out itself), the gate's own
        from .destinations import Writes, check

        check("--out", o.out, Writes("folder", files=("gate.md",)))
    if os.environ.get(OUTPUT):  # appended to after the gate, like the step summary: checked now
        from .destinations import check_append

        check_append(f"${OUTPUT}", os.environ[OUTPUT])
    cfg = load_config(config)  # config errors first: exit 2 before minutes of auditing
    con = console(o.json)
    if report is not None and model is not None:
        raise InputError("give MODEL (to audit) or --report (an existing audit), not both")
    if report is None:
        check_inputs(o, model)  # paths and spellings, before the audit imports torch
    baseline_spec = baseline or cfg.baseline
    needs_baseline = any(r.relative for r in cfg.rules)
    if needs_baseline and baseline_spec is None:
        raise InputError("the config has relative rules: pass --baseline REPORT.json|MODEL or set gate.baseline")
    planned = None
    if report is None:  # the [audit] tables, then every rule's number against what this audit will produce
        from ..auditing import report_paths

        planned = audit_options(o, config=cfg.audit, source=cfg.source)
        check_rules(cfg, report_paths(planned))
    base_doc = None
    if needs_baseline and _is_report(baseline_spec):  # read now: what it lacks is known before the audit
        base_doc = load_report(baseline_spec)
        for rule in cfg.rules:
            if rule.relative:
                try:
                    lookup(base_doc, rule.metric)
                except InputError as exc:
                    raise InputError(f"baseline {baseline_spec}: {exc}") from None
        if planned is not None:  # the options the audit's report will record (located, not loaded: no torch)
            from ..auditing import options_document, resolve_for
            from ..core.checkpoint import load_keywords, locate

            found = locate(model, **load_keywords(o))
            _check_same_settings({"options": options_document(resolve_for(found, planned))}, base_doc, baseline_spec)

    def audit(spec: str | None):
        from ..api import audit as run_audit

        ckpt, dev = load_checkpoint(spec, o)
        opts = audit_options(o, dev, config=cfg.audit)
        return run_with_progress(con, run_audit, ckpt, options=opts)

    if report is not None:
        doc, source = load_report(report), str(report)
    else:
        result = audit(model)
        doc = write_reports(result, con, json=None, out=o.out, markdown=o.markdown, html=o.html, details=False)
        source = model or "digits-base"
    if needs_baseline:
        if base_doc is None:  # a checkpoint: audited with exactly the options of the gated audit
            base_doc = to_jsonable(audit(baseline_spec))
        _check_same_settings(doc, base_doc, baseline_spec)
    outcome = evaluate(
        cfg.rules, doc, base_doc, config=cfg.source, baseline_name=baseline_spec if needs_baseline else None
    )
    con.print(gate_renderable(outcome))
    write_step_summary(gate_markdown(outcome, source))
    if o.json:
        write_json(document("gate", {"gate": outcome, "report": doc}), o.json)
    if o.out is not None:
        write_text(Path(o.out) / "gate.md", gate_markdown(outcome, source))
    _ci_outputs(outcome, source, junit, _report_path(report, o), o.json)
    return 0 if outcome.passed else EXIT_GATE_FAILED


def _report_path(report: Path | None, o) -> str | None:
    """The gated audit report on disk: --report, else --out's audit.json, else a --json gate file (which holds it)."""
    if report is not None:
        return str(report)
    if o.out is not None:
        return str(Path(o.out) / "audit.json")
    return str(o.json) if o.json and str(o.json) != "-" else None


def _ci_outputs(outcome, source: str, junit: Path | None, report: str | None, json_dest) -> None:
    import sys

    from ..report.ci import annotations, junit_xml, under_github_actions, write_github_outputs
    from ..report.writers import write_text

    if junit is not None:
        write_text(junit, junit_xml(outcome, source))
    write_github_outputs(outcome, report)
    if under_github_actions():  # workflow commands: read from the step's log (stderr when stdout is JSON)
        stream = sys.stderr if json_dest == "-" else sys.stdout
        for line in annotations(outcome, outcome.config):
            print(line, file=stream)
        stream.flush()


def _is_report(spec: str) -> bool:
    """A baseline given as a JSON report (else it names a checkpoint to audit)."""
    return spec.endswith(".json") or Path(spec).is_file()


def _check_same_settings(doc: dict, base: dict, name: str) -> None:
    from ..errors import InputError

    a, b = doc.get("options", {}), base.get("options", {})
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
        raise InputError(
            f"baseline {name} was audited with other options ({', '.join(diff)}): relative thresholds would compare "
            "different things"
        )
