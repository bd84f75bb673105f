"""The gate's outcome in the forms CI systems read: JUnit XML, GitHub Actions outputs and annotations.

- JUnit XML (`--junit FILE`): one <testsuite> with one <testcase> per rule; a crossed threshold is a
  <failure> whose message is the row's text. The element and attribute set is the common subset that
  GitHub (test-reporter actions), GitLab (`artifacts:reports:junit`) and Jenkins (JUnit plugin) read;
  tests/data/junit.xsd is the schema the tests hold it to.
- `$GITHUB_OUTPUT` (when set): `verdict`, `failed`, `rules` and `report` lines for later steps.
- Annotations (when GITHUB_ACTIONS=true): `::error` for each failed rule, `::warning` for a rule that held
  only thanks to its interval or was judged as a point for want of an uncertainty.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from ..gate import WITHIN_NOISE

SUITE = "flatcheck gate"
OUTPUT = "GITHUB_OUTPUT"


def case_name(row) -> str:
    label = row.name or row.metric
    return f"{label} {row.condition}" + ("" if row.mode == "point" else f" ({row.mode} {row.confidence:.0%})")


def junit_xml(result, source: str) -> str:
    """The gate as a JUnit XML document: one test case per rule, failures carrying the row's text."""
    failures = len(result.failures)
    tests = str(len(result.rows))
    root = ET.Element("testsuites", name=SUITE, tests=tests, failures=str(failures), errors="0", time="0")
    suite = ET.SubElement(
        root, "testsuite", name=SUITE, tests=tests, failures=str(failures), errors="0", skipped="0", time="0"
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (("report", source), ("config", result.config), ("baseline", result.baseline or "")):
        ET.SubElement(props, "property", name=name, value=str(value))
    for row in result.rows:
        case = ET.SubElement(suite, "testcase", classname="flatcheck.gate", name=case_name(row), time="0")
        details = _details(row)
        if not row.passed:
            failure = ET.SubElement(case, "failure", message=row.text(), type="threshold crossed")
            failure.text = details
        else:
            ET.SubElement(case, "system-out").text = details
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _details(row) -> str:
    lines = [row.text(), f"value: {_num(row.value)} (s.e. {_num(row.stderr)})"]
    if row.low is not None:
        lines.append(f"interval: [{row.low:.6g}, {row.high:.6g}] {row.interval}")
    base = f" (baseline {_num(row.baseline)})" if row.baseline is not None else ""
    lines.append(f"bound: {_num(row.bound)}{base}")
    lines.append(f"mode: {row.mode}, judged as {row.judged}")
    if row.note:
        lines.append(f"note: {row.note}")
    return "\n".join(lines)


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.6g}"


def github_outputs(result, report: str | None) -> str:
    """`name=value` lines for $GITHUB_OUTPUT: verdict (pass|fail), failed and rules (counts), report (a path or '')."""
    lines = {
        "verdict": "pass" if result.passed else "fail",
        "failed": str(len(result.failures)),
        "rules": str(len(result.rows)),
        "report": (report or "").replace("\n", " "),
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def write_github_outputs(result, report: str | None) -> Path | None:
    """Append the outputs to $GITHUB_OUTPUT when it is set (checked writable before the audit)."""
    dest = os.environ.get(OUTPUT)
    if not dest:
        return None
    with open(dest, "a", encoding="utf-8") as fh:
        fh.write(github_outputs(result, report))
    return Path(dest)


def _escape(text: str, prop: bool = False) -> str:
    """GitHub workflow-command escaping (data; properties also escape ':' and ',')."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def annotations(result, config: str = "") -> list[str]:
    """`::error` lines for failed rules, `::warning` lines for rules that passed only within noise or were judged
    as points although the rule asked for an interval."""
    out = []
    where = f"file={_escape(config, True)}," if config else ""
    for row in result.rows:
        doubtful = row.judged != row.mode or row.reason.endswith(WITHIN_NOISE)
        kind = "error" if not row.passed else "warning" if doubtful else ""
        if kind:
            title = _escape(f"flatcheck gate: {row.metric}", True)
            out.append(f"::{kind} {where}title={title}::{_escape(row.text())}")
    return out


def under_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"
