"""flatcheck sharpness: closed forms on a quadratic model, determinism, restore on error/Ctrl-C, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from flatcheck.core.denoiser import Denoiser
from flatcheck.core.params import flat, measured_parameters
from flatcheck.core.perturb import snapshot, weights_equal
from flatcheck.core.probes import bank_losses, build_probe_bank
from flatcheck.errors import InputError
from flatcheck.measures.sharpness.blocks import bucket_edges, bucket_index, parameter_groups, spread_indices
from flatcheck.measures.sharpness.measure import SharpnessConfig, measure_sharpness
from flatcheck.results import to_jsonable

from .conftest import make_scheduler, make_unet
from .linear_denoiser import closed_form_hessian, linear_bank, linear_denoiser

SMALL = dict(
    radii=(0.01, 0.1),
    worst_radii=(0.01, 0.1),
    draws=2,
    ascent_steps=2,
    hessian_probes=6,
    top_k=2,
    lanczos_iters=4,
    hutchinson_draws=2,
    landscape_probes=4,
    landscape_points=3,
    landscape_grid=3,
    buckets=2,
)


@pytest.fixture(scope="module")
def unet_setup():
    den = Denoiser(make_unet(), make_scheduler())
    data = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return den, build_probe_bank(den, n=8, seed=0, data=data)


def _numbers(result):
    d = to_jsonable(result)
    d.pop("timings")
    return d


def test_blocks_cover_every_parameter_of_a_unet():
    net = make_unet()
    named = measured_parameters(net)
    groups = parameter_groups(named)
    assert [g.name for g in groups] == ["embed", "io", "down", "mid", "up"]
    assert sorted(i for g in groups for i in g.indices) == list(range(len(named)))
    assert sum(g.numel for g in groups) == sum(p.numel() for p in net.parameters())


def test_buckets_and_spread():
    edges = bucket_edges((0, 1000), 4)
    assert edges == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    t = torch.tensor([0, 249, 250, 999, 500])
    assert bucket_index(t, edges).tolist() == [0, 0, 1, 3, 2]
    assert bucket_edges((10, 12), 5) == [(10, 11), (11, 12)]
    assert spread_indices(8, 4).tolist() == [1, 3, 5, 7]


def test_average_case_matches_half_the_curvature_on_a_quadratic_loss():
    """Quadratic loss: an antithetic pair gives exactly delta^T H delta / 2, so
    E = r^2/2 sum_i s_i^2 H_ii for u uniform on the sphere of radius r sqrt(d)."""
    den = linear_denoiser()
    bank = linear_bank(den, n=24)
    H = closed_form_hessian(den, bank)
    theta = flat(p for _, p in measured_parameters(den.net))
    cfg = SharpnessConfig(measures=("avg",), radii=(0.05,), draws=400, buckets=2, seed=1)
    res = measure_sharpness(den, bank, cfg)
    d = theta.numel()
    scales = {"absolute": torch.full_like(theta, float(theta.norm()) / math.sqrt(d)), "adaptive": theta.abs() + cfg.eta}
    for av in res.average:
        expected = 0.5 * 0.05**2 * float((scales[av.norm] ** 2 * torch.diag(H)).sum())
        est = av.points[0].increase
        assert abs(est.value - expected) < 4 * est.stderr, (av.norm, est, expected)
        assert est.stderr < 0.2 * expected
        # Buckets recombine into the whole (weights = bucket sizes).
        sizes = torch.bincount(bucket_index(bank.t, res.buckets), minlength=2).double()
        recombined = sum(float(sizes[b]) * e.value for b, e in enumerate(av.points[0].by_bucket)) / len(bank)
        assert recombined == pytest.approx(est.value, rel=1e-9)


def test_one_step_worst_case_is_sams_closed_form():
    """m = 1, absolute: delta = R g/|g|, so the increase is R |g| + R^2 g^T H g / (2 |g|^2), exactly."""
    den = linear_denoiser()
    bank = linear_bank(den, n=24)
    H = closed_form_hessian(den, bank)
    params = [p for _, p in measured_parameters(den.net)]
    theta = flat(params)
    with torch.enable_grad():
        loss = den.loss(bank.x0.double(), bank.t, bank.noise.double())
        g = flat(torch.autograd.grad(loss, params))
    r = 0.02
    R = r * float(theta.norm())
    expected = R * float(g.norm()) + 0.5 * R**2 * float(g @ H @ g) / float(g @ g)
    cfg = SharpnessConfig(measures=("worst",), norms=("absolute",), worst_radii=(r,), ascent_steps=1)
    res = measure_sharpness(den, bank, cfg)
    p = res.worst[0].points[0]
    assert p.increase == pytest.approx(expected, rel=1e-9)
    assert p.delta_norm == pytest.approx(R, rel=1e-9)


def _gradient(den, bank, params):
    with torch.enable_grad():
        loss = den.loss(bank.x0.double(), bank.t, bank.noise.double())
        return flat(torch.autograd.grad(loss, params))


def _trust_region_max(g, H, R):
    """max g.x + x^T H x / 2 over |x| <= R (H PSD): x = (lam I - H)^-1 g with lam > lambda_max(H)
    chosen so that |x| = R (the secular equation, solved by bisection in the eigenbasis)."""
    h, V = torch.linalg.eigh(H)
    gt = V.T @ g
    lo, hi = float(h[-1]), float(h[-1]) + float(g.norm()) / R
    for _ in range(200):
        lam = (lo + hi) / 2
        if float((gt / (lam - h)).norm()) > R:
            lo = lam
        else:
            hi = lam
    x = V @ (gt / (hi - h))
    return float(g @ x + 0.5 * x @ H @ x)


def test_one_step_adaptive_worst_case_is_asams_closed_form_and_more_steps_climb_higher():
    """Adaptive (ASAM): delta = s * u, |u| <= r sqrt(d), s = |theta| + eta. One step: u along s * g on
    the boundary, so delta = r sqrt(d) s^2 g / |s g| and the (exactly quadratic) increase is
    g.delta + delta^T H delta / 2. More steps of projected ascent must climb at least as high and
    stay below the true maximum over the ellipsoid, a trust-region problem in u (same for SAM)."""
    den = linear_denoiser()
    bank = linear_bank(den, n=24)
    H = closed_form_hessian(den, bank)
    params = [p for _, p in measured_parameters(den.net)]
    theta = flat(params)
    g = _gradient(den, bank, params)
    d = theta.numel()
    r = 0.05
    cfg = SharpnessConfig(measures=("worst",), worst_radii=(r,), ascent_steps=1)
    s = {"adaptive": theta.abs() + cfg.eta, "absolute": torch.full_like(theta, float(theta.norm()) / math.sqrt(d))}
    R_u = r * math.sqrt(d)
    sg = s["adaptive"] * g
    delta = R_u * s["adaptive"] * sg / sg.norm()
    expected = float(g @ delta + 0.5 * delta @ H @ delta)
    one = {w.norm: w.points[0] for w in measure_sharpness(den, bank, cfg).worst}
    assert one["adaptive"].increase == pytest.approx(expected, rel=1e-9)
    assert one["adaptive"].delta_norm == pytest.approx(float(delta.norm()), rel=1e-9)
    many = {
        w.norm: w.points[0]
        for w in measure_sharpness(
            den, bank, SharpnessConfig(measures=("worst",), worst_radii=(r,), ascent_steps=6)
        ).worst
    }
    for norm in ("adaptive", "absolute"):
        S = s[norm]
        best = _trust_region_max(S * g, S[:, None] * H * S[None, :], R_u)  # in u: g_u = s g, H_u = S H S
        assert one[norm].increase < best and len(many[norm].ascent) == 6
        assert one[norm].increase <= many[norm].increase <= best * (1 + 1e-9), norm
        assert many[norm].increase > one[norm].increase + 0.5 * (best - one[norm].increase), norm  # real progress


def test_worst_case_exceeds_average_case_at_equal_radius(unet_setup):
    den, bank = unet_setup
    cfg = SharpnessConfig(
        measures=("avg", "worst"),
        radii=(0.001, 0.01, 0.1),
        worst_radii=(0.001, 0.01, 0.1),
        draws=2,
        ascent_steps=2,
        buckets=2,
    )
    res = measure_sharpness(den, bank, cfg)
    for av, wc in zip(res.average, res.worst):
        assert av.norm == wc.norm
        for a, w in zip(av.points, wc.points):
            assert w.increase >= a.increase.value + 2 * a.increase.stderr, (av.norm, a.radius)
            assert w.increase >= 0


def test_every_measure_is_deterministic_and_leaves_weights_untouched(unet_setup):
    den, bank = unet_setup
    saved = snapshot(den.net)
    flags = [p.requires_grad for p in den.net.parameters()]
    a = measure_sharpness(den, bank, SharpnessConfig(**SMALL))
    assert weights_equal(den.net, saved)
    assert [p.requires_grad for p in den.net.parameters()] == flags
    b = measure_sharpness(den, bank, SharpnessConfig(**SMALL))
    assert _numbers(a) == _numbers(b)
    c = measure_sharpness(den, bank, SharpnessConfig(**{**SMALL, "seed": 1}))
    assert _numbers(c) != _numbers(a)
    assert a.hessian is not None and a.landscape is not None and len(a.blocks) == 5
    assert a.blocks[2].hessian_trace is not None and set(a.blocks[0].average) == {"adaptive"}
    # L(theta) is the bank loss, and bucket losses recombine into it.
    assert a.loss.value == pytest.approx(float(bank_losses(den, bank).double().mean()), rel=1e-12)
    # Without the per-block average case (audit --quick): blocks keep their Hessian traces, every other
    # number is the same, and the bank is evaluated 2 x draws times fewer per block.
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        import flatcheck.measures.sharpness.measure as m

        mp.setattr(m, "bank_losses", lambda *args, **kw: calls.append(1) or bank_losses(*args, **kw))
        d = measure_sharpness(den, bank, SharpnessConfig(**SMALL, block_average=False))
        n_without = len(calls)
        measure_sharpness(den, bank, SharpnessConfig(**SMALL))
    assert (len(calls) - n_without) - n_without == 2 * SMALL["draws"] * len(a.blocks)
    assert d.block_radius is None and all(bl.average == {} for bl in d.blocks)
    assert [bl.hessian_trace for bl in d.blocks] == [bl.hessian_trace for bl in a.blocks]
    assert d.average == a.average and d.hessian == a.hessian


@pytest.mark.parametrize(
    "stage,exc",
    [
        ("average", KeyboardInterrupt),
        ("worst", KeyboardInterrupt),
        ("hessian", RuntimeError),
        ("hutchinson", KeyboardInterrupt),
        ("landscape", KeyboardInterrupt),
    ],
)
def test_weights_restored_when_interrupted_mid_measure(unet_setup, stage, exc):
    den, bank = unet_setup
    saved = snapshot(den.net)
    flags = [p.requires_grad for p in den.net.parameters()]
    seen = []

    def progress(s, done, total):
        seen.append(s)
        if s == stage and done == 2:
            raise exc("stop")

    with pytest.raises(exc):
        measure_sharpness(den, bank, SharpnessConfig(**SMALL), progress=progress)
    assert stage in seen
    assert weights_equal(den.net, saved)
    assert [p.requires_grad for p in den.net.parameters()] == flags


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"radii": (-0.1,)}, "--radii"),
        ({"worst_radii": (0.0,)}, "--worst-radii"),
        ({"measures": ("avg", "foo")}, "foo"),
        ({"norms": ("l1",)}, "l1"),
        ({"draws": 0}, "--draws"),
        ({"hutchinson_draws": 1}, "--hutchinson-draws"),
        ({"top_k": 5, "lanczos_iters": 3}, "--top-k"),
        ({"tol": 2.0}, "--tol"),
    ],
)
def test_bad_config_is_an_input_error(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        SharpnessConfig(**kwargs).validate()


# ------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--radii", "-0.1"], "--radii"),
        (["--radii", "abc"], "--radii"),
        (["--measures", "avg,sharp"], "sharp"),
        (["--probes", "0"], "--probes"),
        (["--timesteps", "5:2"], "--timesteps"),
        (["--norms", "l2"], "l2"),
    ],
)
def test_cli_bad_values_exit_2_with_one_line(cli, tiny_pipeline, args, fragment):
    code, out, err = cli("sharpness", tiny_pipeline, "--data", "digits", *args)
    assert code == 2
    assert err.startswith("flatcheck: error:") and fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_json_plots_and_arrays(cli, tiny_pipeline, tmp_path):
    from PIL import Image

    out = tmp_path / "out"
    code, stdout, err = cli(
        "sharpness",
        tiny_pipeline,
        "--data",
        "digits",
        "--probes",
        "8",
        "--draws",
        "1",
        "--radii",
        "0.01,0.1",
        "--ascent-steps",
        "1",
        "--hessian-probes",
        "4",
        "--top-k",
        "1",
        "--lanczos-iters",
        "40",
        "--hutchinson-draws",
        "2",
        "--landscape-probes",
        "4",
        "--landscape-points",
        "3",
        "--landscape-grid",
        "3",
        "--buckets",
        "2",
        "--json",
        "-",
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert code == 0, err
    payload = json.loads(stdout)["sharpness"]  # stdout is only JSON (the report document); tables went to stderr
    assert payload["probes"] == 8 and payload["config"]["radii"] == [0.01, 0.1]
    assert len(payload["average"]) == 2 and len(payload["worst"][0]["points"]) == 2
    assert "Loss increase" in err and "sharpness.npz" in err
    for name in ("sharpness_radius.png", "sharpness_breakdown.png", "landscape_1d.png", "landscape_2d.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 100
    arrays = np.load(out / "sharpness.npz")
    assert arrays["landscape_surface"].shape == (3, 3)
    assert arrays["average_adaptive"].shape == (2,)
    eig = payload["hessian"]["eigen"]
    assert (
        arrays["hessian_eigenvalues"].tolist() == eig["eigenvalues"]
        and arrays["hessian_residuals"].tolist() == eig["residuals"]
    )
    # The top eigenvalue itself, against a tightly converged float64 run on the same 4-probe sub-bank.
    from flatcheck.core.checkpoint import load
    from flatcheck.measures.sharpness.hessian import BankLoss, block_lanczos

    den = Denoiser.from_checkpoint(load(str(tiny_pipeline)))
    den.net.double()
    sub = build_probe_bank(den, n=8, seed=0, data="digits").subset(spread_indices(8, 4))
    op = BankLoss(den, sub, [p for _, p in measured_parameters(den.net)], batch_size=64)
    ref = block_lanczos(
        op.hvp, op.dim, k=1, max_iter=40, tol=1e-9, gen=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    assert eig["converged"] and ref.converged and eig["hvps"] < 40
    assert abs(eig["eigenvalues"][0] - ref.eigenvalues[0]) <= eig["residuals"][0] + 1e-5 * ref.eigenvalues[0]
    assert abs(eig["eigenvalues"][0] - ref.eigenvalues[0]) < 1e-3 * ref.eigenvalues[0]
