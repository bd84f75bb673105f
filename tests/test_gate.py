"""The gate: config parsing, dotted paths, absolute and relative thresholds, both directions."""

from __future__ import annotations

import json

import pytest

from flatcheck.errors import InputError
from flatcheck.gate import evaluate, load_config, lookup, parse_config, parse_path, parse_rule

REPORT = {
    "quantize": {
        "settings": {"W4A4": {"drift_mse": {"value": 0.2, "stderr": 0.01, "n": 64}}, "W8A8": {"drift_mse": 0.001}}
    },
    "sharpness": {"top_eigenvalue": {"value": 10.0, "stderr": 0.5}},
    "exposure": {"curve": [{"t": 999, "drift": 0.1}, {"t": 500, "drift": -0.3}]},
    "fid": {"value": None},
    "named": [{"name": "W8A8", "mse": 0.01}, {"name": "W4A4", "mse": {"value": 0.3, "stderr": 0.02}}],
}
BASE = {
    "quantize": {"settings": {"W4A4": {"drift_mse": {"value": 0.1}}, "W8A8": {"drift_mse": 0.001}}},
    "sharpness": {"top_eigenvalue": {"value": 8.0}},
    "exposure": {"curve": [{"t": 999, "drift": 0.1}, {"t": 500, "drift": -0.5}]},
    "fid": {"value": 3.0},
}


def rules(*raw):
    return parse_config({"gate": {"rules": list(raw)}}).rules


def test_paths_reach_dicts_lists_and_estimates():
    assert parse_path("a.b[2].c") == ["a", "b", 2, "c"]
    assert lookup(REPORT, "quantize.settings.W4A4.drift_mse") == (0.2, 0.01)
    assert lookup(REPORT, "quantize.settings.W4A4.drift_mse.stderr") == (0.01, None)
    assert lookup(REPORT, "quantize.settings.W8A8.drift_mse") == (0.001, None)
    assert lookup(REPORT, "exposure.curve.1.drift") == (-0.3, None)
    assert lookup(REPORT, "exposure.curve[1].drift") == (-0.3, None)
    assert lookup(REPORT, "fid") == (None, None)
    assert lookup(REPORT, "named.W4A4.mse") == (0.3, 0.02) == lookup(REPORT, "named.1.mse")


@pytest.mark.parametrize(
    "path, message",
    [
        ("quantize.settings.W3A3.drift_mse", "no 'W3A3'"),
        ("exposure.curve.7.drift", "list of 2"),
        ("exposure.curve.x.drift", "use an index 0..1"),
        ("named.W2A2.mse", "names: W8A8, W4A4"),
        ("quantize.settings", "a table, not a number"),
        ("exposure.curve", "a list, not a number"),
        ("a..b", "not a dotted path"),
        ("fid.value.x", "was not measured"),
        ("quantize.settings.W8A8.drift_mse.x", "is a number, not a table"),
    ],
)
def test_bad_paths_are_one_line_input_errors(path, message):
    with pytest.raises(InputError, match=message) as e:
        lookup(REPORT, path)
    assert "\n" not in str(e.value)


def test_absolute_max_min_and_ops_both_directions():
    ok = evaluate(
        rules(
            {"metric": "quantize.settings.W4A4.drift_mse", "max": 0.25},
            {"metric": "quantize.settings.W4A4.drift_mse", "max": 0.2},  # boundary: <= holds
            {"metric": "sharpness.top_eigenvalue", "min": 9},
            {"metric": "exposure.curve.1.drift", "op": ">", "value": -0.31},
            {"metric": "exposure.curve.0.drift", "op": "<", "value": 0.2},
        ),
        REPORT,
    )
    assert ok.passed and not ok.failures
    bad = evaluate(
        rules(
            {"metric": "quantize.settings.W4A4.drift_mse", "max": 0.15},
            {"metric": "quantize.settings.W4A4.drift_mse", "op": "<", "value": 0.2},  # boundary: < fails
            {"metric": "sharpness.top_eigenvalue", "min": 11},
            {"metric": "exposure.curve.1.drift", "op": ">=", "value": 0},
            {"metric": "quantize.settings.W8A8.drift_mse", "max": 1},  # this one holds
        ),
        REPORT,
    )
    assert not bad.passed
    assert [r.passed for r in bad.rows] == [False, False, False, False, True]
    assert bad.rows[0].value == 0.2 and bad.rows[0].bound == 0.15 and bad.rows[0].stderr == 0.01


