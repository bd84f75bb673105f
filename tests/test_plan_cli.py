"""`flatcheck plan`, --dry-run and the audit's memory check, through the CLI (issue 23, item 2).

The plan's numbers are checked against measured peaks in test_memory_bounds.py; here: what the
commands print and exit with, that nothing runs, and that a run which will not fit stops in one line
before its measures."""

from __future__ import annotations

import json

import pytest

from flatcheck import plan as planning
from flatcheck.results import validate

SMALL = ["--data", "none", "--samples", "2", "--steps", "2", "--probes", "2", "--batch-size", "2"]


def _plan(cli, model, *args):
    code, out, err = cli("plan", model, *SMALL, "--no-timing", "--json", "-", *args)
    return code, json.loads(out), err


def test_plan_json_is_valid_and_fits(cli, tiny_pipeline):
    code, doc, _ = _plan(cli, tiny_pipeline, "--quick")
    assert code == 0 and doc["fits"] and not validate(doc, "plan")
    assert doc["usable_bytes"] == int(doc["available_bytes"] * (1 - planning.FIT_MARGIN))
    measures = {p["measure"] for p in doc["phases"]}
    assert {"sharpness", "exposure", "quantize"} <= measures
    # Each phase's peak is made of its parts, and the run's peak is the largest phase's.
    for p in doc["phases"]:
        assert p["peak_bytes"] == sum(p["parts"].values())
    assert doc["peak_bytes"] == max(p["peak_bytes"] for p in doc["phases"])
    # No timing asked: no calibration, no seconds.
    assert doc["calibration"] is None and all(p["seconds"] is None for p in doc["phases"])


def test_plan_that_does_not_fit_exits_1_with_options(cli, tiny_pipeline):
    """Planned for a GPU (no process baseline: on this CPU the libraries' 0.9 GB dwarf a tiny model) with
    exactly the quick audit's planned peak, of which FIT_MARGIN is kept free: exit 1, and the first option
    set the advice gives fits when planned again with it."""
    import shlex

    gpu = ["--device", "cuda", "--memory"]
    _, doc, _ = _plan(cli, tiny_pipeline, "--quick", *gpu, "80GB")
    assert doc["baseline_bytes"] == 0 and doc["usable_bytes"] == int(80 * 2**30 * (1 - planning.FIT_MARGIN))
    memory = f"{doc['peak_bytes']}b"
    code, small, _ = _plan(cli, tiny_pipeline, "--quick", *gpu, memory)
    assert code == 1 and not small["fits"] and small["usable_bytes"] < small["peak_bytes"] == small["available_bytes"]
    assert small["advice"], "a tiny model's quick audit fits with a smaller batch or fewer parameters"
    code, again, _ = _plan(cli, tiny_pipeline, "--quick", *gpu, memory, *shlex.split(small["advice"][0]))
    assert code == 0 and again["fits"]


def test_plan_only_one_measure(cli, tiny_pipeline):
    code, doc, _ = _plan(cli, tiny_pipeline, "--only", "sharpness")
    assert code == 0 and {p["measure"] for p in doc["phases"]} <= {"sharpness", "inputs"}


def test_dry_run_prints_the_plan_and_runs_nothing(cli, tiny_pipeline, tmp_path):
    report = tmp_path / "r.json"
    code, out, err = cli("sharpness", tiny_pipeline, *SMALL, "--measures", "hessian", "--dry-run")
    assert code == 0 and "flatcheck plan" in out and "fits" in out
    code, out, err = cli(
        "sharpness", tiny_pipeline, *SMALL, "--measures", "hessian", "--dry-run", "--json", str(report)
    )
    assert code == 0 and not validate(json.loads(report.read_text()), "plan")  # the plan, not a report


@pytest.fixture
def small_machine(monkeypatch):
    """This machine as the plan sees it: 1 MiB of memory more than the process before the weights."""
    monkeypatch.setattr(planning, "available_memory", lambda device: (1 << 20, "a test's limit"))


def test_audit_that_will_not_fit_stops_before_its_measures(cli, tiny_pipeline, tmp_path, small_machine, monkeypatch):
    monkeypatch.setattr("flatcheck.core.inputs.build_inputs", lambda *a, **k: pytest.fail("the inputs were built"))
    code, out, err = cli("audit", tiny_pipeline, "--quick", *SMALL, "--json", str(tmp_path / "r.json"))
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "this run needs about" in lines[0] and "a test's limit" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_memory_check_can_be_switched_off(cli, tiny_pipeline, tmp_path, small_machine, monkeypatch):
    """FLATCHECK_MEMORY_CHECK=0: the run goes on and its report records the plan that did not fit."""
    monkeypatch.setenv("FLATCHECK_MEMORY_CHECK", "0")
    report = tmp_path / "r.json"
    code, out, err = cli(
        "sharpness",
        tiny_pipeline,
        *SMALL,
        "--measures",
        "hessian",
        "--hessian-probes",
        "2",
        "--lanczos-iters",
        "2",
        "--top-k",
        "1",
        "--hutchinson-draws",
        "2",
        "--json",
        str(report),
    )
    assert code == 0, err
    plan = json.loads(report.read_text())["environment"]["memory_plan"]
    assert plan["available_bytes"] == 1 << 20 and plan["estimated_peak_bytes"] > plan["available_bytes"]


@pytest.mark.parametrize("family", ["sd", "sdxl", "pixart", "sd3", "flux"])
def test_every_text_family_is_planned_on_the_meta_device(cli, family, family_dir):
    """The plan builds the pipeline on the meta device, text encoders included: no family's prompt
    encoding may read a meta tensor's data (Flux's txt_ids did: exit 3 on flux-dev; PixArt's T5 mask too)."""
    model = family_dir(family)
    code, doc, err = _plan(cli, model, "--quick", "--device", "cuda", "--memory", "80GB")
    assert code == 0 and doc["fits"] and not validate(doc, "plan"), err
