"""Hessian-vector products, block Lanczos, power iteration and Hutchinson against closed forms and dense Hessians."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from flatcheck.core.denoiser import Denoiser, NetCall
from flatcheck.core.params import Blocks, assign, block_masks, flat, measured_parameters
from flatcheck.core.probes import build_probe_bank
from flatcheck.measures.sharpness.blocks import bucket_edges, bucket_index, parameter_groups
from flatcheck.measures.sharpness.hessian import BankLoss, block_lanczos, hutchinson, power_iteration

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
        w, b = vec[: params[0].numel()].view_as(params[0]), vec[params[0].numel() :]
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
    # Mixed flags (a partly frozen checkpoint): every HVP and gradient needs them all on, and each
    # one must come back as it was, not all True and not all False.
    for i, p in enumerate(params):
        p.requires_grad_(i % 3 == 0)
    flags = [p.requires_grad for p in params]
    assert any(flags) and not all(flags)
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
    assert [p.requires_grad for p in params] == flags


def _known_matrix(eig, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(eig)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.as_tensor(eig, dtype=torch.float64)) @ q.T


def test_block_lanczos_on_a_known_matrix_counts_multiplicity_within_its_bounds():
    """Top eigenvalue twice, then 25: plain Lanczos would report 40, 25, 10."""
    eig = torch.cat([torch.tensor([40.0, 40.0, 25.0, 10.0]), torch.linspace(-2, 3, 56)]).double()
    M = _known_matrix(eig)
    g = torch.Generator().manual_seed(1)
    res = block_lanczos(lambda v: M @ v, len(eig), k=3, max_iter=60, tol=1e-8, gen=g, dtype=torch.float64)
    assert res.converged and res.method == "block-lanczos" and res.block == 3
    for est, bound, true in zip(res.eigenvalues, res.residuals, [40.0, 40.0, 25.0]):
        assert abs(est - true) <= max(bound, 1e-9)
        assert abs(est - true) < 1e-6
    assert max(abs(a - b) for a, b in zip(res.eigenvalues, [40.0, 40.0, 25.0])) <= res.bound + 1e-9
    assert -2.0 - 1e-9 <= res.min_eigenvalue < -1.5  # Ritz values lie inside the spectrum
    assert res.hvps <= 60 and res.hvps % 3 == 0  # whole blocks
    pw = power_iteration(lambda v: M @ v, len(eig), k=3, max_iter=300, tol=1e-10, gen=g, dtype=torch.float64)
    assert pw.eigenvalues == pytest.approx([40.0, 40.0, 25.0], rel=1e-4)  # deflation finds each copy in turn
    assert pw.bound is None and pw.hvps > res.hvps


def test_block_lanczos_reports_not_converged_when_the_cap_is_too_low():
    """A cluster (40, 39.9) and a cap of two blocks: the values are off, and the result says so."""
    eig = torch.cat([torch.tensor([40.0, 39.9, 39.8]), torch.linspace(-2, 39, 197)]).double()
    M = _known_matrix(eig, seed=2)
    res = block_lanczos(
        lambda v: M @ v, len(eig), k=2, max_iter=5, tol=1e-6, gen=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert res.hvps == 4 and not res.converged  # 5 HVPs cannot hold a third block of 2
    assert res.bound > 1e-6 * min(abs(v) for v in res.eigenvalues)
    true = torch.linalg.eigvalsh(M)  # each value is still within its own residual of some eigenvalue
    for est, r in zip(res.eigenvalues, res.residuals):
        assert float((true - est).abs().min()) <= r + 1e-12


def test_block_lanczos_that_fills_the_space_is_exact():
    """dim 7, blocks of 3: the basis fills the space, T is the matrix itself (no fresh direction left)."""
    eig = [5.0, 5.0, 5.0, 2.0, 1.0, 0.5, -3.0]
    M = _known_matrix(eig, seed=3)
    res = block_lanczos(
        lambda v: M @ v, 7, k=4, max_iter=40, tol=1e-12, gen=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert res.eigenvalues == pytest.approx([5.0, 5.0, 5.0, 2.0], abs=1e-10) and res.converged
    assert res.min_eigenvalue == pytest.approx(-3.0, abs=1e-10)


def test_top_k_with_multiplicity_on_the_linear_model():
    """H = I_D kron A (D = 4): every eigenvalue of A four times. Block Lanczos, power iteration with
    deflation and the closed form agree on the top 5 = lambda_1(A) x 4, lambda_2(A)."""
    den, bank, params, op = linear_op()
    true = torch.linalg.eigvalsh(closed_form_hessian(den, bank)).flip(0)
    assert torch.allclose(true[:4], true[0].expand(4)) and true[4] < true[3] - 0.05  # multiplicity 4, then a gap
    res = block_lanczos(
        op.hvp, op.dim, k=5, max_iter=40, tol=1e-6, gen=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert res.converged
    torch.testing.assert_close(torch.tensor(res.eigenvalues, dtype=torch.float64), true[:5], rtol=1e-8, atol=1e-10)
    assert res.hvps <= 25
    pw = power_iteration(
        op.hvp, op.dim, k=5, max_iter=500, tol=1e-10, gen=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert pw.eigenvalues == pytest.approx(true[:5].tolist(), rel=1e-6)
    assert res.eigenvalues == pytest.approx(pw.eigenvalues, rel=1e-6)
    top1 = block_lanczos(
        op.hvp, op.dim, k=1, max_iter=20, tol=1e-6, gen=torch.Generator().manual_seed(0), dtype=torch.float64
    )  # one vector: the Krylov space closes at 5, the top value is still right
    assert top1.eigenvalues == pytest.approx([float(true[0])], rel=1e-9) and top1.hvps == 5


class _TanhNet(torch.nn.Module):
    """eps_hat = W2 tanh(W1 x_t + b1) + b2 on flattened pixels: small enough for a dense Hessian,
    non-convex, so the Hessian has distinct and negative eigenvalues."""

    def __init__(self, d=4, hidden=6, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.config = {"sample_size": 2, "in_channels": 1}
        self.w1 = torch.nn.Parameter(torch.randn(hidden, d, generator=g, dtype=torch.float64))
        self.b1 = torch.nn.Parameter(0.5 * torch.randn(hidden, generator=g, dtype=torch.float64))
        self.w2 = torch.nn.Parameter(torch.randn(d, hidden, generator=g, dtype=torch.float64))
        self.b2 = torch.nn.Parameter(0.1 * torch.randn(d, generator=g, dtype=torch.float64))

    flatcheck_call = NetCall("sample", "none")

    def forward(self, sample, timestep=None, return_dict=True):
        out = (torch.tanh(sample.flatten(1) @ self.w1.T + self.b1) @ self.w2.T + self.b2).view_as(sample)
        return SimpleNamespace(sample=out) if return_dict else (out,)


def test_top_eigenvalues_match_a_dense_hessian_of_a_nonlinear_model():
    """The dense Hessian from torch.autograd.functional.hessian of the loss written out by hand
    (not through BankLoss): block Lanczos top 3 and power iteration agree with its eigvalsh."""
    den = Denoiser(_TanhNet(), make_scheduler())
    bank = linear_bank(den, n=16)
    named = measured_parameters(den.net)
    params = [p for _, p in named]
    op = BankLoss(den, bank, params, batch_size=16)
    x_t = den.add_noise(bank.x0.double(), bank.t, bank.noise.double())
    target = bank.noise.double()
    shapes = [(n, p.shape, p.numel()) for n, p in named]

    def loss(vec):
        weights, s = {}, 0
        for n, shape, k in shapes:
            weights[n] = vec[s : s + k].view(shape)
            s += k
        out = torch.func.functional_call(den.net, weights, (x_t,)).sample
        return ((out - target) ** 2).flatten(1).mean(1).mean()

    dense = torch.autograd.functional.hessian(loss, flat(params))
    true = torch.linalg.eigvalsh(dense).flip(0)
    assert op.dim == 58 and float(true[-1]) < 0 < float(true[0])  # indefinite
    res = block_lanczos(
        op.hvp, op.dim, k=3, max_iter=45, tol=1e-7, gen=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert res.converged
    for est, r, t in zip(res.eigenvalues, res.residuals, true[:3].tolist()):
        assert abs(est - t) <= r + 1e-12 and est == pytest.approx(t, rel=1e-7)
    assert res.min_eigenvalue >= float(true[-1]) - 1e-12
    by_magnitude = sorted(true.tolist(), key=abs, reverse=True)
    pw = power_iteration(
        op.hvp, op.dim, k=2, max_iter=2000, tol=1e-12, gen=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert pw.eigenvalues == pytest.approx(by_magnitude[:2], rel=1e-5)  # power iteration ranks by |lambda|


def test_hutchinson_trace_and_its_breakdowns_match_closed_form():
    den = linear_denoiser()
    bank = linear_bank(den, n=24)
    edges = bucket_edges(bank.t_range, 3)
    groups = bucket_index(bank.t, edges)
    named = measured_parameters(den.net)
    params = [p for _, p in named]
    op = BankLoss(den, bank, params, batch_size=5, groups=groups)
    masks = block_masks(params, parameter_groups(named))
    tr = hutchinson(
        op,
        draws=300,
        gen=torch.Generator().manual_seed(3),
        blocks=Blocks(op.space, parameter_groups(named)),
        dtype=torch.float64,
    )
    H = closed_form_hessian(den, bank)
    exact = float(torch.trace(H))
    assert tr.trace.stderr > 0
    assert abs(tr.trace.value - exact) < 4 * tr.trace.stderr
    # Rademacher variance is 2 sum_{i != j} H_ij^2: the reported standard error must agree.
    off = H - torch.diag(torch.diag(H))
    expected_se = math.sqrt(2 * float((off**2).sum()) / 300)
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


def test_a_kept_gradient_graph_gives_the_hvps_of_a_fresh_one_and_follows_the_weights():
    """One batch of probes: the gradient's graph is built once and every HVP backpropagates through it.
    Its HVPs equal those that rebuild the graph each time, bit for bit; after the weights move, the
    graph is rebuilt (the HVP is the Hessian at the new weights, not a stale one)."""
    torch.manual_seed(0)
    den = Denoiser(make_unet(), make_scheduler())
    data = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bank = build_probe_bank(den, n=8, seed=0, data=data)
    params = [p for _, p in measured_parameters(den.net)]
    kept, fresh = BankLoss(den, bank, params, batch_size=8), BankLoss(den, bank, params, batch_size=8)
    fresh.retain = False
    assert kept.retain
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(kept.dim, generator=gen)
        assert torch.equal(kept.hvp(v), fresh.hvp(v))
    assert kept._graphs and not fresh._graphs
    theta = flat(params)
    with torch.no_grad():
        assign(params, theta * 1.01)
    try:
        assert torch.equal(kept.hvp(v), fresh.hvp(v))
    finally:
        with torch.no_grad():
            assign(params, theta)
    assert not BankLoss(den, bank, params, batch_size=4).retain  # two batches: rebuilt per HVP (memory)


def test_a_one_batch_bank_is_shared_by_every_process(monkeypatch):
    """Under 2 processes a bank smaller than a batch is still split (each process computes its part of
    every gradient and HVP; the parts are summed across processes): the two parts add up to one
    process's HVP, per-bucket quadratic forms and gradient."""
    from flatcheck.core import dist

    den = Denoiser(make_unet(), make_scheduler())
    data = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bank = build_probe_bank(den, n=7, seed=0, data=data)
    params = [p for _, p in measured_parameters(den.net)]
    groups = torch.tensor([0, 1, 0, 1, 0, 0, 1])
    whole = BankLoss(den, bank, params, batch_size=64, groups=groups)
    v = torch.randn(whole.dim, generator=torch.Generator().manual_seed(4))
    hv, quad = whole.hvp_by_group(v)
    _, g = whole.value_and_grad()
    monkeypatch.setattr(dist, "world", lambda: 2)
    monkeypatch.setattr(dist, "sum_across", lambda t: t)  # no process group here: each process's own part
    parts = []
    for r in (0, 1):
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        op = BankLoss(den, bank, params, batch_size=64, groups=groups)
        assert [len(i) for _, i in op.chunks] == [4, 3] and [len(i) for _, i in op.group_chunks] == [2, 2, 2, 1]
        parts.append((*op.hvp_by_group(v), op.value_and_grad()[1]))
    torch.testing.assert_close(parts[0][0] + parts[1][0], hv, rtol=1e-4, atol=1e-5)
    assert [a + b for a, b in zip(parts[0][1], parts[1][1])] == pytest.approx(quad, rel=1e-4)
    torch.testing.assert_close(parts[0][2] + parts[1][2], g, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(parts[0][0], hv, rtol=1e-2)  # each part is really a part