def test_relative_ratio_and_delta_both_directions():
    r = rules(
        {"metric": "sharpness.top_eigenvalue", "max": 1.3, "relative": "ratio"},  # 10 <= 10.4
        {"metric": "sharpness.top_eigenvalue", "max": 1.2, "relative": "ratio"},  # 10 > 9.6
        {"metric": "quantize.settings.W4A4.drift_mse", "max": 0.15, "relative": "delta"},  # 0.2 <= 0.25
        {"metric": "quantize.settings.W4A4.drift_mse", "max": 0.05, "relative": "delta"},  # 0.2 > 0.15
        {"metric": "exposure.curve.1.drift", "min": -0.1, "relative": "delta"},  # -0.3 >= -0.6
    )
    res = evaluate(r, REPORT, BASE)
    assert [row.passed for row in res.rows] == [True, False, True, False, True]
    assert res.rows[1].bound == pytest.approx(9.6) and res.rows[1].baseline == 8.0
    assert res.rows[3].bound == pytest.approx(0.15)
    # A ratio against a non-positive baseline is refused as a failure with a note, not a wrong verdict.
    neg = evaluate(rules({"metric": "exposure.curve.1.drift", "max": 1.1, "relative": "ratio"}), REPORT, BASE)
    assert not neg.passed and "not positive" in neg.rows[0].note


def test_non_finite_values_fail():
    res = evaluate(rules({"metric": "fid", "max": 100}), REPORT)
    assert not res.passed and res.rows[0].note == "value is not finite"
    res = evaluate(
        rules({"metric": "quantize.settings.W8A8.drift_mse", "max": 2, "relative": "ratio"}),
        REPORT,
        {"quantize": {"settings": {"W8A8": {"drift_mse": None}}}},
    )
    assert not res.passed and "baseline" in res.rows[0].note


def test_relative_rule_without_baseline_is_input_error():
    with pytest.raises(InputError, match="baseline"):
        evaluate(rules({"metric": "fid", "max": 1.1, "relative": "ratio"}), REPORT)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"max": 1}, "metric"),
        ({"metric": "a.b"}, "exactly one of max, min or op"),
        ({"metric": "a.b", "max": 1, "min": 0}, "exactly one"),
        ({"metric": "a.b", "op": "==", "value": 1}, "op must be one of"),
        ({"metric": "a.b", "op": "<"}, "needs a value"),
        ({"metric": "a.b", "max": "0.3"}, "finite number"),
        ({"metric": "a.b", "max": True}, "finite number"),
        ({"metric": "a.b", "max": float("nan")}, "finite number"),
        ({"metric": "a.b", "max": 1, "relative": "percent"}, "relative must be"),
        ({"metric": "a.b", "max": 1, "maxx": 2}, "unknown key"),
        ({"metric": "a.b", "max": 1, "value": 2}, "'value' goes with 'op'"),
        ("a.b <= 1", "must be a table"),
    ],
)
def test_rule_mistakes(raw, message):
    with pytest.raises(InputError, match=message):
        parse_rule(raw, "rule 1")


@pytest.mark.parametrize(
    "doc, message",
    [
        ({}, "missing \\[gate\\]"),
        ({"gate": {}}, "no rules"),
        ({"gate": {"rules": []}}, "no rules"),
        ({"gate": {"rules": [{"metric": "a", "max": 1}], "treshold": 1}}, "unknown key"),
        ({"gate": {"rules": [{"metric": "a", "max": 1}]}, "gates": {}}, "unknown table"),
        ({"gate": {"rules": [{"metric": "a", "max": 1}], "baseline": 3}}, "baseline"),
    ],
)
def test_config_mistakes(doc, message):
    with pytest.raises(InputError, match=message):
        parse_config(doc, "x.toml")


def test_config_files_flatcheck_toml_and_pyproject(tmp_path, monkeypatch):
    (tmp_path / "flatcheck.toml").write_text(
        '[audit]\nprofile = "quick"\n[gate]\nbaseline = "base.json"\n[[gate.rules]]\nmetric = "fid"\nmax = 5\n'
    )
    cfg = load_config(tmp_path / "flatcheck.toml")
    assert cfg.baseline == "base.json" and cfg.audit == {"profile": "quick"}
    assert cfg.rules[0].metric == "fid" and cfg.rules[0].op == "<=" and cfg.rules[0].threshold == 5

    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.flatcheck.gate]\nrules = [{metric = "sharpness.top_eigenvalue", min = 1}]\n'
    )
    monkeypatch.chdir(proj)
    cfg = load_config()  # found automatically
    assert cfg.rules[0].op == ">=" and cfg.source.endswith("pyproject.toml")

    (proj / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(InputError, match="no gate config"):
        load_config()
    with pytest.raises(InputError, match="no \\[tool.flatcheck\\]"):
        load_config(proj / "pyproject.toml")
    (proj / "bad.toml").write_text("[gate\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(proj / "bad.toml")
    with pytest.raises(InputError, match="does not exist"):
        load_config(proj / "missing.toml")


def test_report_loading_errors(tmp_path):
    from flatcheck.gate import load_report

    (tmp_path / "r.json").write_text(json.dumps(REPORT))
    assert load_report(tmp_path / "r.json")["fid"] == {"value": None}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InputError, match="not a JSON report"):
        load_report(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(InputError, match="not a flatcheck report"):
        load_report(tmp_path / "list.json")
