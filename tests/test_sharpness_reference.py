"""The sharpness scale (issue 28, 4): headline numbers get percentiles among a reference set only where family,
size class, probe bank and settings match; otherwise the report says there is none and why."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from flatcheck.errors import InputError
from flatcheck.measures.sharpness import reference as R
from tests.audit_fixtures import tiny_audit  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
TINY_TABLE = ROOT / "tests" / "fixtures" / "sharpness_reference_tiny.json"


def test_percentile_is_the_mid_rank_share_below():
    values = [1.0, 2.0, 3.0, 4.0]
    assert R.percentile(2.5, values) == (50.0, 2)
    assert R.percentile(3.0, values) == (62.5, 2)  # a tie counts half
    assert R.percentile(0.0, values) == (0.0, 0)
    assert R.percentile(9.0, values) == (100.0, 4)


def test_size_classes_are_decades():
    assert R.size_class(701_345) == "100K-1M parameters"
    assert R.size_class(859_520_964) == "100M-1B parameters"
    assert R.size_class(12_000_000_000) == "10B-100B parameters"


def test_the_tiny_audit_is_placed_in_its_reference_set(tiny_audit):
    from flatcheck.results import validate

    report, doc = tiny_audit
    ref = doc["sharpness"]["reference"]
    assert ref["set"] == "tiny-synthetic" and ref["n"] == 7
    assert ref["label"].startswith("relative to 7 reference checkpoints (tiny-synthetic")
    table = json.loads(TINY_TABLE.read_text())["sets"][0]
    for name, point in ref["metrics"].items():
        values = sorted(c["values"][name] for c in table["checkpoints"])
        if point["value"] is None:  # the tiny run's 2 Lanczos steps do not converge: no value, no percentile
            assert name == "top_eigenvalue" and point["percentile"] is None and point["why"]
            continue
        below = sum(v < point["value"] for v in values)
        assert point["below"] == below and point["n"] == 7
        assert point["percentile"] == pytest.approx(100 * (below + 0.5 * (point["value"] in values)) / 7)
    assert "relative to 7 reference checkpoints (tiny-synthetic)" in report.verdict("sharpness").line
    assert validate(doc) == []


def test_a_rule_may_name_the_percentile(tiny_audit):
    from flatcheck.auditing import report_paths
    from flatcheck.gate import check_metric, evaluate, lookup, parse_rule

    from .audit_fixtures import tiny_options

    _, doc = tiny_audit
    path = "sharpness.reference.metrics.trace.percentile"
    check_metric(path, report_paths(tiny_options()))  # known before the run
    value, _ = lookup(doc, path)
    assert value == doc["sharpness"]["reference"]["metrics"]["trace"]["percentile"]
    result = evaluate([parse_rule({"metric": path, "max": value - 1}, "rule")], doc)
    assert not result.passed
    with pytest.raises(InputError, match="sharpness.measures has no hessian|no 'trace'"):
        check_metric(path, report_paths(tiny_options(sharpness={"measures": ["avg"]})))
    with pytest.raises(InputError, match="reference = none"):
        check_metric(path, report_paths(tiny_options(sharpness={"reference": "none"})))


def _section_and_table(tiny_audit):
    _, doc = tiny_audit
    return copy.deepcopy(doc["sharpness"]), R.context_of_report(doc["model"]), json.loads(TINY_TABLE.read_text())


def test_no_reference_when_the_bank_or_family_differs(tiny_audit):
    section, context, table = _section_and_table(tiny_audit)
    section["probes"] = 16
    ref = R.compare(section, context, table)
    assert ref.set is None and "probe bank differs" in ref.label and "probes 16 (reference: 8)" in ref.label
    assert all(p.percentile is None for p in ref.metrics.values())
    assert R.summary(ref).startswith("no reference: the probe bank differs") and "probes" not in R.summary(ref)
    other = {**context, "size_class": "1B-10B parameters"}
    ref = R.compare(copy.deepcopy(_section_and_table(tiny_audit)[0]), other, table)
    assert ref.set is None and ref.label.startswith("no reference: no reference set for") and "1B-10B" in ref.label


def test_a_number_measured_with_other_settings_gets_no_percentile(tiny_audit):
    section, context, table = _section_and_table(tiny_audit)
    section["average"][0]["points"][-1]["radius"] = 0.3  # as if the sweep ended at another radius
    ref = R.compare(section, context, table)
    assert ref.set == "tiny-synthetic"
    assert ref.metrics["average"].percentile is None and "radius 0.3 (reference: 0.1)" in ref.metrics["average"].why
    assert ref.metrics["trace"].percentile is not None
    assert "no percentile for top Hessian eigenvalue, average-case relative loss increase" in R.summary(ref)


def test_a_bad_table_is_refused_before_the_run(tmp_path):
    from flatcheck.auditing import options_for

    bad = tmp_path / "t.json"
    bad.write_text('{"format": 99}')
    with pytest.raises(InputError, match="not a format-1 table"):
        options_for("quick", sharpness={"reference": str(bad)})
    with pytest.raises(InputError, match="is not a file"):
        options_for("quick", sharpness={"reference": str(tmp_path / "missing.json")})


def test_the_shipped_table_is_what_its_script_reads_from_the_committed_reports():
    """Every shipped number is read back from the report it came from, by the code the run compares with."""
    table, _ = R.load_table()
    names = {s["name"]: len(s["checkpoints"]) for s in table["sets"]}
    assert names == {"digits-quick": 14, "patches-quick": 6}
    reports: dict[str, dict] = {}
    for s in table["sets"]:
        for c in s["checkpoints"]:
            if c["origin"] not in reports:
                doc = json.loads((ROOT / c["origin"]).read_text())
                reports[c["origin"]] = {
                    Path(r["model"]["source"]).name: r for r in (doc["reports"] if "reports" in doc else [doc])
                }
            report = reports[c["origin"]][c["name"]]
            numbers = R.headline(report["sharpness"])
            assert c["values"] == {k: v for k, (v, _) in numbers.items()}
            assert s["settings"] == {k: v for k, (_, v) in numbers.items()}
            assert s["bank"] == R.bank_of(report["sharpness"])
            assert s["context"] == R.context_of_report(report["model"])


def test_the_terminal_table_shows_the_set_and_each_percentile(tiny_audit):
    import io

    from rich.console import Console

    from flatcheck.measures.sharpness.view import reference_table

    section, context, table = _section_and_table(tiny_audit)
    ref = R.compare(section, context, table, "tests/fixtures/sharpness_reference_tiny.json")
    con = Console(file=io.StringIO(), width=200, color_system=None)
    con.print(reference_table(ref))
    text = con.file.getvalue()
    words = " ".join(text.split())  # the title wraps at the table's width
    assert "Sharpness scale: relative to 7 reference checkpoints (tiny-synthetic" in words
    assert "table: tests/fixtures/sharpness_reference_tiny.json" in words
    trace = ref.metrics["trace"]
    assert f"{trace.percentile:.0f} " in text.split("Hessian trace", 1)[1].splitlines()[0] + " "
    assert "no reference: not finite or not converged" in words  # the tiny run's top eigenvalue
