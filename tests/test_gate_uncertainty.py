"""Uncertainty-aware gate rules (issue 28, item 1): point / interval / strict, confidence, paired vs independent
differences against a baseline, numbers without uncertainty, and the config checks of the new keys."""

from __future__ import annotations

import copy
import math

import pytest
from scipy.stats import t as student_t

from flatcheck.errors import InputError
from flatcheck.gate import evaluate, measure, parse_config, same_draws
from flatcheck.report.markdown import gate_markdown

T63 = student_t.ppf(0.975, 63)  # the 95% quantile for a mean of 64 draws
Z = 1.959963984540054

REPORT = {
    "seeds": {"bank": 0, "sharpness": 0},
    "bank": {"n": 64, "seed": 0, "source": "data: digits", "t_range": [0, 1000], "loss": {"value": 1.0}},
    # loss: mean of 64 draws, s.e. 0.1 -> 95% interval 1 ± 0.1 t(63) = [0.80, 1.20]
    "loss": {"value": 1.0, "stderr": 0.1, "n": 64},
    # an FD: bootstrap s.e., a stored basic interval around its bias-corrected value (which leaves the value out)
    "fid": {
        "ci_level": 0.95,
        "value": {"value": 6.0, "stderr": 1.0, "ci_low": 1.0, "ci_high": 4.5, "n": 64, "bias_corrected": 3.0},
    },
    "only_ci": {"value": 2.0, "ci_low": 1.5, "ci_high": 2.5},  # an interval without s.e., level not stated
    "plain": 0.5,  # no uncertainty at all
    "sharp": {"increase": {"value": 2.0, "stderr": 0.5, "n": 4}, "per_draw": [1.5, 2.5, 1.5, 2.5]},
}


def rules(*raw, **gate):
    return parse_config({"gate": {"rules": list(raw), **gate}}).rules


def decide(rule: dict, report=REPORT, baseline=None, **gate):
    return evaluate(rules(rule, **gate), report, baseline).rows[0]


@pytest.mark.parametrize(
    "bound, op, expect",  # loss = 1.0, 95% interval [0.80, 1.20]
    [
        # upper bounds: value above the bound but the interval reaches it / the whole interval beyond it
        (0.9, "max", {"point": False, "interval": True, "strict": False}),
        (0.75, "max", {"point": False, "interval": False, "strict": False}),
        (1.1, "max", {"point": True, "interval": True, "strict": False}),
        (1.25, "max", {"point": True, "interval": True, "strict": True}),
        # lower bounds: the same, mirrored
        (1.1, "min", {"point": False, "interval": True, "strict": False}),
        (1.25, "min", {"point": False, "interval": False, "strict": False}),
        (0.9, "min", {"point": True, "interval": True, "strict": False}),
        (0.75, "min", {"point": True, "interval": True, "strict": True}),
    ],
)
def test_modes_decide_by_the_value_or_an_end_of_the_interval(bound, op, expect):
    for mode, passed in expect.items():
        row = decide({"metric": "loss", op: bound, "mode": mode})
        assert row.passed is passed, (mode, row.reason)
        assert row.low == pytest.approx(1 - 0.1 * T63) and row.high == pytest.approx(1 + 0.1 * T63)
        assert row.judged == mode and "t(63)" in row.interval and row.reason


def test_confidence_widens_the_interval():
    narrow = decide({"metric": "loss", "max": 0.85, "mode": "interval", "confidence": 0.5})
    wide = decide({"metric": "loss", "max": 0.85, "mode": "interval", "confidence": 0.99})
    assert narrow.high - narrow.low < wide.high - wide.low
    assert wide.high - wide.low == pytest.approx(2 * 0.1 * student_t.ppf(0.995, 63))
    assert not narrow.passed and wide.passed  # 50%: [0.93, 1.07] is all above 0.85; 99% reaches below it


def test_bootstrap_fd_interval_is_around_the_value_not_the_bias_corrected_one():
    row = decide({"metric": "fid.value", "max": 5.0, "mode": "interval"})
    assert (row.low, row.high) == pytest.approx((6 - Z, 6 + Z))  # not the stored [1.0, 4.5] around 3.0
    assert "bootstrap s.e." in row.interval and row.passed  # 6 > 5 but 4.04 <= 5: within noise
    assert not decide({"metric": "fid.value", "max": 5.0}).passed  # point


def test_a_stored_interval_counts_only_at_its_own_level():
    m = measure(REPORT, "only_ci")
    assert m.ci == (1.5, 2.5) and m.stderr is None and m.level is None
    row = decide({"metric": "only_ci", "max": 1.8, "mode": "interval"})
    assert row.judged == "point" and not row.passed  # level unknown: no interval to use
    report = copy.deepcopy(REPORT)
    report["ci_level"] = 0.9  # the report states its level: the stored interval is used at 0.9 only
    row = decide({"metric": "only_ci", "max": 1.8, "mode": "interval", "confidence": 0.9}, report)
    assert row.judged == "interval" and row.passed and (row.low, row.high) == (1.5, 2.5)
    assert decide({"metric": "only_ci", "max": 1.8, "mode": "interval"}, report).judged == "point"


