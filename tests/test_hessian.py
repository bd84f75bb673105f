"""Hessian-vector products, Lanczos, power iteration and Hutchinson against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from flatcheck.measures.sharpness.blocks import bucket_edges, bucket_index, parameter_groups
from flatcheck.core.denoiser import Denoiser
from flatcheck.measures.sharpness.hessian import BankLoss, hutchinson, lanczos, power_iteration
from flatcheck.measures.sharpness.paramvec import assign, block_masks, flat, measured_parameters
from flatcheck.core.probes import build_probe_bank

from .conftest import make_scheduler, make_unet
from .linear_denoiser import closed_form_hessian, linear_bank, linear_denoiser


def linear_op(n=24, groups=None):
    den = linear_denoiser()
    bank = linear_bank(den, n=n)
    params = [p for _, p in measured_parameters(den.net)]
    return den, bank, params, BankLoss(den, bank, params, batch_size=10, groups=groups)


def test_closed_form_hessian_matches_autograd():
    """The closed form used below is itself right: compare with torch's dense Hessian."""
    den, bank, params, op = linear_op()
    H = closed_form_hessian(den, bank)
    theta = flat(params)

    def loss(vec):
        w, b = vec[: params[0].numel()].view_as(params[0]), vec[params[0].numel():]
        x_t = den.add_noise(bank.x0.double(), bank.t, bank.noise.double()).flatten(1)
        return ((x_t @ w.T + b - bank.noise.double().flatten(1)) ** 2).mean()

    dense = torch.autograd.functional.hessian(loss, theta)
    torch.testing.assert_close(dense, H, rtol=1e-10, atol=1e-12)


def test_hvp_matches_closed_form_hessian():
    den, bank, params, op = linear_op()
    H = closed_form_hessian(den, bank)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(op.hvp(v), H @ v, rtol=1e-10, atol=1e-12)


def test_hvp_matches_central_differences_through_attention_float64():
    """Tiny UNet with attention blocks, float64: H v against (g(theta + h v) - g(theta - h v)) / 2h."""
    den = Denoiser(make_unet().double(), make_scheduler())
    data = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bank = build_probe_bank(den, n=6, seed=0, data=data)
    params = [p for _, p in measured_parameters(den.net)]
    op = BankLoss(den, bank, params, batch_size=6)
    theta = flat(params)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v /= v.norm()
    hv = op.hvp(v)
    h = 1e-4
    assign(params, theta + h * v)
    _, g_plus = op.value_and_grad()
    assign(params, theta - h * v)
    _, g_minus = op.value_and_grad()
    assign(params, theta)
    fd = (g_plus - g_minus) / (2 * h)
    rel = float((hv - fd).norm() / fd.norm())
    assert rel < 1e-6, rel
    assert all(not p.requires_grad for p in params) or all(p.requires_grad for p in params)


def test_lanczos_on_a_known_matrix_respects_its_error_bounds():
    g = torch.Generator().manual_seed(0)
    n = 60
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.cat([torch.tensor([40.0, 25.0, 10.0]), torch.linspace(-2, 3, n - 3)]).double()
    M = q @ torch.diag(eig) @ q.T
    res = lanczos(lambda v: M @ v, n, k=3, max_iter=40, tol=1e-8, gen=g, dtype=torch.float64)
    assert res.converged
    for est, bound, true in zip(res.eigenvalues, res.residuals, [40.0, 25.0, 10.0]):
        assert abs(est - true) <= max(bound, 1e-9)
        assert abs(est - true) < 1e-6
    assert -2.0 - 1e-9 <= res.min_eigenvalue < -1.5  # Ritz values lie inside the spectrum
    assert res.hvps < 40
    pw = power_iteration(lambda v: M @ v, n, k=3, max_iter=300, tol=1e-10, gen=g, dtype=torch.float64)
    assert pw.eigenvalues == pytest.approx([40.0, 25.0, 10.0], rel=1e-4)  # deflation finds each in turn
    assert pw.hvps > res.hvps


def test_lanczos_and_power_iteration_find_the_closed_form_top_eigenvalues():
    """H = I_D kron A: Lanczos from one start vector sees each distinct eigenvalue of A once."""
    den, bank, params, op = linear_op()
    H = closed_form_hessian(den, bank)
    true = torch.linalg.eigvalsh(H).flip(0)
    distinct = torch.unique_consecutive(true.round(decimals=8))
    res = lanczos(op.hvp, op.dim, k=3, max_iter=20, tol=1e-6, gen=torch.Generator().manual_seed(0),
                  dtype=torch.float64)
    assert res.converged
    torch.testing.assert_close(torch.tensor(res.eigenvalues, dtype=torch.float64), distinct[:3].double(), rtol=1e-6, atol=1e-8)
    assert res.hvps <= 6  # invariant Krylov space: at most 5 distinct eigenvalues (A is 5 x 5)
    pw = power_iteration(op.hvp, op.dim, k=1, max_iter=500, tol=1e-9, gen=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    assert pw.eigenvalues[0] == pytest.approx(float(true[0]), rel=1e-6)


def test_hutchinson_trace_and_its_breakdowns_match_closed_form():
    den = linear_denoiser()
    bank = linear_bank(den, n=24)
    edges = bucket_edges(bank.t_range, 3)
    groups = bucket_index(bank.t, edges)
    named = measured_parameters(den.net)
    params = [p for _, p in named]
    op = BankLoss(den, bank, params, batch_size=5, groups=groups)
    masks = block_masks(params, parameter_groups(named))
    tr = hutchinson(op, draws=300, gen=torch.Generator().manual_seed(3), blocks=masks, dtype=torch.float64)
    H = closed_form_hessian(den, bank)
    exact = float(torch.trace(H))
    assert tr.trace.stderr > 0
    assert abs(tr.trace.value - exact) < 4 * tr.trace.stderr
    # Rademacher variance is 2 sum_{i != j} H_ij^2: the reported standard error must agree.
    off = H - torch.diag(torch.diag(H))
    expected_se = math.sqrt(2 * float((off ** 2).sum()) / 300)
    assert tr.trace.stderr == pytest.approx(expected_se, rel=0.25)
    for name, mask in masks.items():
        block_exact = float(torch.diag(H)[mask].sum())
        assert abs(tr.by_block[name].value - block_exact) < 4 * tr.by_block[name].stderr + 1e-12
    for g in range(len(edges)):
        sub = bank.subset(groups == g)
        exact_g = float(torch.trace(closed_form_hessian(den, sub)))
        est = tr.by_group[g]
        assert abs(est.value - exact_g) < 4 * est.stderr
    # Groups recombine into the whole: sum_g (n_g / N) tr(H_g) = tr(H), draw by draw.
    w = torch.bincount(groups, minlength=len(edges)).double() / len(bank)
    assert sum(float(w[g]) * tr.by_group[g].value for g in range(len(edges))) == pytest.approx(tr.trace.value, rel=1e-9)


def test_grouped_and_plain_chunking_give_the_same_hvp():
    den = linear_denoiser()
    bank = linear_bank(den, n=24)
    groups = bucket_index(bank.t, bucket_edges(bank.t_range, 4))
    params = [p for _, p in measured_parameters(den.net)]
    op = BankLoss(den, bank, params, batch_size=7, groups=groups)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(op.hvp(v), op.hvp_by_group(v)[0], rtol=1e-12, atol=1e-14)
