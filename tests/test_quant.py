"""The quantization engine: quantizers against closed forms, calibration, restoring, bitsandbytes on CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flatcheck.core.denoiser import Denoiser
from flatcheck.core.perturb import snapshot, weights_equal
from flatcheck.core.probes import build_probe_bank
from flatcheck.core.sampling import make_sampler, sample
from flatcheck.errors import InputError
from flatcheck.measures.quantize.bnb_backend import bnb_linear_swap
from flatcheck.measures.quantize.calibrate import (
    ActivationStats,
    activation_range,
    activation_ranges,
    collect_activations,
)
from flatcheck.measures.quantize.drift import paired_drift
from flatcheck.measures.quantize.measure import QuantizeConfig, full_precision_samples, measure_quantization
from flatcheck.measures.quantize.sensitivity import layer_sensitivity
from flatcheck.measures.quantize.settings import LayerPolicy, settings_from_options
from flatcheck.measures.quantize.simulated import (
    ActQuant,
    WeightCache,
    layer_plan,
    quantizable_layers,
    quantize_weight,
    simulated_quantization,
    weight_scale,
)

from .conftest import make_scheduler, make_unet


@pytest.fixture
def den():
    return Denoiser(make_unet(), make_scheduler())


def tiny_config(**kw):
    base = dict(samples=6, steps=4, calib_samples=3, sensitivity_samples=2, sensitivity_steps=None, batch_size=8)
    return QuantizeConfig(**{**base, **kw})


# ---------------------------------------------------------------------------- quantizers
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_weight_round_trip_within_half_a_step_per_channel(bits):
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(16, 8, 3, 3, generator=g) * torch.logspace(-2, 1, 16).view(
        -1, 1, 1, 1
    )  # very different channel ranges
    w[3] = 0  # an all-zero channel must survive
    q = quantize_weight(w, bits)
    s = weight_scale(w, bits).view(-1, 1, 1, 1)
    qmax = 2 ** (bits - 1) - 1
    err = (q - w).abs()
    assert torch.all(err <= s / 2 * (1 + 1e-5))
    levels = q / s  # integers in [-qmax, qmax]
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= qmax + 1e-4
    assert torch.equal(q[3], w[3])
    # symmetric per channel: each channel's largest |w| is a grid point, kept exactly (to float rounding)
    assert torch.allclose(q.flatten(1).abs().amax(1), w.flatten(1).abs().amax(1), rtol=1e-6)
    # per-channel really is per channel: a per-tensor step would crush the small channels
    assert err[0].max() < 0.1 * w.abs().max() / qmax


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_activation_quantizer_matches_the_affine_formula(bits):
    g = torch.Generator().manual_seed(bits)
    x = torch.randn(10000, generator=g) * 2 + 0.5
    q = ActQuant.from_range(-1.0, 3.0, bits)
    assert q.zero_point == round(1.0 / q.scale) and q.qmax == 2**bits - 1
    y = q(x)
    inside = (x >= -1.0) & (x <= 3.0)
    assert torch.all((y - x)[inside].abs() <= q.scale / 2 * (1 + 1e-4) + 1e-7)
    lo, hi = -q.zero_point * q.scale, (q.qmax - q.zero_point) * q.scale
    assert torch.allclose(y[x < lo], torch.tensor(lo)) and torch.allclose(y[x > hi], torch.tensor(hi))
    # independent computation: torch's own fake quantizer (they may differ only at exact ties)
    ref = torch.fake_quantize_per_tensor_affine(x, q.scale, q.zero_point, 0, q.qmax)
    assert (y - ref).abs().max() <= q.scale * (1 + 1e-4)
    assert (torch.isclose(y, ref, atol=q.scale * 1e-3)).float().mean() > 0.999
    assert torch.equal(q(torch.zeros(3)), torch.zeros(3))  # zero is exact


def test_activation_range_always_contains_zero():
    q = ActQuant.from_range(0.5, 2.0, 8)  # a positive-only range still represents 0 exactly
    assert q.zero_point == 0 and q(torch.tensor([0.0])).item() == 0.0


# ---------------------------------------------------------------------------- settings and layers
def test_settings_from_options():
    assert [s.name for s in settings_from_options(None)] == ["W8A8", "W6A6", "W4A4"]
    assert [s.name for s in settings_from_options("4")] == ["W4A4"]
    assert [s.name for s in settings_from_options("8,4", abits="8")] == ["W8A8", "W4A8"]
    assert [s.name for s in settings_from_options(None, wbits="4")] == ["W4A-fp"]
    assert [s.name for s in settings_from_options(None, wbits="8,4", abits="fp,6")] == ["W8A-fp", "W4A6"]
    assert [s.name for s in settings_from_options("8", bnb="int8,nf4")] == ["W8A8", "bnb-int8", "bnb-nf4"]
    for bad in ("0", "1", "17", "text", "8,,4", "", "8.5"):
        with pytest.raises(InputError):
            settings_from_options(bad)
    with pytest.raises(InputError):
        settings_from_options("8,6,4", wbits="8,4")  # 3 settings, 2 widths
    with pytest.raises(InputError):
        settings_from_options("8", bnb="int3")
    with pytest.raises(InputError):
        settings_from_options(None, wbits="fp", abits="fp")
    with pytest.raises(InputError):
        LayerPolicy(first_last="keep")


def test_layers_and_policy():
    net = make_unet()
    layers = quantizable_layers(net)
    want = [n for n, m in net.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert list(layers) == want  # every Conv2d and Linear
    assert layers["conv_in"].role == "first" and layers["conv_out"].role == "last"
    attn = [n for n, v in layers.items() if v.role == "attention"]
    assert attn and all(n.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v", "0") for n in attn)
    plan = layer_plan(layers, LayerPolicy(), 4, 4)
    assert set(plan) == set(layers) and set(plan.values()) == {(4, 4)}
    plan = layer_plan(layers, LayerPolicy(first_last="8", attention="fp"), 4, 6)
    assert plan["conv_in"] == (8, 8) and plan["conv_out"] == (8, 8)
    assert not set(attn) & set(plan) and plan["down_blocks.0.resnets.0.conv1"] == (4, 6)
    plan = layer_plan(layers, LayerPolicy(first_last="fp"), 4, None)
    assert "conv_in" not in plan and plan["down_blocks.0.resnets.0.conv1"] == (4, None)


# ---------------------------------------------------------------------------- calibration
def test_calibration_is_deterministic_and_covers_every_step(den):
    names = list(quantizable_layers(den.net))
    sched = make_sampler(den.scheduler, "ddim")
    a = collect_activations(den, names, sched, 5, 3, seed=11, batch_size=2)
    b = collect_activations(den, names, sched, 5, 3, seed=11, batch_size=2)
    assert a.lo == b.lo and a.hi == b.hi and all(torch.equal(a.pool[n], b.pool[n]) for n in names)
    assert a.calls["conv_in"] == 5 * 2  # 5 steps x 2 batches
    for method in ("minmax", "percentile", "mse"):
        assert activation_ranges(a, names, method, [4, 8]) == activation_ranges(b, names, method, [4, 8])
    c = collect_activations(den, names, sched, 5, 3, seed=12, batch_size=2)
    assert a.lo != c.lo  # other seeds, other samples


def test_calibration_pool_is_bounded_whatever_the_calls():
    """A layer's pooled values stay under 2 x pool_values over any number of calls, every call keeps the same
    share (halved together, as uniform subsamples of what it kept), and min/max stay exact."""
    from flatcheck.measures.quantize.calibrate import ActivationRecorder

    layer = torch.nn.Linear(64, 4)
    g = torch.Generator().manual_seed(0)
    calls = [torch.randn(8, 64, generator=g) * (i + 1) for i in range(40)]
    rec = ActivationRecorder(layer, [""], per_call=100, seed=0, pool_values=300)
    with rec, torch.no_grad():
        held = []
        for x in calls:
            layer(x)
            held.append(sum(p.numel() for p in rec._parts[""]))
    pool = rec.stats.pool[""]
    assert max(held) <= 2 * 300 and len(pool) == held[-1]
    assert rec.stats.calls[""] == 40 and rec.stats.hi[""] == max(float(x.max()) for x in calls)
    assert rec.stats.lo[""] == min(float(x.min()) for x in calls)
    # 40 calls at 100 values would be 4000: the share per call went 100 -> 50 -> 25 -> 13, equal for all
    assert len(pool) == 40 * rec._keep[""] and rec._keep[""] < 100
    # each kept value came from its own call (the calls' scales 1..40 set their magnitudes apart)
    per = pool.view(40, -1).abs().amax(1)
    assert all(per[i] <= float(calls[i].abs().max()) for i in range(40))
    # under the bound nothing changes: each call keeps per_call values
    small = ActivationRecorder(layer, [""], per_call=100, seed=0, pool_values=10_000)
    with small, torch.no_grad():
        for x in calls[:5]:
            layer(x)
    assert len(small.stats.pool[""]) == 500


def _stats(values: torch.Tensor) -> ActivationStats:
    return ActivationStats({"l": float(values.min())}, {"l": float(values.max())}, {"l": values}, {"l": 1})


def test_clipping_rules_against_independent_computations():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, generator=g)
    x[:5] = torch.tensor([40.0, -30.0, 25.0, 22.0, -21.0])  # rare outliers
    st = _stats(x)
    assert activation_range(st, "l", "minmax", 4) == (-30.0, 40.0)
    lo, hi = activation_range(st, "l", "percentile", 4, percentile=99.0)
    assert lo == pytest.approx(np.percentile(x.numpy(), 1.0), rel=1e-4) and hi == pytest.approx(
        np.percentile(x.numpy(), 99.0), rel=1e-4
    )

    def mse(r, bits):
        q = ActQuant.from_range(*r, bits)
        return float(((q(x) - x) ** 2).mean())

    for bits in (4, 8):
        r = activation_range(st, "l", "mse", bits)
        assert mse(r, bits) <= mse((-30.0, 40.0), bits) * 1.001  # never worse than min-max
        for a in (0.05, 0.1, 0.2, 0.5):  # and at least as good as other shrink factors
            assert mse(r, bits) <= mse((-30.0 * a, 40.0 * a), bits) * 1.001
    assert activation_range(st, "l", "mse", 4)[1] < 40.0 / 2  # at 4 bits the outliers are clipped


# ---------------------------------------------------------------------------- applying settings
def test_sixteen_bits_is_full_precision_within_float_noise(den):
    layers = quantizable_layers(den.net)
    sched = make_sampler(den.scheduler, "ddim")
    fp = sample(den, sched, 4, 4, 0)
    # Calibrated on the very samples evaluated, min-max clips nothing: what is left is the grid alone.
    stats = collect_activations(den, list(layers), sched, 4, 4, seed=0)
    ranges = activation_ranges(stats, list(layers), "minmax", [16])
    with simulated_quantization(den.net, layer_plan(layers, LayerPolicy(), 16, 16), WeightCache(den.net), ranges):
        q16 = sample(den, sched, 4, 4, 0)
    with simulated_quantization(
        den.net,
        layer_plan(layers, LayerPolicy(), 4, 4),
        WeightCache(den.net),
        activation_ranges(stats, list(layers), "minmax", [4]),
    ):
        q4 = sample(den, sched, 4, 4, 0)
    mse16, psnr16 = paired_drift(fp, q16)
    mse4, _ = paired_drift(fp, q4)
    assert mse16.value < 1e-7 and psnr16.value > 70
    assert mse4.value > 1e3 * mse16.value  # and 4 bits is far from it: the engine is really on


def test_paired_drift_closed_form():
    a = torch.zeros(3, 1, 2, 2)
    b = a.clone()
    b[0] += 0.1
    b[1] -= 0.2
    b[2, 0, 0, 0] = 5.0  # clipped to 1 first: MSE 1/4
    mse, psnr = paired_drift(a, b)
    per = np.array([0.01, 0.04, 0.25])
    assert mse.value == pytest.approx(per.mean()) and mse.stderr == pytest.approx(per.std(ddof=1) / math.sqrt(3))
    assert psnr.value == pytest.approx(np.mean(10 * np.log10(4 / per)))


def test_simulated_quantization_swaps_and_restores(den):
    net = den.net
    saved = snapshot(net)
    params = {n: p for n, p in net.named_parameters()}
    storages = {n: p.data.data_ptr() for n, p in params.items()}
    layers = quantizable_layers(net)
    ranges = {n: (-3.0, 3.0) for n in layers}
    with simulated_quantization(net, layer_plan(layers, LayerPolicy(), 4, 4), WeightCache(net), ranges):
        assert not torch.equal(net.conv_in.weight, saved["conv_in.weight"])
        assert all(len(m._forward_pre_hooks) == 1 for n, m in net.named_modules() if n in layers)
    assert weights_equal(net, saved)
    assert {n: p for n, p in net.named_parameters()} == params  # the same Parameter objects
    assert {n: p.data.data_ptr() for n, p in params.items()} == storages  # pointing at the untouched storage
    assert all(len(m._forward_pre_hooks) == 0 for m in net.modules())


def test_layer_sensitivity_matches_a_manual_single_layer_run(den):
    layers = quantizable_layers(den.net)
    sched = make_sampler(den.scheduler, "ddim")
    ref = sample(den, sched, 3, 3, 0)
    name = "down_blocks.0.resnets.0.conv1"
    ranges = {(name, 4): (-2.0, 2.5)}
    rows = layer_sensitivity(
        den,
        sched,
        3,
        0,
        ref,
        layers,
        {name: (4, 4), "conv_out": (4, None)},
        WeightCache(den.net),
        {**ranges, ("conv_out", 4): (0.0, 0.0)},
    )
    assert [r.rank for r in rows] == [1, 2] and rows[0].drift_mse.value >= rows[1].drift_mse.value
    # independent: write the quantized weight by hand and fake-quantize the input with torch's op
    conv = den.net.get_submodule(name)
    saved = conv.weight.detach().clone()
    q = ActQuant.from_range(-2.0, 2.5, 4)
    h = conv.register_forward_pre_hook(
        lambda m, a: (torch.fake_quantize_per_tensor_affine(a[0], q.scale, q.zero_point, 0, q.qmax),)
    )
    try:
        with torch.no_grad():
            conv.weight.copy_(quantize_weight(saved, 4))
        manual = sample(den, sched, 3, 3, 0)
    finally:
        h.remove()
        with torch.no_grad():
            conv.weight.copy_(saved)
    want, _ = paired_drift(ref, manual)
    got = next(r for r in rows if r.name == name).drift_mse
    # The same arithmetic on the same inputs: equal to float rounding (it came out bit-equal here),
    # where a quantizer off by one level on some inputs would move the drift by percents.
    assert got.value == pytest.approx(want.value, rel=1e-6) and got.stderr == pytest.approx(want.stderr, rel=1e-6)


# ---------------------------------------------------------------------------- the measure
def test_measure_restores_model_and_is_deterministic(den):
    bank = build_probe_bank(den, 8, seed=0, data=torch.rand(8, 1, 8, 8) * 2 - 1)
    saved = snapshot(den.net)
    types = [type(m) for m in den.net.modules()]
    cfg = tiny_config(settings=settings_from_options("8,4"))
    r1 = measure_quantization(den, bank, cfg)
    assert weights_equal(den.net, saved) and [type(m) for m in den.net.modules()] == types
    r2 = measure_quantization(den, bank, cfg)
    assert [s.sample_mse.value for s in r1.settings] == [s.sample_mse.value for s in r2.settings]
    assert [layer.name for layer in r1.sensitivity] == [layer.name for layer in r2.sensitivity]
    w8, w4 = r1.settings
    assert 0 < w8.sample_mse.value < w4.sample_mse.value
    assert w8.weight_share == pytest.approx(
        sum(v.weights for v in quantizable_layers(den.net).values()) / sum(p.numel() for p in den.net.parameters())
    )
    assert r1.sensitivity_setting == "W4A4" and len(r1.sensitivity) == len(quantizable_layers(den.net))
    assert r1.samples_of("W4A4").shape == (6, 1, 8, 8) and w4.fid is None  # the slot FID fills later
    # given full-precision samples are used as they are, not regenerated
    fp = full_precision_samples(den, cfg)
    r3 = measure_quantization(den, bank, cfg, fp_samples=fp)
    assert torch.equal(r3.samples_of("full-precision"), fp) and r3.settings[1].sample_mse.value == w4.sample_mse.value


def test_measure_restores_model_after_an_error_mid_run(den):
    bank = build_probe_bank(den, 4, seed=0, data=torch.rand(4, 1, 8, 8) * 2 - 1)
    saved = snapshot(den.net)
    types = [type(m) for m in den.net.modules()]

    def boom(stage, k, total):
        if stage in ("W4A4", "bnb-nf4"):
            raise KeyboardInterrupt  # as Ctrl-C would, in the middle of a quantized setting

    for bits, bnb in (("4", None), ("8", "nf4")):
        with pytest.raises(KeyboardInterrupt):
            measure_quantization(
                den, bank, tiny_config(settings=settings_from_options(bits, bnb=bnb), sensitivity_samples=0), boom
            )
        assert weights_equal(den.net, saved) and [type(m) for m in den.net.modules()] == types
        assert all(len(m._forward_pre_hooks) == 0 for m in den.net.modules())


# The 4-bit codes, as fractions of each 64-weight block's absmax: NF4 from the QLoRA paper (Dettmers
# et al. 2023, appendix E), FP4 as bitsandbytes defines it (+-{0, 1/16, 2, 3, 4, 6, 8, 12} / 12).
NF4 = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
]
FP4 = sorted({s * v / 12 for s in (-1, 1) for v in (0, 1 / 16, 2, 3, 4, 6, 8, 12)})


def _blocks(w: torch.Tensor, block: int = 64) -> torch.Tensor:
    flat = w.reshape(-1)
    return torch.cat([flat, flat.new_zeros((-len(flat)) % block)]).view(-1, block)


def _check_4bit(w: torch.Tensor, wq: torch.Tensor, code: list[float], label) -> torch.Tensor:
    """wq, the weights a 4-bit layer computes with, against its definition: in each 64-weight block,
    w / absmax rounded to the NEAREST point of `code`, times the block's stored scale. Returns the
    per-weight bound |wq - w| <= half the local code gap x absmax + |scale - absmax| (|code| <= 1).

    The code points and the rounding must be exact. The scale (read back from wq: the block's
    largest |wq|) may differ from the block's absmax: absmaxes are stored in 8 bits (double
    quantization), and bitsandbytes 0.50.2's CPU path on this AVX512 machine (weights repacked for
    its kernel) scaled blocks by up to 9% off their own absmax, with the indices still exact."""
    c = torch.tensor(code, dtype=torch.float32)
    b, bq = _blocks(w.float()), _blocks(wq.float())
    a = b.abs().amax(1, keepdim=True).clamp_min(1e-30)
    scale = bq.abs().amax(1, keepdim=True).clamp_min(1e-30)
    assert float((scale / a - 1).abs().max()) <= 0.1, (label, "block scale", float((scale / a - 1).abs().max()))
    used = (bq / scale).unsqueeze(-1).sub(c).abs()
    assert float(used.min(-1).values.max()) < 1e-3, (label, "a value off the code book")  # fp4 run as nf4 fails here
    u = (b / a).clamp(-1, 1)
    assert torch.equal(used.argmin(-1), u.unsqueeze(-1).sub(c).abs().argmin(-1)), (
        label,
        "not rounded to the nearest code point",
    )
    hi = torch.searchsorted(c, u.contiguous()).clamp(1, len(c) - 1)
    bound = (c[hi] - c[hi - 1]) / 2 * a + (scale - a).abs() + 1e-6 * a
    return bound.reshape(-1)[: w.numel()].view_as(w)


def test_bitsandbytes_runs_on_cpu_and_is_undone(den):
    net = den.net
    saved = snapshot(net)
    linear = [n for n, m in net.named_modules() if type(m) is torch.nn.Linear]
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        ref = den.model_output(x, 500)
    for kind in ("int8", "nf4", "fp4"):
        seen = {}
        with bnb_linear_swap(net, kind, linear) as swap:
            assert all(type(net.get_submodule(n)).__module__.startswith("bitsandbytes") for n in linear)
            hooks = [
                net.get_submodule(n).register_forward_hook(lambda m, a, y, n=n: seen.__setitem__(n, (a[0], y)))
                for n in linear
            ]
            with torch.no_grad():
                out = den.model_output(x, 500)
            for h in hooks:
                h.remove()
            if kind != "int8":
                from flatcheck.measures.quantize.bnb_backend import import_bitsandbytes

                F = import_bitsandbytes().functional
                code = NF4 if kind == "nf4" else FP4
                assert sorted(set(F.get_4bit_type(kind, device="cpu").tolist())) == pytest.approx(
                    code, abs=1e-6
                )  # +0 and -0 are one
                for n in linear:
                    m, w = net.get_submodule(n), saved[f"{n}.weight"]
                    # The weights the layer computes with, read from its output on the identity: its storage
                    # layout is the backend's (repacked for the CPU kernel on AVX512 machines).
                    with torch.no_grad():
                        eye = torch.eye(m.in_features)
                        wq = (m(eye) - (m(torch.zeros(1, m.in_features)))).T
                    bound = _check_4bit(w, wq, code, (kind, n))
                    ratio = (wq - w).abs() / bound
                    assert ratio.max() <= 1 and ratio.max() > 0.3, (
                        kind,
                        n,
                        float(ratio.max()),
                    )  # within a step, and it is the step
                    # The layer's output error, on the input it really saw: |x| |W_q - W|^T <= |x| bound^T.
                    xin, y = seen[n]
                    err = (y - (xin @ w.T + saved[f"{n}.bias"])).abs()
                    assert torch.all(err <= xin.abs() @ bound.T + 1e-5)
        assert swap.layers == linear
        assert swap.weight_share == pytest.approx(
            sum(net.get_submodule(n).weight.numel() for n in linear) / sum(p.numel() for p in net.parameters())
        )
        err = float((out - ref).abs().max())
        assert err > 0 and (kind != "int8" or err < 0.05 * float(ref.abs().max()))
        assert all(type(net.get_submodule(n)) is torch.nn.Linear for n in linear) and weights_equal(net, saved)
