"""Filter-normalised landscapes (Li et al. 2018): the directions, and the curve on a quadratic loss."""

from __future__ import annotations

import pytest
import torch

from flatcheck.core.params import flat, measured_parameters
from flatcheck.core.perturb import snapshot, weights_equal
from flatcheck.core.probes import bank_losses
from flatcheck.measures.sharpness.landscape import filter_normalized_direction, loss_landscape

from .conftest import make_unet
from .linear_denoiser import closed_form_hessian, linear_bank, linear_denoiser


def test_direction_is_filter_normalised_and_zero_on_biases_and_norms():
    net = make_unet()
    params = [p for _, p in measured_parameters(net)]
    d = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    s = 0
    for p in params:
        part = d[s : s + p.numel()].view_as(p)
        s += p.numel()
        if p.ndim <= 1:
            assert torch.count_nonzero(part) == 0
        else:
            torch.testing.assert_close(
                part.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-5, atol=1e-7
            )
    again = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    assert torch.equal(d, again)


def test_curve_is_the_exact_parabola_of_a_quadratic_loss():
    """L(theta + a d) = L + a g.d + a^2/2 d^T H d exactly: compare every point and the curvature."""
    den = linear_denoiser()
    bank = linear_bank(den, n=16)
    params = [p for _, p in measured_parameters(den.net)]
    H = closed_form_hessian(den, bank)
    with torch.enable_grad():
        loss = den.loss(bank.x0.double(), bank.t, bank.noise.double())
        g = flat(torch.autograd.grad(loss, params))
    d1 = filter_normalized_direction(params, torch.Generator().manual_seed(5))
    saved = snapshot(den.net)
    ls = loss_landscape(den, bank, params, torch.Generator().manual_seed(5), span=0.5, points_1d=5, points_2d=3)
    assert weights_equal(den.net, saved)
    assert ls.alphas == [-0.5, -0.25, 0.0, 0.25, 0.5]
    L0 = float(loss.detach())
    for a, value in zip(ls.alphas, ls.curve):
        assert value == pytest.approx(L0 + a * float(g @ d1) + 0.5 * a * a * float(d1 @ H @ d1), rel=1e-10)
    assert ls.curvature == pytest.approx(float(d1 @ H @ d1), rel=1e-8)
    assert ls.base_loss == pytest.approx(L0, rel=1e-12)
    assert ls.surface[1][1] == ls.base_loss and len(ls.surface) == 3 and len(ls.surface[0]) == 3


def test_landscape_restores_weights_when_interrupted():
    den = linear_denoiser()
    bank = linear_bank(den, n=8)
    params = [p for _, p in measured_parameters(den.net)]
    saved = snapshot(den.net)

    def stop(stage, done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loss_landscape(den, bank, params, torch.Generator().manual_seed(0), points_1d=5, points_2d=3, progress=stop)
    assert weights_equal(den.net, saved)
    assert float(bank_losses(den, bank).double().mean()) == pytest.approx(
        float(den.loss(bank.x0.double(), bank.t, bank.noise.double()).detach()), rel=1e-12
    )
