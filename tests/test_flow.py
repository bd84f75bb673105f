"""Flow matching against closed forms: Gaussian data, whose optimal velocity is known exactly.

x0 ~ N(mu, s^2 I), eps ~ N(0, I), x_t = (1 - sigma) x0 + sigma eps, target v = eps - x0. With
V = (1 - sigma)^2 s^2 + sigma^2 and c = sigma - (1 - sigma) s^2 = Cov(v, x_t):
    v*(x_t)  = E[v | x_t] = c / V (x_t - (1 - sigma) mu) - mu
    L*(t)    = E||v* - v||^2 / d = 1 + s^2 - c^2 / V          (the loss floor at t)
    x0 from v*: E[x0 | x_t] = mu + (1 - sigma) s^2 / V (x_t - (1 - sigma) mu)
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from flatcheck.core.denoiser import Denoiser, NetCall
from flatcheck.core.probes import flow_timesteps
from flatcheck.core.sampling import make_sampler, timesteps_for

MU, S, SHAPE = 0.5, 0.7, (2, 4, 4)


class OptimalVelocity(torch.nn.Module):
    flatcheck_call = NetCall("sample", "none")

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.config = {"sample_size": SHAPE[1], "in_channels": SHAPE[0]}

    def forward(self, sample, timestep, return_dict=True):
        sig = (timestep.double() / 1000).view(-1, 1, 1, 1)
        v_ = (1 - sig) ** 2 * S**2 + sig**2
        c = sig - (1 - sig) * S**2
        out = (self.scale * (c / v_ * (sample.double() - (1 - sig) * MU) - MU)).to(sample.dtype)
        return SimpleNamespace(sample=out) if return_dict else (out,)


def flow_denoiser(scale=1.0, shift=3.0) -> Denoiser:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return Denoiser(OptimalVelocity(scale), FlowMatchEulerDiscreteScheduler(shift=shift))


def floor(sig):
    v_ = (1 - sig) ** 2 * S**2 + sig**2
    return 1 + S**2 - (sig - (1 - sig) * S**2) ** 2 / v_


@pytest.mark.parametrize("t", [50.0, 333.3, 700.0, 990.0])
def test_loss_at_the_optimum_is_the_closed_form_floor(t):
    d = flow_denoiser()
    g = torch.Generator().manual_seed(0)
    n = 20000
    x0 = MU + S * torch.randn(n, *SHAPE, generator=g, dtype=torch.float64)
    noise = torch.randn(n, *SHAPE, generator=g, dtype=torch.float64)
    tt = torch.full((n,), t, dtype=torch.float64)
    per = d.loss(x0, tt, noise, reduction="none")
    sig = t / 1000
    se = float(per.std() / math.sqrt(n))
    assert abs(float(per.mean()) - floor(sig)) < 4 * se
    # A scaled (wrong) velocity is worse by exactly E||0.2 v*||^2 / d (paired: same draws)
    worse = flow_denoiser(1.2).loss(x0, tt, noise, reduction="none")
    with torch.no_grad():
        v_star = d.model_output(d.add_noise(x0, tt, noise), tt)
    excess = 0.04 * v_star.pow(2).flatten(1).mean(1)
    torch.testing.assert_close(float((worse - per).mean()), float(excess.mean()), rtol=0.05, atol=0)
    assert float((worse - per).mean()) > 0


def test_conversions_are_the_posterior_means():
    d = flow_denoiser()
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(3, *SHAPE, generator=g, dtype=torch.float64)
    t = torch.tensor([100.0, 500.0, 900.0], dtype=torch.float64)
    v = d.model_output(x_t, t)
    sig = (t / 1000).view(-1, 1, 1, 1)
    v_ = (1 - sig) ** 2 * S**2 + sig**2
    x0_post = MU + (1 - sig) * S**2 / v_ * (x_t - (1 - sig) * MU)
    eps_post = sig / v_ * (x_t - (1 - sig) * MU)
    torch.testing.assert_close(d.x0_from_output(v, x_t, t), x0_post)
    torch.testing.assert_close(d.eps_from_output(v, x_t, t), eps_post)
    torch.testing.assert_close(d.add_noise(x0_post, t, eps_post), x_t)  # x_t = (1 - sigma) x0 + sigma eps


def test_probe_timesteps_follow_the_shifted_logit_normal():
    """Stratified draws: their empirical CDF matches the density's, at every shift."""
    for shift in (1.0, 3.0):
        t = flow_timesteps(4000, 0, 1000, torch.Generator().manual_seed(0), shift, 1000)
        assert t.dtype == torch.float64 and bool((t[1:] >= t[:-1]).all())  # stratified: increasing
        for sig in (0.1, 0.3, 0.5, 0.8, 0.95):
            u = sig / (shift - (shift - 1) * sig)
            want = float(torch.special.ndtr(torch.logit(torch.tensor(u, dtype=torch.float64))))
            assert abs(float((t < 1000 * sig).double().mean()) - want) < 1.5 / 4000 + 1e-9
    # a LO:HI range keeps every draw inside it
    t = flow_timesteps(64, 200, 400, torch.Generator().manual_seed(0), 3.0, 1000)
    assert float(t.min()) >= 200 and float(t.max()) <= 400


