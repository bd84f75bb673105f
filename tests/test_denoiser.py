"""The adapter's conversions against diffusers' own scheduler formulas."""

from __future__ import annotations

import pytest
import torch

from flatcheck.core.denoiser import Denoiser, NetCall

from .conftest import make_scheduler, make_unet


class Constant(torch.nn.Module):
    """Stands in for a network: returns a fixed tensor, whatever it is asked."""

    def __init__(self, out):
        super().__init__()
        self.out = out
        self.w = torch.nn.Parameter(torch.zeros(()))

    flatcheck_call = NetCall("sample", "none")

    def forward(self, sample, timestep, return_dict=True):
        return (self.out,)


def wrap(out, prediction_type):
    d = Denoiser(make_unet(), make_scheduler(prediction_type))
    d.net = Constant(out)
    return d


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_x0_and_eps_match_scheduler_formulas(prediction_type):
    g = torch.Generator().manual_seed(0)
    x_t, out = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    sched = make_scheduler(prediction_type)
    sched.config.clip_sample = False
    d = wrap(out, prediction_type)
    for t in (0, 17, 500, 999):
        sched.set_timesteps(1000)
        ref_x0 = sched.step(out, t, x_t).pred_original_sample  # diffusers' own conversion
        x0 = d.x0(x_t, t)
        eps = d.eps(x_t, t)
        torch.testing.assert_close(x0, ref_x0, rtol=1e-4, atol=1e-4)
        a = sched.alphas_cumprod[t]
        # eps must be consistent with the forward process and diffusers' velocity
        torch.testing.assert_close(a.sqrt() * x0 + (1 - a).sqrt() * eps, x_t, rtol=1e-4, atol=1e-4)
        if prediction_type == "v_prediction":
            tt = torch.full((4,), t)
            torch.testing.assert_close(sched.get_velocity(x0, eps, tt), out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_loss_target_matches_training_convention(prediction_type):
    sched = make_scheduler(prediction_type)
    d = Denoiser(make_unet(), sched)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    t = torch.tensor([5, 400, 900])
    x_t = sched.add_noise(x0, noise, t)
    torch.testing.assert_close(d.add_noise(x0, t, noise), x_t)
    target = {"epsilon": noise, "v_prediction": sched.get_velocity(x0, noise, t), "sample": x0}[prediction_type]
    with torch.no_grad():
        ref = ((d.net(x_t, t).sample - target) ** 2).flatten(1).mean(1)
        torch.testing.assert_close(d.loss(x0, t, noise, reduction="none"), ref)


def test_perfect_eps_model_recovers_x0():
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    d = wrap(noise, "epsilon")
    x_t = d.add_noise(x0, 300, noise)
    torch.testing.assert_close(d.x0(x_t, 300), x0, rtol=1e-4, atol=1e-4)


def test_fractional_timesteps_interpolate_and_reach_the_network_unrounded():
    d = Denoiser(make_unet(), make_scheduler())
    x = torch.zeros(2, 1, 8, 8)
    a, _ = d.alpha_sigma(torch.tensor([10.0, 10.25]), x)
    ac = d.alphas_cumprod
    torch.testing.assert_close(
        a.flatten().double() ** 2, torch.stack([ac[10], 0.75 * ac[10] + 0.25 * ac[11]]), rtol=1e-6, atol=0
    )
    seen = []
    d.net.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["timestep"].clone()), with_kwargs=True)
    with torch.no_grad():
        d.model_output(x, torch.tensor(10.25))
    assert seen[0].is_floating_point() and float(seen[0][0]) == 10.25
