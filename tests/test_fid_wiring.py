"""FD/FID attached to quantize (per setting) and exposure (per step count)."""

from __future__ import annotations

import json

import pytest

QUICK_QUANT = (
    "--bits",
    "4",
    "--samples",
    "16",
    "--steps",
    "5",
    "--calib-samples",
    "8",
    "--sensitivity-samples",
    "0",
    "--probes",
    "16",
    "--batch-size",
    "16",
    "--json",
    "-",
)


def test_quantize_reports_fd_per_setting_with_paired_change(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("FLATCHECK_CACHE", str(tmp_path / "cache"))
    code, out, err = cli("quantize", "digits-sam", *QUICK_QUANT)
    assert code == 0, err
    r = json.loads(out)["quantize"]
    assert r["fid_label"] == "FD (digits-cnn)" and "2048" in r["fid_warning"]
    fp, w4 = r["full_precision"]["fid"], r["settings"][0]["fid"]
    change = r["settings"][0]["fid_change"]
    assert fp["n"] == w4["n"] == 16
    # Basic bootstrap intervals: as wide as the middle 95% of the resampled values (a few bootstrap
    # standard errors), but not centred on the estimate: at N = 16 in 64 dimensions the resamples
    # are biased, and the interval is the estimate reflected about them.
    for est in (fp, w4, change):
        assert est["ci_low"] < est["ci_high"] and 2 * est["stderr"] < est["ci_high"] - est["ci_low"] < 6 * est["stderr"]
    assert fp["ci_low"] >= 0 and w4["ci_low"] >= 0
    assert change["value"] == pytest.approx(w4["value"] - fp["value"], rel=1e-9)
    assert change["stderr"] < (fp["stderr"] ** 2 + w4["stderr"] ** 2) ** 0.5  # paired: the shared noise cancels


def test_quantize_no_fid_and_no_reference(cli, tiny_pipeline):
    code, out, err = cli("quantize", "digits-sam", *QUICK_QUANT, "--no-fid")
    assert code == 0, err
    assert json.loads(out)["quantize"]["full_precision"]["fid"] is None
    # A model that is not a bundled digits model has no reference unless --ref is given.
    code, out, err = cli("quantize", tiny_pipeline, *QUICK_QUANT)
    assert code == 0, err
    assert json.loads(out)["quantize"]["fid_label"] is None


def test_quantize_bad_reference_fails_before_sampling(cli, tmp_path):
    code, _, err = cli("quantize", "digits-sam", *QUICK_QUANT, "--ref", tmp_path / "nope")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_fid_with_unusable_feature_weights_is_an_input_error(cli, tmp_path):
    # The reference is implied (the bundled digits), but FD is all `fid` measures: exit 2, one line.
    code, _, err = cli("fid", "digits-sam", "--samples", "4", "--fid-weights", tmp_path / "missing.safetensors")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--fid-weights" in err


def test_exposure_reports_fd_per_step_count(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("FLATCHECK_CACHE", str(tmp_path / "cache"))
    code, out, err = cli(
        "exposure",
        "digits-sam",
        "--steps",
        "4,8",
        "--samples",
        "16",
        "--probes",
        "16",
        "--batch-size",
        "16",
        "--json",
        "-",
    )
    assert code == 0, err
    runs = json.loads(out)["exposure"]["runs"]
    assert [r["steps"] for r in runs] == [4, 8]
    for r in runs:
        assert r["fid_label"] == "FD (digits-cnn)" and r["fid"]["n"] == 16 and r["fid"]["value"] > 0
    assert runs[0]["fid"]["value"] != runs[1]["fid"]["value"]
