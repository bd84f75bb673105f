"""`flatcheck quantize` end to end, and the ordering of drift on the bundled models."""

from __future__ import annotations

import json

import pytest

from flatcheck.core.checkpoint import bundled_models, load
from flatcheck.core.denoiser import Denoiser
from flatcheck.core.perturb import snapshot, weights_equal
from flatcheck.core.probes import build_probe_bank
from flatcheck.measures.quantize.measure import QuantizeConfig, measure_quantization

FAST = [
    "--samples",
    "4",
    "--steps",
    "3",
    "--calib-samples",
    "2",
    "--sensitivity-samples",
    "2",
    "--sensitivity-steps",
    "2",
    "--probes",
    "4",
    "--batch-size",
    "8",
    "--device",
    "cpu",
]


def test_quantize_json_table_and_grids(cli, tiny_pipeline, tmp_path):
    code, out, err = cli(
        "quantize", tiny_pipeline, "--bits", "8,4", "--bnb", "int8", *FAST, "--json", "-", "--out", tmp_path
    )
    assert code == 0, err
    r = json.loads(out)["quantize"]  # stdout is JSON only (the report document)
    assert [s["name"] for s in r["settings"]] == ["W8A8", "W4A4", "bnb-int8"]
    w8, w4, b8 = r["settings"]
    assert 0 < w8["sample_mse"]["value"] < w4["sample_mse"]["value"]
    assert w8["weight_share"] > 0.9 and 0 < b8["weight_share"] < w8["weight_share"] and b8["layers"] < w8["layers"]
    assert w8["fid"] is None and "_samples" not in w8  # FID slot, samples not in the JSON
    assert r["sensitivity_setting"] == "W4A4" and r["sensitivity"][0]["rank"] == 1
    assert r["layer_policy"].startswith("first/last layers quantized like the rest")
    assert {p.name for p in tmp_path.iterdir()} >= {
        "side-by-side.png",
        "samples-full-precision.png",
        "samples-W4A4.png",
    }
    code, out, err = cli("quantize", tiny_pipeline, "--bits", "6", "--first-last", "fp", "--attention", "fp", *FAST)
    assert code == 0, err
    assert "W6A6" in out and "kept in full precision" in out and "most sensitive layers" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--bits", "0"],
        ["--bits", "1"],
        ["--bits", "17"],
        ["--bits", "text"],
        ["--bits", "8,,4"],
        ["--wbits", "3", "--bits", "8,4", "--abits", "8,6,4"],
        ["--bnb", "int2"],
        ["--first-last", "none"],
        ["--attention", "half"],
        ["--calibration", "kl"],
        ["--percentile", "20", "--calibration", "percentile"],
        ["--sampler", "nope"],
        ["--samples", "0"],
        ["--sensitivity-setting", "W2A2"],
        ["--probes", "0"],
        ["--data", "/no/such/folder"],
    ],
)
def test_bad_input_is_one_line_exit_2(cli, tiny_pipeline, args):
    code, out, err = cli("quantize", tiny_pipeline, *FAST, *args)
    assert code == 2
    assert err.startswith("flatcheck: error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err


BUNDLED = [m for m in ("digits-base", "digits-ema", "digits-sam") if m in bundled_models()]


@pytest.mark.skipif(not BUNDLED, reason="no bundled model installed")
@pytest.mark.parametrize("name", BUNDLED)
def test_drift_grows_as_bits_shrink_on_bundled_models(name):
    den = Denoiser.from_checkpoint(load(name))
    bank = build_probe_bank(den, 8, seed=0, data="digits")
    saved = snapshot(den.net)
    cfg = QuantizeConfig(samples=8, steps=8, calib_samples=4, sensitivity_samples=0, batch_size=16)
    r = measure_quantization(den, bank, cfg)
    d8, d6, d4 = (s.sample_mse.value for s in r.settings)
    assert 0 < d8 < d6 < d4
    assert r.settings[2].probe_loss_change.value > r.settings[0].probe_loss_change.value
    assert weights_equal(den.net, saved)