def test_flow_sampler_reaches_the_data_distribution():
    """The exact velocity, integrated by flatcheck's flow sampler, gives samples of N(mu, s^2)."""
    from flatcheck.core.sampling import sample

    d = flow_denoiser()
    errors = []
    for steps in (10, 40, 160):  # Euler: first order in the step size
        x = sample(d, make_sampler(d.scheduler, None), steps, 512, seed=0, batch_size=512).double()
        assert abs(float(x.mean()) - MU) < 0.01
        errors.append(abs(float(x.std()) - S))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02, errors
    # ddim, the default name, means the checkpoint's own flow sampler; DDPM-family names are refused
    assert type(make_sampler(d.scheduler, "ddim")).__name__ == "FlowMatchEulerDiscreteScheduler"
    from flatcheck.errors import InputError

    with pytest.raises(InputError, match="DDPM-family sampler"):
        make_sampler(d.scheduler, "dpm-solver++")
    ts = timesteps_for(make_sampler(d.scheduler, None), 4, d)
    assert ts[0] == 1000 and all(isinstance(v, (int, float)) for v in ts)


@pytest.mark.parametrize("scale", [1.0, 1.2])
def test_exposure_measures_the_velocity(scale):
    """Exposure on a flow model compares ||v||; the forward scale E||v_theta||^2 / E<v_theta, v> recovers a planted
    c."""
    from flatcheck.measures.exposure.config import ExposureConfig
    from flatcheck.measures.exposure.measure import measure_exposure

    d = flow_denoiser(scale)
    x0 = MU + S * torch.randn(256, *SHAPE, generator=torch.Generator().manual_seed(3))
    res = measure_exposure(d, x0, ExposureConfig(steps=(10,), sampler="checkpoint", samples=256, batch_size=256))
    run = res.runs[0]
    assert res.quantity == "v"
    assert run.eps_scale_forward.value == pytest.approx(scale, abs=3 * run.eps_scale_forward.stderr + 1e-3)
    if scale == 1.0:  # the exact velocity: its own inputs look like the forward process's (up to Euler error)
        assert abs(run.gap_relative) < 0.05


def test_params_and_gradient_checkpointing(tmp_path):
    """--params measures only the matched parameters; gradient checkpointing leaves every number unchanged."""
    from flatcheck.core.probes import probe_bank
    from flatcheck.errors import OptionError
    from flatcheck.measures.sharpness.config import SharpnessConfig
    from flatcheck.measures.sharpness.measure import measure_sharpness

    from .conftest import make_scheduler, make_unet

    den = Denoiser(make_unet(), make_scheduler())
    bank = probe_bank(torch.rand(8, 1, 8, 8) * 2 - 1, 8, 0, (0, 1000), "test")
    kw = dict(
        measures=("avg", "hessian"),
        norms=("adaptive",),
        radii=(0.01,),
        draws=1,
        hessian_probes=4,
        top_k=1,
        lanczos_iters=4,
        hutchinson_draws=2,
        batch_size=8,
    )
    full = measure_sharpness(den, bank, SharpnessConfig(**kw))
    some = measure_sharpness(den, bank, SharpnessConfig(**kw, params="mid_block.*"))
    n_mid = sum(p.numel() for n, p in den.net.named_parameters() if n.startswith("mid_block."))
    assert some.parameters == n_mid < full.parameters and some.parameter_selection == "mid_block.*"
    ckpt = measure_sharpness(den, bank, SharpnessConfig(**kw, gradient_checkpointing=True))
    assert ckpt.hessian.eigen.eigenvalues == pytest.approx(full.hessian.eigen.eigenvalues, rel=1e-5)
    assert not den.net.is_gradient_checkpointing
    with pytest.raises(OptionError, match="matches no parameter"):
        measure_sharpness(den, bank, SharpnessConfig(**kw, params="nothing.*"))
