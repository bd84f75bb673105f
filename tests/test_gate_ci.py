"""The gate in CI formats (issue 28, item 3): JUnit XML against a JUnit schema, $GITHUB_OUTPUT lines, GitHub
annotations, --junit checked before any work, and the composite action's run steps executed as a script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flatcheck.gate import evaluate, parse_config
from flatcheck.report.ci import annotations, github_outputs, junit_xml
from flatcheck.results import validate as validate_document

ROOT = Path(__file__).resolve().parents[1]
XSD = ROOT / "tests" / "data" / "junit.xsd"
ACTION = ROOT / "examples" / "gate" / "action.yml"
REPORT = {
    "loss": {"value": 1.0, "stderr": 0.1, "n": 64},
    "fid": {"value": {"value": 6.0, "stderr": 1.0, "n": 64}},
    "plain": 0.5,
}


def outcome():
    rules = parse_config(
        {
            "gate": {
                "rules": [
                    {"metric": "loss", "max": 2.0, "name": 'loss <ok> & "quoted"'},  # passes; XML-special name
                    {"metric": "fid.value", "max": 5.0},  # fails (point)
                    {"metric": "loss", "max": 0.9, "mode": "interval"},  # passes within noise: a warning
                    {"metric": "plain", "max": 1.0, "mode": "strict"},  # passes, judged as a point: a warning
                ]
            }
        }
    ).rules
    return evaluate(rules, REPORT, config="flatcheck.toml")


def validate(text: str) -> list[str]:
    """Violations of tests/data/junit.xsd (xmlschema, a full XML Schema 1.0 validator)."""
    import xmlschema

    return [str(e) for e in xmlschema.XMLSchema(str(XSD)).iter_errors(text)]


def test_junit_validates_and_has_one_case_per_rule():
    res = outcome()
    text = junit_xml(res, "audit.json")
    assert validate(text) == []
    root = ET.fromstring(text.encode())
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 4 and suite.get("tests") == "4" and suite.get("failures") == "1"
    assert root.get("failures") == "1"
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 1 and failed[0].get("name").startswith("fid.value <= 5")
    assert failed[0].find("failure").get("message") == res.rows[1].text()
    assert "value 6 > 5" in failed[0].find("failure").get("message")
    assert cases[0].get("name").startswith('loss <ok> & "quoted"')  # escaped in the file, intact when read
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props == {"report": "audit.json", "config": "flatcheck.toml", "baseline": ""}


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda s: s.replace(' classname="flatcheck.gate"', "", 1), "classname"),
        (lambda s: s.replace('tests="4"', 'tests="four"', 1), "four"),
        (lambda s: s.replace("<properties>", "<properties><oops/>", 1), "oops"),
        (lambda s: s.replace("</testsuite>", "<testcase/></testsuite>"), "name"),
    ],
)
def test_the_schema_check_can_fail(break_it, message):
    errors = validate(break_it(junit_xml(outcome(), "audit.json")))
    assert errors and any(message in e for e in errors), errors


def test_github_outputs_and_annotations():
    res = outcome()
    assert github_outputs(res, "out/audit.json") == "verdict=fail\nfailed=1\nrules=4\nreport=out/audit.json\n"
    lines = annotations(res, "flatcheck.toml")
    assert [ln.split(" ", 1)[0] for ln in lines] == ["::error", "::warning", "::warning"]
    assert lines[0].startswith("::error file=flatcheck.toml,title=flatcheck gate%3A fid.value::fid.value = 6")
    assert "within noise" in lines[1] and "judged as a point" not in lines[1]
    assert all("\n" not in ln for ln in lines)


def test_junit_and_github_output_destinations_fail_before_any_work(cli, tmp_path, monkeypatch):
    cfg = tmp_path / "flatcheck.toml"
    cfg.write_text('[[gate.rules]]\nmetric = "fid.value"\nmax = 5\n')
    (tmp_path / "dir.xml").mkdir()
    code, out, err = cli("gate", "digits-base", "--config", cfg, "--junit", tmp_path / "dir.xml")
    assert code == 2 and "--junit" in err and "is a folder" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "missing" / "out.txt"))
    code, out, err = cli("gate", "digits-base", "--config", cfg)
    assert code == 2 and "$GITHUB_OUTPUT" in err and "does not exist" in err


def action_steps() -> list[dict]:
    import yaml

    doc = yaml.safe_load(ACTION.read_text())
    assert doc["runs"]["using"] == "composite"
    assert {"model", "config", "baseline", "python-version"} <= set(doc["inputs"])
    return doc["runs"]["steps"]


def substitute(text: str, inputs: dict) -> str:
    """${{ inputs.x }} -> its value (the runner does this before the shell sees the step)."""
    return re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: inputs[m.group(1)], text)


def test_action_caches_installs_from_the_checkout_and_uploads_always():
    steps = action_steps()
    uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    cached = [s["with"]["path"] for s in steps if s.get("uses", "").startswith("actions/cache@")]
    assert "~/.cache/flatcheck" in cached and "~/.cache/pip" in cached
    assert uses["actions/upload-artifact"]["if"] == "always()"
    install = next(s["run"] for s in steps if "pip install" in s.get("run", ""))
    assert "$GITHUB_ACTION_PATH/../.." in install  # the repository at REF, not a package index
    assert (ACTION.parent / "../../pyproject.toml").resolve().is_file()


def test_action_run_steps_execute_as_a_script(tmp_path):
    """The action's shell steps (install left out: it needs the network), inputs substituted as the runner does,
    on the bundled model at the tiny sizes: exit 1 for the failing rule, JUnit file valid, outputs written."""
    from flatcheck.core.checkpoint import bundled_models

    if "digits-base" not in bundled_models():
        pytest.skip("bundled digits-base not installed")
    cfg = tmp_path / "flatcheck.toml"
    cfg.write_text(
        '[[gate.rules]]\nmetric = "fid.kid"\nmax = 100.0\nmode = "strict"\n'
        '[[gate.rules]]\nmetric = "fid.value"\nmax = 0.0\n'  # an FD is never below 0: fails
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "flatcheck"  # `flatcheck` as installed: this checkout, one thread
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m flatcheck "$@"\n')
    shim.chmod(0o755)
    inputs = {
        "model": "digits-base",
        "config": str(cfg),
        "baseline": "",
        "python-version": "3.11",
        "args": "--quick --probes 8 --samples 8 --steps 2 --batch-size 8 --skip sharpness --skip quantize "
        "--skip exposure --device cpu --threads 1",
        "out": str(tmp_path / "out"),
    }
    gh_out, summary = tmp_path / "github_output", tmp_path / "summary.md"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "GITHUB_OUTPUT": str(gh_out),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTION_PATH": str(ACTION.parent),
    }
    ran = []
    for step in action_steps():
        if "run" not in step or "pip install" in step["run"]:
            continue
        assert step["shell"] == "bash"
        step_env = {**env, **{k: substitute(str(v), inputs) for k, v in step.get("env", {}).items()}}
        res = subprocess.run(
            ["bash", "-c", substitute(step["run"], inputs)], env=step_env, cwd=tmp_path, capture_output=True, text=True
        )
        ran.append(step.get("name"))
        assert res.returncode == 1, res.stdout + res.stderr  # the gate's "a rule failed"
        assert "::error file=" in res.stdout and "fid.value" in res.stdout
    assert ran == ["Audit and gate"]
    out = Path(inputs["out"])
    text = (out / "junit.xml").read_text()
    assert validate(text) == []
    assert len(ET.fromstring(text.encode()).findall("testsuite/testcase")) == 2
    lines = gh_out.read_text().splitlines()
    assert lines == ["verdict=fail", "failed=1", "rules=2", f"report={out / 'audit.json'}"]
    assert (out / "audit.json").is_file() and (out / "gate.md").is_file()
    gate = json.loads((out / "gate.json").read_text())
    assert validate_document(gate, "gate") == []
    assert [r["judged"] for r in gate["gate"]["rows"]] == ["strict", "point"] and gate["gate"]["rows"][0][
        "low"
    ] is not None
    assert "flatcheck gate failed" in summary.read_text()
