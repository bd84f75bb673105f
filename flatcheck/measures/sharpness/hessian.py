"""The Hessian of the training loss on a probe bank, seen only through Hessian-vector products.

    L(theta)  = mean over probes of the denoiser's training loss (MSE on its target)
    H v       = d/dtheta ( grad L(theta) . v )           (double backward: Pearlmutter's trick)
    top-k     : Lanczos with full re-orthogonalisation; the Ritz value theta_i of the
                tridiagonal T_j is within |beta_j * s_ji| of an eigenvalue of H (s_i its
                eigenvector), which is the stopping rule: |beta_j s_ji| <= tol * |theta_i|.
                Power iteration with deflation (as PyHessian does it) is kept for comparison.
    trace     : Hutchinson, tr(H) = E[v^T H v] with Rademacher v; its standard error over draws.
                The same draws give every block's trace, tr(H_bb) = E[v_b^T (H v)_b], and every
                timestep bucket's trace, by computing H v bucket by bucket (H = sum_g w_g H_g).

diffusers attention runs SDPA, whose fused CPU kernel has no double backward: every HVP runs
under the math SDPA backend (../shared/NOTES.md). Vectors are flat, one entry per parameter.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ...core.denoiser import Denoiser
from .paramvec import flat
from ...core.probes import ProbeBank
from ...core.stats import Estimate, mean_estimate

Progress = Callable[[str, int, int], None] | None


@contextmanager
def differentiable(params: list[torch.Tensor], second_order: bool = False):
    """Parameters that take gradients (flags put back after); second order also needs the math
    SDPA kernel, the only one with a double backward on CPU."""
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad(), (sdpa_kernel(SDPBackend.MATH) if second_order else nullcontext()):
            yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


class BankLoss:
    """The mean training loss over a probe bank as a function of the given parameters.

    `chunks` splits the bank into (group, indices) pieces of at most batch_size probes; the
    loss is sum_c (n_c / N) L_c, so gradients and HVPs are exact whatever the chunking.
    """

    def __init__(self, denoiser: Denoiser, bank: ProbeBank, params: list[torch.Tensor], batch_size: int,
                 groups: torch.Tensor | None = None):
        self.denoiser, self.bank, self.params = denoiser, bank, params
        self.sizes = [p.numel() for p in params]
        self.dim = sum(self.sizes)
        n = len(bank)
        groups = torch.zeros(n, dtype=torch.long) if groups is None else groups.cpu()
        self.n_groups = int(groups.max()) + 1 if n else 1
        self.group_sizes = torch.bincount(groups, minlength=self.n_groups).tolist()
        # Plain chunks (bank order) for speed; grouped chunks (one group each) for per-group terms.
        self.chunks = [(None, torch.arange(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
        self.group_chunks = [
            (g, idx[s : s + batch_size])
            for g in range(self.n_groups)
            for idx in [torch.nonzero(groups == g).flatten()]
            for s in range(0, len(idx), batch_size)
        ]

    def _chunk_loss(self, idx: torch.Tensor) -> torch.Tensor:
        """Per-probe losses [n_c] of one chunk."""
        d, b = self.denoiser, self.bank
        dev, dt = d.device, d.dtype
        cond = None if b.cond is None else b.cond[idx].to(dev)
        return d.loss(b.x0[idx].to(dev, dt), b.t[idx].to(dev), b.noise[idx].to(dev, dt), cond, reduction="none")

    def unflat(self, v: torch.Tensor) -> list[torch.Tensor]:
        return [x.view_as(p).to(p.dtype) for x, p in zip(v.split(self.sizes), self.params)]

    def value_and_grad(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-probe losses [N] (float64, CPU) at the current weights and the gradient of their mean (flat)."""
        n, grad, losses = len(self.bank), None, []
        with differentiable(self.params):
            for _, idx in self.chunks:
                per = self._chunk_loss(idx)
                g = flat(torch.autograd.grad(per.sum() / n, self.params))
                grad = g if grad is None else grad.add_(g)
                losses.append(per.detach().double().cpu())
        return torch.cat(losses), grad

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """H v for the whole bank (flat v, flat result)."""
        return self._hvp(v, self.chunks)[0]

    def hvp_by_group(self, v: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
        """H v and, for every group g, v^T H_g v, with H_g the Hessian of the group's mean loss."""
        return self._hvp(v, self.group_chunks)

    def _hvp(self, v: torch.Tensor, chunks) -> tuple[torch.Tensor, list[float]]:
        n = len(self.bank)
        vs = self.unflat(v)
        out = torch.zeros_like(v)
        quad = [0.0] * self.n_groups
        with differentiable(self.params, second_order=True):
            for g, idx in chunks:
                loss = self._chunk_loss(idx).mean()
                grads = torch.autograd.grad(loss, self.params, create_graph=True)
                dot = sum((gi * vi).sum() for gi, vi in zip(grads, vs))
                hv = flat(torch.autograd.grad(dot, self.params)).to(v.dtype)
                out.add_(hv, alpha=len(idx) / n)
                if g is not None:
                    quad[g] += float(v @ hv) * len(idx) / self.group_sizes[g]
        return out, quad


# ------------------------------------------------------------------------------- top eigenvalues
@dataclass
class Eigenpairs:
    """Top eigenvalues by Lanczos or power iteration, with how far each one can be off."""

    method: str
    eigenvalues: list[float]  # largest first
    residuals: list[float]  # bound on |eigenvalue error|: ||H y - theta y||
    converged: bool  # every residual <= tol * |eigenvalue|
    tol: float
    hvps: int
    min_eigenvalue: float | None = None  # most negative Ritz value seen (Lanczos only)
    history: list[float] = field(default_factory=list)  # top estimate after each HVP


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, k: int, max_iter: int, tol: float,
            gen: torch.Generator, device=None, dtype=torch.float32, progress: Progress = None) -> Eigenpairs:
    """Top-k eigenvalues of a symmetric operator: Lanczos with full re-orthogonalisation.

    Stops once the k largest Ritz values all satisfy |beta_j s_ji| <= tol |theta_i|, or when the
    Krylov space is invariant (beta ~ 0: the Ritz values are then exact), or after max_iter HVPs.
    """
    q = torch.randn(dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    q /= q.norm()
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    history: list[float] = []
    theta = s = None
    beta = 0.0
    for j in range(max_iter):
        w = matvec(basis[-1])
        alpha = float(w @ basis[-1])
        alphas.append(alpha)
        # Two passes of Gram-Schmidt against the whole basis keep the vectors orthogonal in float32.
        for _ in range(2):
            for b in basis:
                w.sub_(b, alpha=float(w @ b))
        beta = float(w.norm())
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            T += torch.diag(off, 1) + torch.diag(off, -1)
        theta, s = torch.linalg.eigh(T)  # ascending
        history.append(float(theta[-1]))
        if progress:
            progress("hessian", j + 1, max_iter)
        top = min(k, len(alphas))
        res = [beta * abs(float(s[-1, -1 - i])) for i in range(top)]
        vals = [float(theta[-1 - i]) for i in range(top)]
        invariant = beta <= 1e-10 * max(1.0, abs(vals[0]))
        if invariant or (top == k and all(r <= tol * abs(v) for r, v in zip(res, vals))):
            break
        betas.append(beta)
        basis.append(w / beta)
    top = min(k, len(alphas))
    vals = [float(theta[-1 - i]) for i in range(top)]
    res = [beta * abs(float(s[-1, -1 - i])) for i in range(top)]
    converged = all(r <= tol * abs(v) for r, v in zip(res, vals)) and top == k
    return Eigenpairs("lanczos", vals, res, converged, tol, len(alphas), float(theta[0]), history)


def power_iteration(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, k: int, max_iter: int, tol: float,
                    gen: torch.Generator, device=None, dtype=torch.float32, progress: Progress = None) -> Eigenpairs:
    """Top-k (by magnitude) eigenvalues by power iteration with deflation, PyHessian's way.

    Each eigenvalue iterates v <- H v / |H v| with v kept orthogonal to the ones already found,
    until the Rayleigh quotient changes by less than tol (relative) between two HVPs.
    """
    found: list[torch.Tensor] = []
    vals: list[float] = []
    res: list[float] = []
    hvps, history, converged = 0, [], True
    for _ in range(k):
        v = torch.randn(dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
        lam_prev, ok, used = None, False, v
        for _ in range(max_iter):
            for u in found:
                v.sub_(u, alpha=float(v @ u))
            v /= v.norm()
            used = v  # the unit vector whose Rayleigh quotient is lam
            hv = matvec(v)
            hvps += 1
            lam = float(v @ hv)
            if not found:
                history.append(lam)
            if progress:
                progress("hessian", hvps, k * max_iter)
            residual = float((hv - lam * v).norm())
            if lam_prev is not None and abs(lam - lam_prev) <= tol * (abs(lam_prev) + 1e-12):
                ok = True
                break
            lam_prev, v = lam, hv
        vals.append(lam)
        res.append(residual)
        found.append(used)
        converged &= ok
    return Eigenpairs("power", vals, res, converged, tol, hvps, None, history)


# ---------------------------------------------------------------------------------------- trace
@dataclass
class TraceEstimate:
    """Hutchinson trace of the Hessian, whole and broken down (same Rademacher draws for all)."""

    trace: Estimate
    by_group: list[Estimate | None]  # per timestep bucket (None: no probe in it): trace of that bucket's mean-loss Hessian
    by_block: dict[str, Estimate]  # per parameter block: trace of its diagonal block
    draws: int
    hvps: int


def hutchinson(op: BankLoss, draws: int, gen: torch.Generator, blocks: dict[str, torch.Tensor] | None = None,
               dtype=torch.float32, progress: Progress = None) -> TraceEstimate:
    """tr(H) from `draws` Rademacher probes; `blocks` maps block name -> bool mask over the flat vector."""
    totals, groups, per_block = [], [], {name: [] for name in (blocks or {})}
    for i in range(draws):
        v = (torch.randint(0, 2, (op.dim,), generator=gen) * 2 - 1).to(device=op.params[0].device, dtype=dtype)
        hv, quad = op.hvp_by_group(v)
        prod = v * hv
        totals.append(float(prod.sum()))
        groups.append(quad)
        for name, mask in (blocks or {}).items():
            per_block[name].append(float(prod[mask].sum()))
        if progress:
            progress("hutchinson", i + 1, draws)
    by_group = [mean_estimate([q[g] for q in groups]) if op.group_sizes[g] else None for g in range(op.n_groups)]
    return TraceEstimate(mean_estimate(totals), by_group, {k: mean_estimate(v) for k, v in per_block.items()}, draws, draws)
