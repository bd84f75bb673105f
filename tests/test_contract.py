"""The JSON contract: every command's --json validates against its versioned schema, and the
report document is the same shape for `flatcheck audit` and for each measure command."""

from __future__ import annotations

import copy
import json

import pytest

from flatcheck.results import SCHEMAS, VERSIONS, schema, validate
from tests.audit_fixtures import TINY_CLI, tiny_audit  # noqa: F401 - fixture

TINY = ["--device", "cpu", "--batch-size", "8", "--json", "-"]
# One tiny run per measure command: every option at its floor, the shared inputs from the digits data.
MEASURE_RUNS = {
    "sharpness": [
        "--data",
        "digits",
        "--probes",
        "8",
        "--draws",
        "1",
        "--radii",
        "0.1",
        "--ascent-steps",
        "1",
        "--hessian-probes",
        "4",
        "--top-k",
        "1",
        "--lanczos-iters",
        "2",
        "--hutchinson-draws",
        "2",
        "--landscape-probes",
        "4",
        "--landscape-points",
        "3",
        "--landscape-grid",
        "0",
        "--buckets",
        "1",
    ],
    "exposure": [
        "--data",
        "digits",
        "--probes",
        "4",
        "--samples",
        "3",
        "--steps",
        "2",
        "--ref",
        "digits",
        "--features",
        "digits-cnn",
    ],
    "quantize": [
        "--data",
        "digits",
        "--probes",
        "4",
        "--samples",
        "3",
        "--steps",
        "2",
        "--bits",
        "8",
        "--calib-samples",
        "2",
        "--sensitivity-samples",
        "0",
    ],
    "fid": ["--ref", "digits", "--features", "digits-cnn", "--samples", "4", "--steps", "2", "--bootstrap", "5"],
}


def test_every_schema_is_a_valid_draft_2020_12_schema_with_its_version():
    import jsonschema

    for kind in SCHEMAS:
        s = schema(kind)
        jsonschema.Draft202012Validator.check_schema(s)
        assert s["properties"]["schema_version"]["pattern"] == "^1\\.[0-9]+$" and VERSIONS[kind].startswith("1.")


@pytest.mark.parametrize("name", list(MEASURE_RUNS))
def test_a_measure_command_writes_the_audit_report_with_one_section(cli, tiny_pipeline, name):
    code, out, err = cli(name, tiny_pipeline, *MEASURE_RUNS[name], *TINY)
    assert code == 0, err
    doc = json.loads(out)
    assert validate(doc) == []
    assert doc["schema_version"] == VERSIONS["report"] and doc[name] is not None
    others = [a for a in MEASURE_RUNS if a != name]
    assert all(doc[a] is None for a in others)
    verdicts = {v["area"]: v for v in doc["verdicts"]}
    assert verdicts[name]["status"] not in ("skipped", "error")
    assert all(verdicts[a]["status"] == "skipped" and name in verdicts[a]["line"] for a in others)
    broken = copy.deepcopy(doc)
    broken[name] = [1, 2]
    assert validate(broken)  # the section's own schema is checked, not just "an object"


def test_info_compare_and_gate_documents_validate(cli, tiny_pipeline, tiny_audit, tmp_path):
    code, out, err = cli("info", tiny_pipeline, "--json", "-")
    assert code == 0, err
    info = json.loads(out)
    assert validate(info, "info") == [] and info["schema_version"] == VERSIONS["info"]
    assert validate({**info, "parameters": -1}, "info")

    code, out, err = cli("compare", tiny_pipeline, tiny_pipeline, *TINY_CLI)
    assert code == 2  # the same checkpoint twice is refused before any work
    other = tmp_path / "other"
    import shutil

    shutil.copytree(tiny_pipeline, other)
    code, out, err = cli(
        "compare",
        tiny_pipeline,
        other,
        *TINY_CLI,
        "--skip",
        "sharpness",
        "--skip",
        "quantize",
        "--device",
        "cpu",
        "--json",
        "-",
    )
    assert code == 0, err
    comp = json.loads(out)
    assert validate(comp, "compare") == [], validate(comp, "compare")[:3]
    comp["reports"][0]["verdicts"][0]["status"] = "great"
    assert validate(comp, "compare")  # the embedded reports are held to the report schema

    (tmp_path / "r.json").write_text(json.dumps(tiny_audit[1]))
    cfg = tmp_path / "flatcheck.toml"
    cfg.write_text('[gate]\n[[gate.rules]]\nmetric = "quantize.settings.W8A8.relative_mse"\nmax = 1\n')
    code, out, err = cli("gate", "--report", tmp_path / "r.json", "--config", cfg, "--json", "-")
    assert code == 0, err
    gate = json.loads(out)
    assert validate(gate, "gate") == [] and gate["gate"]["passed"] is True


@pytest.mark.parametrize(
    "table, message",
    [
        ({"sharpness": {"radii": 0.1}}, "sharpness.radii must be a list"),
        ({"sharpness": {"radii": [-0.1]}}, "sharpness.radii must be positive"),
        ({"quantize": {"calib_samples": "many"}}, "quantize.calib_samples must be int"),
        ({"exposure": {"stepz": [20]}}, "exposure.stepz is not an option of exposure"),
        ({"quantize": ["W8A8"]}, "must be a table"),
    ],
)
def test_audit_option_errors_name_the_config_key(table, message):
    """The audit's user wrote flatcheck.toml ([audit.<measure>] tables): errors name those keys."""
    from flatcheck.auditing import options_for
    from flatcheck.errors import InputError

    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        options_for("quick", **table)


def test_command_option_errors_name_the_flag(cli, tiny_pipeline):
    """The same mistake on a measure command names the flag its user typed."""
    code, out, err = cli("sharpness", tiny_pipeline, "--radii", "-0.1", "--device", "cpu")
    assert code == 2 and "--radii must be positive" in err and "sharpness." not in err
