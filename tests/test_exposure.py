"""Exposure-bias measures against closed forms (Gaussian data, exact denoiser), and the CLI."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from flatcheck.core.denoiser import Denoiser, NetCall
from flatcheck.core.sampling import StepRecord, make_sampler, sample, timesteps_for
from flatcheck.measures.exposure.measure import (
    ExposureConfig,
    _output_with_eps,
    fit_epsilon_scaling,
    measure_exposure,
    ratio_estimate,
    work_units,
)

MU, S, SHAPE = 0.3, 0.5, (1, 4, 4)  # x0 ~ N(MU, S^2 I), d = 16


class GaussianEps(torch.nn.Module):
    """The exact eps predictor for x0 ~ N(mu, s^2 I), times `scale` (a planted error when != 1).

    x_t = a x0 + sigma eps  =>  E[eps | x_t] = sigma (x_t - a mu) / (a^2 s^2 + sigma^2).
    """

    def __init__(self, abar: torch.Tensor, scale: float = 1.0):
        super().__init__()
        self.register_buffer("abar", abar.float())
        self.scale = scale
        self.w = torch.nn.Parameter(torch.zeros(()))  # gives the adapter a device and dtype
        self.config = {"sample_size": SHAPE[1], "in_channels": SHAPE[0]}

    flatcheck_call = NetCall("sample", "none")

    def forward(self, sample, timestep, return_dict=True):
        ab = self.abar[timestep.long()].view(-1, 1, 1, 1)
        a, sig = ab.sqrt(), (1 - ab).sqrt()
        out = self.scale * sig * (sample - a * MU) / (ab * S**2 + sig**2)
        return SimpleNamespace(sample=out) if return_dict else (out,)


def gaussian_denoiser(scale: float = 1.0) -> Denoiser:
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    return Denoiser(GaussianEps(sched.alphas_cumprod, scale), sched)


def gaussian_data(n: int, seed: int = 1) -> torch.Tensor:
    return MU + S * torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def measure(scale=1.0, steps=100, sampler="ddpm", n=256, **kw):
    cfg = ExposureConfig(steps=(steps,), sampler=sampler, samples=n, batch_size=n, seed=0, **kw)
    return measure_exposure(gaussian_denoiser(scale), gaussian_data(n), cfg).runs[0]


@pytest.fixture(scope="module")
def exact():
    return measure(1.0)


@pytest.fixture(scope="module")
def under():  # eps 10% too small: the sampler removes too little noise
    return measure(0.9)


def test_exact_denoiser_has_no_gap(exact):
    assert abs(exact.gap_relative) < 0.02
    assert abs(exact.gap_total.value) < 3 * exact.gap_total.stderr
    assert exact.eps_norm_forward.mean[0] == pytest.approx(math.sqrt(16), rel=0.1)  # near t=T the norm is ~sqrt(d)


def test_planted_error_shows_a_gap_of_the_expected_sign(under):
    # eps x 0.9: x_hat_t keeps extra noise, so the network sees larger inputs: a positive gap (the paper's sign).
    assert under.gap_relative > 0.05
    assert under.gap_total.value > 5 * under.gap_total.stderr
    assert under.variance_error_mean.value > 5 * under.variance_error_mean.stderr
    over = measure(1.1)  # eps x 1.1 removes too much noise: the sampler's inputs shrink, the gap is negative
    assert over.gap_relative < -0.05
    assert over.variance_error_mean.value < -5 * over.variance_error_mean.stderr


@pytest.mark.parametrize("scale", [1.0, 0.9, 1.1])
def test_forward_scale_recovers_the_planted_scale(scale, exact, under):
    run = {1.0: exact, 0.9: under}.get(scale) or measure(scale, steps=20)
    est = run.eps_scale_forward
    assert abs(est.value - scale) < 4 * est.stderr + 1e-3


def test_scaling_fit_recovers_planted_factors():
    t = np.arange(999, -1, -50, dtype=float)
    fwd = 4 - 0.001 * t  # any positive curve
    assert fit_epsilon_scaling(1.013 * fwd, fwd, t, linear=False) == pytest.approx((1.013, 0.0))
    b, k = fit_epsilon_scaling((1.004 + 2e-5 * t) * fwd, fwd, t, linear=True)
    assert b == pytest.approx(1.004, abs=1e-9) and k == pytest.approx(2e-5, abs=1e-12)


def test_scaling_is_checked_by_a_rerun(under, exact):
    for run in (under, exact):
        assert [s.form for s in run.scaling] == ["constant"]
        sc = run.scaling[0]
        # The sampler stepped with eps / lambda: the applied norms are the raw ones over lambda.
        assert np.allclose(sc.eps_norm_applied.mean, np.array(sc.eps_norm_raw.mean) / sc.b, rtol=1e-6)
        assert sc.helps == (sc.gap_abs_total < run.gap_abs_total)
    # With eps too small the norm-matching lambda is > 1 and shrinks eps further: the rerun shows it does not help.
    assert under.scaling[0].b > 1.03 and not under.scaling[0].helps
    assert under.scaling[0].gap_change.value > 0


def _closed_form_variance_error(ts, abar, scale, ddim):
    """delta_t for the linear Gaussian denoiser, by hand: x_hat stays Gaussian, track its mean and variance."""
    a0 = math.sqrt(abar[ts[0]])
    m, v = a0 * MU, a0**2 * S**2 + 1 - abar[ts[0]]  # x_hat_{t_0} = forward-noised data
    out = []
    for i, t in enumerate(ts):
        ab = abar[t]
        out.append(v + (m - math.sqrt(ab) * MU) ** 2 - (ab * S**2 + 1 - ab))
        ab_prev = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
        a, sig = math.sqrt(ab), math.sqrt(1 - ab)
        g = scale * sig / (ab * S**2 + sig**2)  # eps_hat = g (x - a mu)
        # x0_hat = (x - sig eps_hat) / a = p x + q
        p, q = (1 - sig * g) / a, sig * g * a * MU / a
        if ddim:  # x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev) eps_hat
            A = math.sqrt(ab_prev) * p + math.sqrt(1 - ab_prev) * g
            B = math.sqrt(ab_prev) * q - math.sqrt(1 - ab_prev) * g * a * MU
            noise_var = 0.0
        else:  # DDPM posterior mean with x0_hat, fixed_small variance
            alpha = ab / ab_prev
            beta = 1 - alpha
            c0, cx = math.sqrt(ab_prev) * beta / (1 - ab), math.sqrt(alpha) * (1 - ab_prev) / (1 - ab)
            A, B = c0 * p + cx, c0 * q
            noise_var = (1 - ab_prev) / (1 - ab) * beta if i + 1 < len(ts) else 0.0
        m, v = A * m + B, A * A * v + noise_var
    return np.array(out)


@pytest.mark.parametrize("sampler, scale", [("ddpm", 1.0), ("ddim", 1.0), ("ddim", 0.9)])
def test_variance_error_matches_closed_form(sampler, scale):
    steps = 10
    run = measure(scale, steps=steps, sampler=sampler, n=384)
    den = gaussian_denoiser(scale)
    ts = timesteps_for(make_sampler(den.scheduler, sampler), steps)
    want = _closed_form_variance_error(ts, den.alphas_cumprod.numpy(), scale, ddim=sampler == "ddim")
    got, se = np.array(run.variance_error.mean), np.array(run.variance_error.stderr)
    assert got[0] == pytest.approx(0.0, abs=1e-6)  # starts exactly on the forward process
    # Monte Carlo against the exact value; the data's own sample mean and variance add O(1/n).
    assert np.all(np.abs(got - want) < 4 * se + 0.01), (got, want)
    assert np.abs(want).max() > 0.02  # the check has something to see


def test_output_with_eps_inverts_each_parametrisation():
    from .conftest import make_scheduler, make_unet

    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for pt in ("epsilon", "v_prediction", "sample"):
        d = Denoiser(make_unet(), make_scheduler(pt))
        out = d.model_output(x, 400)
        rec = StepRecord(0, 400, torch.arange(3), x, out, d)
        eps = rec.eps * 0.8
        assert torch.allclose(d.eps_from_output(_output_with_eps(rec, eps), x, 400), eps, atol=1e-5)


def test_ratio_estimate_against_direct_formula():
    g = torch.Generator().manual_seed(0)
    den = 1 + torch.rand(400, generator=g, dtype=torch.float64)
    num = 1.3 * den + 0.05 * torch.randn(400, generator=g, dtype=torch.float64)
    est = ratio_estimate(num, den)
    assert est.value == pytest.approx(float(num.sum() / den.sum()))
    assert est.stderr == pytest.approx(float((num - est.value * den).std() / den.mean() / 20), rel=1e-9)


def test_deterministic_and_drift_ends_at_zero():
    a = measure(1.0, steps=8, n=32, linear_scale=True)
    b = measure(1.0, steps=8, n=32, linear_scale=True)
    assert a.gap.mean == b.gap.mean and a.variance_error.mean == b.variance_error.mean
    assert [s.form for s in a.scaling] == ["constant", "linear"]
    assert a.x0_drift.mean[-1] < 1e-6 < a.x0_drift.mean[0]  # at t=0 DDPM returns the x0 prediction (no clipping here)


@pytest.mark.parametrize("check", [True, False])
def test_work_units_match_progress(check):
    den = gaussian_denoiser()
    cfg = ExposureConfig(steps=(4, 8), sampler="ddim", samples=6, batch_size=4, check_scaling=check)
    ticks = []
    measure_exposure(den, gaussian_data(5), cfg, progress=ticks.append)
    assert sum(ticks) == work_units(den, cfg, 5)


def test_unchecked_scaling_is_the_same_fit_without_the_rerun(under):
    """check_scaling=False (audit --quick): lambda is fitted as before, every other number is unchanged,
    and the sampler does not run a third time."""
    import flatcheck.measures.exposure.measure as m

    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(m, "sample", lambda *a, **k: calls.append(1) or sample(*a, **k))
        run = measure(0.9, check_scaling=False)
    assert len(calls) == 2  # run (a) and the variance run
    sc = run.scaling[0]
    assert not sc.checked and sc.gap_total is None and sc.helps is None
    assert (sc.b, sc.k, sc.lambdas) == (under.scaling[0].b, under.scaling[0].k, under.scaling[0].lambdas)
    assert run.gap_total == under.gap_total and run.variance_error_mean == under.variance_error_mean


# ------------------------------------------------------------------------------------ CLI
@pytest.fixture
def data_npy(tmp_path):
    p = tmp_path / "ref.npy"
    np.save(p, np.random.default_rng(0).uniform(-1, 1, (12, 8, 8, 1)).astype(np.float32))
    return p


def test_cli_json_table_plot_and_samples(cli, tiny_pipeline, data_npy, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = cli(
        "exposure",
        tiny_pipeline,
        "--steps",
        "3,5",
        "--sampler",
        "ddim",
        "--data",
        data_npy,
        "--probes",
        "6",
        "--samples",
        "5",
        "--batch-size",
        "4",
        "--save-samples",
        "--out",
        out,
        "--json",
        out / "e.json",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert "DDIM 5 steps" in stdout and "reference: data:" in stdout  # the table
    doc = json.loads((out / "e.json").read_text())
    runs = doc["exposure"]["runs"]
    assert [r["steps"] for r in runs] == [3, 5] and len(runs[1]["gap"]["mean"]) == 5
    assert doc["exposure"]["reference"].startswith("data:")
    assert (out / "exposure.png").stat().st_size > 10_000
    assert "_samples" not in runs[0]
    from flatcheck.core.sample_store import SampleStore

    # The stored samples are run (a)'s: equal to what the engine makes for the same seeds.
    stored = SampleStore.read(runs[0]["samples_dir"]).load()
    assert stored.shape == (5, 1, 8, 8)
    from flatcheck.core.checkpoint import load
    from flatcheck.core.sampling import sample

    den = Denoiser.from_checkpoint(load(str(tiny_pipeline)))
    assert torch.allclose(
        stored, sample(den, make_sampler(den.scheduler, "ddim"), 3, 5, seed=0, batch_size=4), atol=1e-6
    )


def test_cli_json_to_stdout_is_only_json(cli, tiny_pipeline, data_npy):
    code, stdout, err = cli(
        "exposure", tiny_pipeline, "--steps", "2", "--data", data_npy, "--probes", "4", "--samples", "3", "--json", "-"
    )
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["exposure"]["runs"][0]["sampler"] == "DDPMScheduler"  # the checkpoint's own by default


@pytest.mark.parametrize(
    "bad, msg",
    [
        (("--steps", "0"), "--steps must be >= 1"),
        (("--steps", "20,abc"), "comma-separated"),
        (("--sampler", "nope"), "unknown sampler 'nope'"),
        (("--probes", "1"), "--probes must be >= 2"),
        (("--batch-size", "0"), "--batch-size must be >= 1"),
        (("--save-samples",), "--save-samples needs --out"),
    ],
)
def test_cli_bad_values_exit_2(cli, tiny_pipeline, bad, msg):
    code, out, err = cli("exposure", tiny_pipeline, *bad)
    assert code == 2
    assert msg in err and "Traceback" not in err
    assert err.count("\n") == 1
