"""Paired differences against a baseline for the headline per-draw numbers (issue 28, item 1; report 1.7): the
bank loss per probe, exposure's per-sample totals, quantize's per-sample relative MSE. Hand-written reports, then
one tiny end-to-end gate of one bundled model against another's report drawn with the same seeds and bank."""

from __future__ import annotations

import json
import math

import pytest
from scipy.stats import t as student_t

from flatcheck.core.stats import per_item
from flatcheck.gate import evaluate, measure, parse_config
from flatcheck.report.markdown import gate_markdown
from flatcheck.results import number_rows, validate, write_json

# 16 probes: the baseline's losses vary a lot between probes; the candidate adds a steady 0.02 to each, with
# a little probe-to-probe noise. Two independent s.e. carry the between-probe spread, the paired one does not.
BASE_LOSSES = [0.05 + 0.04 * ((7 * i) % 16) for i in range(16)]
NEW_LOSSES = [x + 0.02 + 0.002 * (-1) ** i for i, x in enumerate(BASE_LOSSES)]


def mean_se(items):
    n = len(items)
    m = sum(items) / n
    return m, math.sqrt(sum((x - m) ** 2 for x in items) / (n - 1) / n)


def report(losses, seed=0, rel_mse=None):
    m, se = mean_se(losses)
    doc = {
        "seeds": {"bank": seed, "quantize": seed},
        "bank": {
            "n": len(losses),
            "seed": seed,
            "source": "data: digits",
            "t_range": [0, 1000],
            "loss": {"value": m, "stderr": se, "n": len(losses)},
            "loss_per_probe": per_item(losses),
        },
        "fid": {"value": {"value": 6.0, "stderr": 1.0, "n": 16, "bias_corrected": 3.0}},
    }
    if rel_mse is not None:
        doc["quantize"] = {"settings": [{"name": "W8A8", "relative_mse": sum(rel_mse) / len(rel_mse)}]}
        doc["quantize"]["settings"][0]["relative_mse_per_sample"] = rel_mse
    return doc


def rows(rule_list, a, b):
    return evaluate(parse_config({"gate": {"rules": rule_list}}).rules, a, b).rows


def test_bank_loss_is_paired_when_bank_and_seeds_match_and_its_se_is_smaller():
    a, b = report(NEW_LOSSES), report(BASE_LOSSES)
    rule = {"metric": "bank.loss", "max": 0.0, "relative": "delta", "mode": "interval"}
    paired = rows([rule], a, b)[0]
    assert paired.pairing == "paired" and paired.interval.startswith("paired over 16 draws")
    d = [x - y for x, y in zip(NEW_LOSSES, BASE_LOSSES)]
    half = student_t.ppf(0.975, 15) * mean_se(d)[1]
    assert (paired.high - paired.low) / 2 == pytest.approx(half, rel=1e-4)
    assert not paired.passed  # the steady +0.02 is outside the paired interval's reach of 0

    b_other = report(BASE_LOSSES, seed=1)  # another bank: the same numbers cannot be paired
    indep = rows([rule], a, b_other)[0]
    assert indep.pairing == "independent" and "the reports differ in seeds or probe bank" in indep.interval
    assert (indep.high - indep.low) > 5 * (paired.high - paired.low)
    assert indep.passed  # within the noise of two independent banks
    md = gate_markdown(evaluate(parse_config({"gate": {"rules": [rule]}}).rules, a, b), "a.json")
    assert "paired over 16 draws" in md


