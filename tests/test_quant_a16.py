"""16-bit activations are near-lossless (issue 13, item 3).

The loss came from clipping, not rounding: a static range calibrated on other seeds and
conditions clips the evaluation's larger extremes. From HEADROOM_BITS on, ranges cover the
observed extremes with headroom (calibrate.py). These tests fail on the old ranges.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from flatcheck.core.checkpoint import bundled_models, bundled_root
from flatcheck.measures.quantize.calibrate import HEADROOM_BITS, ActivationStats, activation_ranges
from flatcheck.measures.quantize.simulated import ActQuant, WeightCache, simulated_quantization


def _stats(lo: float, hi: float, n: int = 4096, seed: int = 0) -> ActivationStats:
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(n, generator=g).clamp(lo, hi)
    pool[0], pool[1] = lo, hi
    return ActivationStats(lo={"x": lo}, hi={"x": hi}, pool={"x": pool}, calls={"x": 1})


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_16_bit_ranges_keep_values_past_the_calibrated_extremes(method):
    stats = _stats(-1.0, 3.0)
    ranges = activation_ranges(stats, ["x"], method, [8, 16])
    x = torch.tensor([-1.25, -0.3, 0.0, 0.7, 2.0, 3.6])  # 20% past both calibrated extremes
    q16 = ActQuant.from_range(*ranges[("x", 16)], 16)(x)
    assert torch.allclose(q16, x, rtol=0, atol=1e-4)  # old ranges clipped 3.6 to <= 3.0
    q8 = ActQuant.from_range(*ranges[("x", 8)], 8)(x)
    assert float(q8.max()) <= 3.0 + 1e-6  # below HEADROOM_BITS the calibrated range (and its clipping) is unchanged
    assert 8 < HEADROOM_BITS <= 16


def test_an_input_that_was_zero_in_calibration_stays_full_precision():
    layer = torch.nn.Linear(4, 3)
    x = torch.tensor([[0.3, -0.2, 0.05, 1.7]])
    want = layer(x)
    with torch.no_grad(), simulated_quantization(layer, {"": (None, 16)}, WeightCache(layer), {("", 16): (0.0, 0.0)}):
        got = layer(x)
    # The old range [0, 0] built a grid of step 1 and rounded x to integers.
    assert torch.equal(got, want)
    with pytest.raises(ValueError):
        ActQuant.from_range(0.0, 0.0, 16)


def _class_digits(root):
    """The bundled digits UNet with a 10-class embedding added (random, as large as the time
    embedding): a class-conditional model whose sampler is not chaotic, unlike a random-weight
    one, where 1e-6 relative weight noise already moves samples by an MSE of 1.5e-3."""
    from diffusers import UNet2DModel

    src = bundled_root() / "digits-base"
    out = root / "digits-class"
    shutil.copytree(src, out)
    base = UNet2DModel.from_pretrained(src / "unet")
    net = UNet2DModel.from_config({**base.config, "num_class_embeds": 10})
    missing, unexpected = net.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["class_embedding.weight"] and not unexpected
    with torch.no_grad():
        temb = base.time_embedding(base.time_proj(torch.tensor([10.0, 500.0, 900.0])))
        g = torch.Generator().manual_seed(0)
        net.class_embedding.weight.copy_(torch.randn(net.class_embedding.weight.shape, generator=g) * temb.std())
    net.save_pretrained(out / "unet")
    return out


def _a16_drift(cli, path) -> dict[str, float]:
    """Relative sample MSE (to the full-precision samples, decoded for latent models) of A16 alone and W16A16."""
    drift = {}
    for spec in (["--wbits", "fp", "--abits", "16"], ["--bits", "16"]):
        code, out, err = cli(
            "quantize",
            path,
            *spec,
            "--samples",
            "16",
            "--steps",
            "20",
            "--calib-samples",
            "8",
            "--sensitivity-samples",
            "0",
            "--probes",
            "4",
            "--batch-size",
            "16",
            "--data",
            "none",
            "--device",
            "cpu",
            "--json",
            "-",
        )
        assert code == 0, err
        (s,) = json.loads(out)["quantize"]["settings"]
        drift[s["name"]] = s["relative_mse"]
    return drift


@pytest.mark.skipif("digits-base" not in bundled_models(), reason="no bundled model installed")
def test_w16a16_is_near_lossless_on_a_class_conditional_model(cli, tmp_path):
    drift = _a16_drift(cli, _class_digits(tmp_path))
    # Old MSE-searched ranges: 2.8e-5 (A16 alone, 64 samples); minmax 3.9e-6. Now 1e-7.
    assert drift["W-fpA16"] < 1e-6 and drift["W16A16"] < 1e-6, drift


def test_w16a16_is_near_lossless_on_a_latent_model(cli, family_dir):
    path = family_dir("ldm")  # UNet2DModel on 3 x 8 x 8 VQ latents; drift on decoded pixels
    drift = _a16_drift(cli, path)
    assert drift["W-fpA16"] < 3e-5 and drift["W16A16"] < 3e-5, drift


@pytest.mark.parametrize("bits", [4, 8])
def test_mse_range_is_the_argmin_of_each_candidates_own_error(bits):
    """The chunked in-place search picks what a candidate-by-candidate float64 loop picks: the widest of
    the ranges a * [lo, hi] (a = 1, 0.99, ... 0.01) with the least mean squared quantization error."""
    import numpy as np

    from flatcheck.measures.quantize.calibrate import MSE_GRID, _mse_range

    g = torch.Generator().manual_seed(bits)
    pool = torch.cat([torch.randn(3000, generator=g), 20 * torch.rand(30, generator=g) - 5])  # heavy right tail
    lo, hi = float(pool.min()), float(pool.max())
    x, qmax, errs = pool.double().numpy(), 2**bits - 1, []
    for i in range(MSE_GRID, 0, -1):
        a = i / MSE_GRID
        scale = a * (hi - lo) / qmax
        zero = min(max(np.round(-a * lo / scale), 0), qmax)
        errs.append(np.mean(((np.clip(np.round(x / scale) + zero, 0, qmax) - zero) * scale - x) ** 2))
    a = (MSE_GRID - int(np.argmin(errs))) / MSE_GRID
    assert a < 1  # the tail is clipped: the test can tell the search from min/max
    assert _mse_range(pool, lo, hi, bits) == pytest.approx((a * lo, a * hi), rel=1e-12)