def test_no_uncertainty_is_judged_as_a_point_and_says_so():
    row = decide({"metric": "plain", "max": 0.4, "mode": "interval"})
    assert not row.passed and row.judged == "point" and row.low is None
    assert "no uncertainty" in row.note
    md = gate_markdown(evaluate(rules({"metric": "plain", "max": 0.4, "mode": "strict"}), REPORT), "r.json")
    assert "judged as point" in md and "none in the report" in md and "no uncertainty" in md


def test_gate_table_sets_default_mode_and_a_rule_overrides_it():
    r = rules({"metric": "loss", "max": 0.9}, {"metric": "loss", "max": 0.9, "mode": "point"}, mode="interval")
    assert [x.mode for x in r] == ["interval", "point"]
    res = evaluate(r, REPORT)
    assert [row.passed for row in res.rows] == [True, False]
    assert rules({"metric": "loss", "max": 1})[0].mode == "point"  # the default: as before modes


def baseline_pair(items_a, items_b, same=True):
    a, b = copy.deepcopy(REPORT), copy.deepcopy(REPORT)
    for doc, items in ((a, items_a), (b, items_b)):
        mean = sum(items) / len(items)
        sd = math.sqrt(sum((x - mean) ** 2 for x in items) / (len(items) - 1))
        doc["sharp"] = {"increase": {"value": mean, "stderr": sd / 2, "n": 4}, "per_draw": items}
    if not same:
        b["seeds"] = {"bank": 1, "sharpness": 1}
    return a, b


def test_relative_rules_pair_draws_when_seeds_and_bank_match():
    # Draw i of both runs shares its random direction: the differences are steady, each side is not.
    a, b = baseline_pair([1.2, 3.2, 1.4, 3.4], [1.0, 3.0, 1.0, 3.0])
    assert same_draws(a, b)
    rule = {"metric": "sharp.increase", "max": 0.0, "relative": "delta", "mode": "interval"}
    paired = decide(rule, a, b)
    assert paired.pairing == "paired" and "paired over 4 draws" in paired.interval
    d = [0.2, 0.2, 0.4, 0.4]  # differences: mean 0.3, s.e. 0.05773
    se = math.sqrt(sum((x - 0.3) ** 2 for x in d) / 3 / 4)
    q = student_t.ppf(0.975, 3)
    assert (paired.low, paired.high) == pytest.approx((2.3 - q * se, 2.3 + q * se))
    assert not paired.passed  # the whole paired interval of the increase is above the baseline's
    a2, b2 = baseline_pair([1.2, 3.2, 1.4, 3.4], [1.0, 3.0, 1.0, 3.0], same=False)
    indep = decide(rule, a2, b2)
    assert indep.pairing == "independent" and "independent" in indep.interval
    assert indep.high - indep.low > 10 * (paired.high - paired.low)
    assert indep.passed  # the same change is within the noise of two independent runs


def test_independent_difference_uses_both_errors_and_says_when_one_is_missing():
    base = copy.deepcopy(REPORT)
    base["loss"] = {"value": 0.9, "stderr": 0.1, "n": 64}
    row = decide({"metric": "loss", "max": 1.0, "relative": "ratio", "mode": "strict"}, REPORT, base)
    assert row.bound == pytest.approx(0.9) and row.pairing == "independent"
    half = (row.high - row.low) / 2
    assert half == pytest.approx(student_t.ppf(0.975, 126) * math.hypot(0.1, 0.1), rel=1e-3)  # Welch df = 126
    base["loss"] = 0.9  # baseline without uncertainty: the value's alone
    row = decide({"metric": "loss", "max": 1.0, "relative": "ratio", "mode": "strict"}, REPORT, base)
    assert (row.high - row.low) / 2 == pytest.approx(0.1 * T63) and "baseline without uncertainty" in row.interval


@pytest.mark.parametrize(
    "gate, message",
    [
        ({"rules": [{"metric": "a", "max": 1, "mode": "fuzzy"}]}, "mode must be one of point, interval, strict"),
        ({"rules": [{"metric": "a", "max": 1, "confidence": 1.5}]}, "confidence must be a number between 0 and 1"),
        ({"rules": [{"metric": "a", "max": 1, "confidence": 0}]}, "confidence must be"),
        ({"rules": [{"metric": "a", "max": 1, "confidence": "0.9"}]}, "confidence must be"),
        ({"rules": [{"metric": "a", "max": 1, "confidence": True}]}, "confidence must be"),
        ({"rules": [{"metric": "a", "max": 1}], "mode": "Interval"}, r"\[gate\]: mode must be"),
        ({"rules": [{"metric": "a", "max": 1}], "confidence": 95}, r"\[gate\]: confidence must be"),
    ],
)
def test_bad_mode_or_confidence_is_one_line(gate, message):
    with pytest.raises(InputError, match=message) as e:
        parse_config({"gate": gate}, "x.toml")
    assert "\n" not in str(e.value) and str(e.value).startswith("x.toml")


def test_bad_mode_exits_2_before_any_audit(cli, tmp_path):
    cfg = tmp_path / "flatcheck.toml"
    cfg.write_text('[[gate.rules]]\nmetric = "fid.value"\nmax = 5\nmode = "intervals"\n')
    code, out, err = cli("gate", "digits-base", "--config", cfg)
    assert code == 2, out + err
    assert "mode must be one of point, interval, strict (got 'intervals')" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
