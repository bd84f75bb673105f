"""A measure that fails late keeps the work of the others (issue 26, item 4): the reports are written, the failed
section says what failed, the exit code is the documented one, and a rerun resumes the shared samples."""

from __future__ import annotations

import dataclasses
import json

import pytest

from .audit_fixtures import TINY_CLI

# The cheapest audit with a measure before and after quantize: exposure (first, makes the shared samples), quantize.
ARGS = [*TINY_CLI, "--skip", "sharpness", "--features", "digits-cnn"]


def _fail_with(monkeypatch, name: str, exc: BaseException) -> list:
    from flatcheck.measures import REGISTRY

    calls = []

    def boom(*args, **kwargs):
        calls.append(name)
        raise exc

    monkeypatch.setitem(REGISTRY, name, dataclasses.replace(REGISTRY[name], run=boom))
    return calls


def _files(out):
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


def test_a_late_failure_writes_the_report_and_exits_3_and_a_rerun_resumes(tiny_pipeline, tmp_path, cli, monkeypatch):
    from flatcheck.results import validate

    out = tmp_path / "out"
    with monkeypatch.context() as mp:
        calls = _fail_with(mp, "quantize", RuntimeError("CUDA error: an illegal memory access was encountered\nmore"))
        code, _, err = cli("audit", tiny_pipeline, *ARGS, "--out", out, "--json", tmp_path / "r.json")
    assert calls == ["quantize"]
    assert code == 3, err
    lines = err.strip().splitlines()
    assert lines == [
        "flatcheck: error: quantize did not finish (RuntimeError: CUDA error: an illegal memory access was "
        "encountered); the report of the measures that finished was written"
    ]
    assert {"audit.json", "audit.md", "audit.html"} <= _files(out)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert json.loads((out / "audit.json").read_text())["exposure"] == doc["exposure"]
    assert validate(doc) == []
    assert doc["quantize"] == {
        "complete": False,
        "error": "RuntimeError: CUDA error: an illegal memory access was encountered",
    }
    assert doc["exposure"]["runs"] and doc["fid"] is not None and "complete" not in doc["fid"]  # the others finished
    assert {v["area"]: v["status"] for v in doc["verdicts"]}["quantize"] == "error"
    assert "RuntimeError: CUDA error" in (out / "audit.md").read_text()
    assert not [p for p in out.rglob("*.tmp")]  # atomic writes left no partial file
    # the shared samples were kept in OUT/samples: the rerun reads them instead of sampling them again
    assert doc["samples"]["origin"].startswith(f"generated into {out / 'samples'}")
    code, _, err = cli("audit", tiny_pipeline, *ARGS, "--out", out, "--json", tmp_path / "r2.json")
    assert code == 0, err
    again = json.loads((tmp_path / "r2.json").read_text())
    assert again["samples"]["origin"].endswith("; 4 of 4 read from an earlier run")
    same = {k: v for k, v in doc["fid"].items() if k != "reference"}  # (the reference is cached by now)
    assert again["quantize"]["settings"] and {k: v for k, v in again["fid"].items() if k != "reference"} == same


def test_ctrl_c_in_a_measure_writes_what_finished_and_exits_130(tiny_pipeline, tmp_path, cli, monkeypatch):
    from flatcheck.results import validate

    out = tmp_path / "out"
    calls = _fail_with(monkeypatch, "quantize", KeyboardInterrupt())
    code, _, err = cli("audit", tiny_pipeline, *ARGS, "--out", out)
    assert calls == ["quantize"]
    assert code == 130, err
    assert err.strip().splitlines() == [
        "flatcheck: error: interrupted during quantize: the report of the measures that finished was written "
        "(weights in memory were restored)"
    ]
    doc = json.loads((out / "audit.json").read_text())
    assert validate(doc) == []
    assert doc["exposure"]["runs"]
    assert doc["quantize"] == {"complete": False, "error": "interrupted (Ctrl-C)"}
    assert doc["fid"] == {"complete": False, "error": "not started: interrupted during quantize"}
    assert doc["bank"] is None  # nothing more computed after Ctrl-C
    assert (out / "audit.html").is_file() and (out / "audit.md").is_file()


def test_the_python_api_raises_ctrl_c_with_the_partial_report(tiny_pipeline, monkeypatch):
    """From Python, Ctrl-C stays a KeyboardInterrupt; it carries the report of what finished."""
    from flatcheck.api import audit
    from flatcheck.errors import AuditInterrupted

    from .audit_fixtures import TINY

    _fail_with(monkeypatch, "exposure", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt) as caught:
        audit(str(tiny_pipeline), profile="quick", **{**TINY, "skip": ("sharpness", "quantize")})
    assert isinstance(caught.value, AuditInterrupted) and caught.value.measure == "exposure"
    assert caught.value.report.incomplete["exposure"]["complete"] is False
