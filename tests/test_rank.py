"""flatcheck rank: the rank statistics against scipy, the bootstraps, extraction from real reports,
and the command on three tiny models (audited once) and on their written reports."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import scipy.stats

from flatcheck.rank import stats
from tests.audit_fixtures import TINY_CLI, tiny_audit  # noqa: F401 - fixture


# ---------------------------------------------------------------------------- statistics vs scipy
@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")  # scipy's NaN for a tied side: ours is NaN too
@pytest.mark.parametrize("n", range(3, 13))
def test_spearman_and_kendall_tau_b_equal_scipy_with_ties(n):
    rng = np.random.default_rng(n)
    rows = []
    for trial in range(40):
        # Few distinct values: many ties on both sides (and now and then one side tied throughout).
        x = rng.integers(0, 3 + trial % 4, n).astype(float)
        y = (x * rng.choice([-1, 0.5, 2]) + rng.integers(0, 3, n)).astype(float) if trial % 2 else rng.normal(size=n)
        rows.append((x, y))
        want_rho, want_tau = scipy.stats.spearmanr(x, y).statistic, scipy.stats.kendalltau(x, y, variant="b").statistic
        got_rho, got_tau = stats.spearman(x, y), stats.kendall_tau_b(x, y)
        for want, got in ((want_rho, got_rho), (want_tau, got_tau)):
            assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want, abs=1e-12), (x, y, want, got)
    # Row-wise on a stack gives the same numbers as one at a time (the bootstrap relies on it).
    xs, ys = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
    np.testing.assert_array_equal(stats.spearman(xs, ys), [stats.spearman(x, y) for x, y in rows])
    np.testing.assert_array_equal(stats.kendall_tau_b(xs, ys), [stats.kendall_tau_b(x, y) for x, y in rows])


def test_planted_orders_and_ties():
    x = np.arange(7.0)
    assert stats.spearman(x, x**3) == 1.0 and stats.kendall_tau_b(x, np.exp(x)) == 1.0
    assert stats.spearman(x, -x) == -1.0 and stats.kendall_tau_b(x, -x) == -1.0
    np.testing.assert_array_equal(stats.average_ranks([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
    assert np.isnan(stats.spearman([1, 1, 1], [1, 2, 3])) and np.isnan(stats.kendall_tau_b([1, 2, 3], [4, 4, 4]))
    # One swapped pair out of 6: tau = (5 - 1) / 6, rho = 1 - 6 * 2 / (4 * 15).
    assert stats.kendall_tau_b([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    assert stats.spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)


@pytest.mark.parametrize("n", range(3, 9))
def test_permutation_p_is_scipys_exact_test(n):
    rng = np.random.default_rng(10 + n)
    for x, y in [
        (np.arange(n), np.arange(n)),
        (rng.integers(0, 3, n), rng.integers(0, 4, n)),
        (rng.normal(size=n), rng.normal(size=n)),
    ]:
        x, y = x.astype(float), y.astype(float)
        p, method = stats.permutation_p(x, y)
        if np.isnan(stats.spearman(x, y)):
            assert p is None
            continue
        # Two-sided as |rho| >= |observed| (scipy's "two-sided" doubles the smaller tail instead; the same without
        # ties).
        # scipy enumerates the orderings; the statistic is ours (held to scipy's spearmanr above), vectorised for speed.
        want = scipy.stats.permutation_test(
            (y,),
            lambda yy, axis: np.abs(stats.spearman(np.broadcast_to(x, yy.shape), yy)),
            permutation_type="pairings",
            n_resamples=np.inf,
            alternative="greater",
            vectorized=True,
        ).pvalue
        assert p == pytest.approx(want) and method.startswith("exact"), (x, y)
    assert stats.permutation_p([1, 2, 3], [4, 5, 6])[0] == pytest.approx(
        1 / 3
    )  # three checkpoints: perfect by chance 1 in 3


def test_permutation_p_by_random_orderings_above_eight():
    x = np.arange(12.0)
    y = x + np.random.default_rng(0).normal(0, 4, 12)
    p, method = stats.permutation_p(x, y, rounds=9999, seed=1)
    assert method.startswith("Monte Carlo") and p == stats.permutation_p(x, y, rounds=9999, seed=1)[0]
    exact = 0.0122  # scipy.stats.permutation_test, 20000 random pairings (the exact p needs 12! orderings)
    assert abs(p - exact) < 0.004
    assert stats.permutation_p(x, x**2, rounds=999)[0] == pytest.approx(1 / 1000)  # none as good: (1 + 0) / (1 + 999)


# ---------------------------------------------------------------------------- bootstraps
def test_checkpoint_bootstrap_is_seeded_and_drops_degenerate_resamples():
    x = np.array([1.0, 2.0, 3.0, 5.0])
    y = np.array([0.1, 0.4, 0.5, 0.9])  # perfectly monotone: every usable resample has rho = 1
    idx = stats.checkpoint_resamples(4, 500, seed=3)
    a = stats.bootstrap_checkpoints(x, y, idx)
    b = stats.bootstrap_checkpoints(x, y, stats.checkpoint_resamples(4, 500, seed=3))
    assert a == b
    assert (a.low, a.high) == (1.0, 1.0) and a.low <= stats.spearman(x, y) <= a.high
    # A resample of one checkpoint drawn 4 times has tied sides: dropped, and exactly those are.
    single = sum(len(set(row)) == 1 for row in idx.tolist())
    assert a.dropped == single and a.rounds == 500
    other = stats.bootstrap_checkpoints(x, [0.1, 0.6, 0.5, 0.9], stats.checkpoint_resamples(4, 500, seed=4))
    assert other.low < 1.0  # not monotone: the interval opens up
    # N = 3 of which two are tied on x: most resamples are degenerate; below half usable -> no interval.
    tied = stats.bootstrap_checkpoints([1, 1, 2], [1, 2, 3], stats.checkpoint_resamples(3, 200, seed=0))
    assert tied.dropped > 0 and tied.rounds == 200


def test_noise_bootstrap_redraws_from_standard_errors_and_holds_the_rest_fixed():
    v = np.array([1.0, 2.0, 3.0, 4.0])
    fixed = stats.noise_draws(v, [None, 0.0, None, None], 100, seed=1)
    assert (fixed == v).all()  # no standard error: held fixed
    d1 = stats.noise_draws(v, [0.1, 0.1, 0.1, 0.1], 100, seed=1)
    assert (d1 == stats.noise_draws(v, [0.1] * 4, 100, seed=1)).all() and not (d1 == v).all()
    assert d1.std(0) == pytest.approx([0.1] * 4, rel=0.25)
    # Tiny noise keeps the order: [1, 1]; huge noise scrambles it: a wide interval around ~0.
    tight = stats.bootstrap_noise(stats.noise_draws(v, [1e-3] * 4, 400, 1), stats.noise_draws(v, [None] * 4, 400, 2))
    assert (tight.low, tight.high) == (1.0, 1.0)
    wide = stats.bootstrap_noise(stats.noise_draws(v, [100.0] * 4, 400, 1), stats.noise_draws(v, [None] * 4, 400, 2))
    assert wide.low < -0.5 and wide.high > 0.5
    folded = stats.noise_draws(np.array([-0.5, 0.5]), [1.0, 1.0], 1000, seed=0, absolute=True)
    assert (folded >= 0).all()


# ---------------------------------------------------------------------------- extraction
def test_measures_and_outcomes_read_the_reports_numbers(tiny_audit):
    """Each quantity names the report path it reads, and its value is that number (|.|, -1 where said)."""
    from flatcheck.gate import lookup
    from flatcheck.rank import gather

    _, doc = tiny_audit
    docs = [doc, copy.deepcopy(doc), copy.deepcopy(doc)]
    measures, notes = gather(docs, ["a", "b", "c"], "measures")
    keys = {q.key for q in measures}
    assert {
        "hessian.top_eigenvalue",
        "hessian.trace",
        "avg.adaptive.r0.01",
        "avg.adaptive.r0.1",
        "worst.adaptive.r0.0001",
        "worst.adaptive.r0.001",
        "hessian.trace.t0-1000",
        "worst.adaptive.r0.001.t0-1000",
    } <= keys
    for q in measures:
        value, se = lookup(doc, q.path)
        assert q.values == [value] * 3 and q.stderrs == [se] * 3, q.key
    top = next(q for q in measures if q.key == "hessian.top_eigenvalue")
    assert top.values[0] == doc["sharpness"]["hessian"]["eigen"]["eigenvalues"][0] and top.stderrs == [None] * 3
    outcomes, onotes = gather(docs, ["a", "b", "c"], "outcomes")
    by = {q.key: q for q in outcomes}
    assert set(by) == {
        "quantize.W8A8.drift",
        "quantize.W8A8.fd_change",
        "quantize.W4A4.drift",
        "quantize.W4A4.fd_change",
        "exposure.2.gap",
        "exposure.2.lambda",
    }
    w4 = doc["quantize"]["settings"][1]
    assert by["quantize.W4A4.drift"].values[0] == w4["relative_mse"]
    assert by["quantize.W4A4.drift"].stderrs[0] == pytest.approx(
        w4["relative_mse"] * w4["sample_mse"]["stderr"] / w4["sample_mse"]["value"]
    )
    assert by["quantize.W4A4.fd_change"].values[0] == w4["fid_change"]["value"]
    run = doc["exposure"]["runs"][0]
    assert (
        by["exposure.2.gap"].values[0] == abs(run["gap_relative"])
        and by["exposure.2.gap"].signed[0] == run["gap_relative"]
    )
    assert by["exposure.2.lambda"].values[0] == pytest.approx(abs(run["scaling"][0]["b"] - 1))
    assert any("nf4" in n for n in onotes)  # no nf4 setting: said, not invented
    nf4 = copy.deepcopy(doc)
    nf4["quantize"]["settings"].append(
        {**copy.deepcopy(w4), "name": "bnb-nf4", "backend": "bnb", "wbits": 4, "abits": None, "bnb_type": "nf4"}
    )
    outcomes, onotes = gather([nf4] * 3, ["a", "b", "c"], "outcomes")
    assert {"quantize.bnb-nf4.drift", "quantize.bnb-nf4.fd_change"} <= {q.key for q in outcomes} and not any(
        "nf4" in n for n in onotes
    )


def test_a_number_missing_from_one_report_is_left_out_with_a_note(tiny_audit):
    from flatcheck.rank import gather

    _, doc = tiny_audit
    fewer = copy.deepcopy(doc)
    fewer["sharpness"]["worst"][0]["points"] = fewer["sharpness"]["worst"][0]["points"][:1]  # one radius fewer
    fewer["quantize"]["settings"][1]["fid_change"] = None
    measures, notes = gather([doc, fewer, doc], ["a", "b", "c"], "measures")
    assert "worst.adaptive.r0.001" not in {q.key for q in measures} and "worst.adaptive.r0.0001" in {
        q.key for q in measures
    }
    assert any(n.startswith("worst.adaptive.r0.001: not in the report of b") for n in notes)
    failed = copy.deepcopy(doc)
    failed["exposure"] = None
    failed["verdicts"] = [
        {**v, "status": "error", "line": "out of memory"} if v["area"] == "exposure" else v for v in doc["verdicts"]
    ]
    outcomes, notes = gather([doc, failed, doc], ["a", "b", "c"], "outcomes")
    assert not any(q.key.startswith("exposure.") for q in outcomes)
    assert "exposure failed (out of memory): no exposure outcomes (b)" in notes and not any(
        n.startswith("exposure.") for n in notes
    )
    outcomes, notes = gather([doc, fewer, doc], ["a", "b", "c"], "outcomes")
    assert "quantize.W4A4.fd_change" not in {q.key for q in outcomes} and "quantize.W8A8.fd_change" in {
        q.key for q in outcomes
    }
    assert any("W4A4" in n and "(b)" in n for n in notes)


# ---------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def three_models(tmp_path_factory):
    """Three tiny pipelines whose weights differ by scale (so they differ in sharpness and in robustness)."""
    import torch
    from diffusers import DDPMPipeline

    from tests.conftest import make_scheduler, make_unet

    folders = []
    for i, scale in enumerate((0.8, 1.0, 1.3)):
        unet = make_unet(seed=i)
        with torch.no_grad():
            for p in unet.parameters():
                p.mul_(scale)
        folder = tmp_path_factory.mktemp("zoo") / f"m{i}"
        DDPMPipeline(unet=unet, scheduler=make_scheduler()).save_pretrained(folder)
        folders.append(folder)
    return folders


RANK_RUN = [*TINY_CLI, "--features", "digits-cnn", "--device", "cpu", "--bootstrap", "300"]


@pytest.fixture(scope="module")
def ranked(three_models, tmp_path_factory):
    """`flatcheck rank` on the three models (one run for the tests below): its JSON, plot, Markdown."""
    import flatcheck.compare as compare
    from flatcheck.cli import run

    out = tmp_path_factory.mktemp("rank")
    audited, plain = [], compare.audit_checkpoint

    def counting(ckpt, *args, **kwargs):  # rank must audit each checkpoint once
        audited.append(ckpt.source)
        return plain(ckpt, *args, **kwargs)

    compare.audit_checkpoint = counting
    try:
        code = run(
            [
                "rank",
                *map(str, three_models),
                *RANK_RUN,
                "--json",
                str(out / "rank.json"),
                "--plot",
                str(out / "scatter.png"),
                "--markdown",
                str(out / "rank.md"),
            ]
        )
    finally:
        compare.audit_checkpoint = plain
    assert code == 0
    assert sorted(audited) == sorted(str(m) for m in three_models)
    return json.loads((out / "rank.json").read_text()), out


def test_rank_on_three_tiny_models(ranked, three_models):
    from flatcheck.rank import gather
    from flatcheck.results import VERSIONS, validate

    doc, out = ranked
    assert validate(doc, "rank") == [], validate(doc, "rank")[:3]
    assert (
        doc["schema_version"] == VERSIONS["rank"] and doc["n"] == 3 and doc["models"] == [str(m) for m in three_models]
    )
    # One audit per model, all on one bank and seed set.
    assert (
        len(doc["reports"]) == 3
        and len({json.dumps(r["bank"]["seed"]) + r["bank"]["source"] for r in doc["reports"]}) == 1
    )
    # The ranked values are the reports' own numbers, and each pair's coefficients are those of the values.
    measures, _ = gather(doc["reports"], doc["models"], "measures")
    assert [q["values"] for q in doc["measures"]] == [
        q.values for q in measures if q.bucket is None
    ]  # by default, whole-bank ones
    vals = {q["key"]: q["values"] for q in doc["measures"] + doc["outcomes"]}
    assert len(doc["pairs"]) == len(doc["measures"]) * len(doc["outcomes"]) > 0
    for p in doc["pairs"]:
        x, y = vals[p["measure"]], vals[p["outcome"]]
        rho = scipy.stats.spearmanr(x, y).statistic
        assert p["spearman"]["value"] == (None if np.isnan(rho) else pytest.approx(rho))
        assert p["spearman"]["checkpoints"]["rounds"] == 300
        if p["spearman"]["value"] is not None:
            assert f"rho = {p['spearman']['value']:.2f}" in p["sentence"] and "over 3 checkpoints" in p["sentence"]
            assert p["p_value"] == pytest.approx(stats.permutation_p(x, y)[0]) and p["p_value"] >= 1 / 3  # 3! orderings
    # The intervals are the bootstraps of stats.py on the seeded resamples (one set of checkpoint resamples for
    # every pair, one noise stream per quantity), and the cells are what the command computed from them.
    from dataclasses import asdict

    from flatcheck.core.seeds import stream

    idx = stats.checkpoint_resamples(3, 300, stream(0, "rank-checkpoints"))
    qs = {q["key"]: q for q in doc["measures"] + doc["outcomes"]}

    def draws(q):
        return stats.noise_draws(
            q["signed"] or q["values"], q["stderrs"], 300, stream(0, f"rank-noise-{q['key']}"), q["absolute"]
        )

    for p in doc["pairs"]:
        m, o = qs[p["measure"]], qs[p["outcome"]]
        for name in ("spearman", "kendall"):
            assert p[name]["checkpoints"] == asdict(stats.bootstrap_checkpoints(m["values"], o["values"], idx, name))
            assert p[name]["noise"] == asdict(stats.bootstrap_noise(draws(m), draws(o), name))
    md = (out / "rank.md").read_text()
    assert "# flatcheck rank: 3 checkpoints" in md and doc["pairs"][0]["sentence"] in md
    png = (out / "scatter.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and doc["artifacts"]["plot"] == str(out / "scatter.png")
    broken = copy.deepcopy(doc)
    broken["pairs"][0]["spearman"]["value"] = 1.5
    assert validate(broken, "rank")


def test_rank_from_written_reports_gives_the_same_numbers(ranked, cli, tmp_path):
    """A zoo audited once is re-ranked from its reports (here, the rank JSON's own and files of each)."""
    doc, out = ranked
    files = []
    for i, r in enumerate(doc["reports"]):
        files.append(tmp_path / f"r{i}.json")
        files[-1].write_text(json.dumps(r))
    code, stdout, err = cli("rank", "--reports", *files, "--bootstrap", "300", "--json", "-")
    assert code == 0, err
    again = json.loads(stdout)
    assert again["models"] == [r["model"]["source"] for r in doc["reports"]]
    assert again["pairs"] == doc["pairs"] and again["measures"] == doc["measures"]  # same seed: same intervals too
    # The rank document itself is accepted (its embedded reports are ranked), and the selection narrows the pairs.
    code, stdout, err = cli(
        "rank",
        "--reports",
        out / "rank.json",
        "--bootstrap",
        "300",
        "--measures",
        "hessian.*",
        "--outcomes",
        "quantize.W4A4.*",
        "--json",
        "-",
    )
    assert code == 0, err
    narrow = json.loads(stdout)
    assert {p["measure"] for p in narrow["pairs"]} == {
        "hessian.top_eigenvalue",
        "hessian.trace",
        "hessian.trace.t0-500",
        "hessian.trace.t500-1000",
    }
    assert {p["outcome"] for p in narrow["pairs"]} == {"quantize.W4A4.drift", "quantize.W4A4.fd_change"}
    # A pair's numbers do not depend on the other pairs asked for (the per-bucket ones were not in the default run).
    shared = [p for p in narrow["pairs"] if not p["measure"].startswith("hessian.trace.t")]
    assert len(shared) == 4 and all(p in doc["pairs"] for p in shared)


def test_rank_errors_are_one_line(cli, tiny_audit, tmp_path):
    _, doc = tiny_audit
    files = []
    for i in range(3):
        files.append(tmp_path / f"r{i}.json")
        d = copy.deepcopy(doc)
        d["model"]["source"] = f"m{i}"
        files[-1].write_text(json.dumps(d))
    other_seed = copy.deepcopy(doc)
    other_seed["seeds"]["bank"] = 1
    other_seed["model"]["source"] = "m9"
    (tmp_path / "seed.json").write_text(json.dumps(other_seed))
    own_bank = copy.deepcopy(doc)
    for d in (own_bank,):
        d["bank"]["source"] = "data-free: drawn from the 4 full-precision samples (ddim 2 steps, seed 0)"
    cases = [
        (["digits-base", "digits-sam"], "at least 3 checkpoints"),
        (["--reports", files[0], files[1]], "at least 3 checkpoints (got 2)"),
        (["--reports", files[0], files[1], tmp_path / "missing.json"], "cannot read report"),
        (["--reports", files[0], files[1], tmp_path / "seed.json"], "was not audited like m0 (seeds.bank differ)"),
        (["--reports", files[0], files[1], files[1]], "named twice"),
        (["--reports", *files, "--measures", "nothing.*"], "no measure matches 'nothing.*'"),
        (["--reports", *files, "--quantize-settings", "W8A8"], "no effect with --reports"),
        (["digits-base", "digits-ema", "digits-sam", "--quantize-settings", "W8A8,W3"], "'W3' is not WxAy"),
        (["digits-base", "digits-ema", "digits-sam", "--skip", "sharpness"], "leaves nothing to rank"),
    ]
    for args, message in cases:
        code, out, err = cli("rank", *args)
        assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)
    for i in range(3):
        d = copy.deepcopy(own_bank)
        d["model"]["source"] = f"m{i}"
        files[i].write_text(json.dumps(d))
    code, out, err = cli("rank", "--reports", *files)
    assert code == 2 and "drew their probe bank from their own model's samples" in err and err.count("\n") == 1


def test_tied_checkpoints_have_no_correlation_and_other_devices_are_noted(tiny_audit):
    """Three reports with equal numbers: every coefficient undefined (said in words, not 0), every
    bootstrap resample dropped; a report from another device is ranked, with a note."""
    from flatcheck.rank import rank_reports

    _, doc = tiny_audit
    docs = [copy.deepcopy(doc) for _ in range(3)]
    docs[2]["environment"]["device"] = "cuda:0"
    r = rank_reports(docs, ["a", "b", "c"], rounds=50)
    assert r.pairs and all(p.spearman.value is None and p.kendall.value is None and p.p_value is None for p in r.pairs)
    assert all(p.spearman.checkpoints.low is None and p.spearman.checkpoints.dropped == 50 for p in r.pairs)
    assert (
        r.pairs[0].sentence
        == "top Hessian eigenvalue vs W8A8 sample drift: no rank correlation, top Hessian eigenvalue is the same for "
        "all 3 checkpoints."
    )
    assert any("different devices (cpu, cuda:0)" in n for n in r.notes)