def test_a_plain_mean_with_its_draws_gets_an_se_and_pairs():
    base_mse = [0.01 * (1 + (i % 4)) for i in range(8)]
    new_mse = [x * 1.5 for x in base_mse]
    a, b = report(BASE_LOSSES, rel_mse=new_mse), report(BASE_LOSSES, rel_mse=base_mse)
    m = measure(a, "quantize.settings.W8A8.relative_mse")
    assert m.stderr == pytest.approx(mean_se(new_mse)[1]) and m.n == 8 and len(m.items) == 8
    row = rows([{"metric": "quantize.settings.W8A8.relative_mse", "max": 0.02, "mode": "interval"}], a, None)[0]
    assert row.judged == "interval" and row.low is not None  # before 1.7: judged as a point
    rel = {"metric": "quantize.settings.W8A8.relative_mse", "max": 1.2, "relative": "ratio", "mode": "strict"}
    row = rows([rel], a, b)[0]
    assert row.pairing == "paired" and not row.passed
    # Draws whose mean is not the value (an edited report) are not used: no uncertainty is made up.
    a["quantize"]["settings"][0]["relative_mse"] *= 2
    assert measure(a, "quantize.settings.W8A8.relative_mse").stderr is None


def test_fd_differences_say_they_are_independent():
    a, b = report(NEW_LOSSES), report(BASE_LOSSES)
    row = rows([{"metric": "fid.value", "max": 1.1, "relative": "ratio", "mode": "interval"}], a, b)[0]
    assert row.pairing == "independent" and "FD differences are independent" in row.interval


def test_per_item_lists_are_float32_at_6_digits_on_one_line_and_not_tabulated(tmp_path):
    assert per_item([0.1234567891, 1e-9 / 3]) == [0.123457, 3.33333e-10]
    doc = {"bank": {"loss": {"value": 0.2, "stderr": 0.1, "n": 1000}, "loss_per_probe": per_item([0.2] * 1000)}}
    write_json(doc, tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text) == doc and len(text.splitlines()) == 10  # the list is one line
    assert [r.path for r in number_rows(doc)] == ["bank.loss"]


def test_gate_a_model_against_a_baseline_report_pairs_the_bank_loss(cli, tmp_path):
    from flatcheck.core.checkpoint import bundled_models

    if not {"digits-base", "digits-sam"} <= set(bundled_models()):
        pytest.skip("bundled digits models not installed")
    cfg = tmp_path / "flatcheck.toml"
    cfg.write_text(
        '[audit]\nprofile = "quick"\nprobes = 32\nsamples = 8\nsteps = 2\nbatch_size = 32\ndata = "digits"\n'
        'skip = ["sharpness", "exposure", "fid"]\n[audit.quantize]\nsettings = ["W8A8"]\ncalib_samples = 2\n'
        '[[gate.rules]]\nmetric = "bank.loss"\nmax = 0.0\nrelative = "delta"\nmode = "interval"\n'
        '[[gate.rules]]\nmetric = "quantize.settings.W8A8.relative_mse"\nmax = 1.0\nrelative = "ratio"\n'
        'mode = "interval"\n'
        '[[gate.rules]]\nmetric = "quantize.settings.W8A8.fid"\nmax = 1.0\nrelative = "ratio"\n'
        'mode = "interval"\n'
    )
    base = tmp_path / "base.json"
    code, out, err = cli("audit", "digits-base", "--config", cfg, "--json", base, "--threads", "1")
    assert code == 0, out + err
    base_doc = json.loads(base.read_text())
    assert base_doc["schema_version"] == "1.7" and validate(base_doc) == []
    assert len(base_doc["bank"]["loss_per_probe"]) == 32
    gate = tmp_path / "gate.json"
    code, out, err = cli("gate", "digits-sam", "--config", cfg, "--baseline", base, "--json", gate, "--threads", "1")
    assert code in (0, 1), out + err
    doc = json.loads(gate.read_text())
    loss, drift, fd = doc["gate"]["rows"]
    assert loss["pairing"] == "paired" and drift["pairing"] == "paired" and fd["pairing"] == "independent"
    assert "FD differences are independent" in fd["interval"]
    # The paired s.e. of the loss difference against the two reports' own s.e. in quadrature.
    t = student_t.ppf(0.975, 31)
    paired_half = (loss["high"] - loss["low"]) / 2
    se_a, se_b = doc["report"]["bank"]["loss"]["stderr"], base_doc["bank"]["loss"]["stderr"]
    assert paired_half < t * math.hypot(se_a, se_b) / 2
