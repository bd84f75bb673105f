"""A denoiser whose loss is exactly quadratic in its weights, so its Hessian has a closed form.

eps_hat(x_t) = W x_t + b on flattened pixels (D = C*H*W). With x~_i = [x_t,i; 1], the loss
    L = 1/(N D) sum_i |W x_t,i + b - eps_i|^2
has, for every output row r, the same Hessian block A = 2/(N D) sum_i x~_i x~_i^T over (W_r, b_r).
In the flat order [W row-major, b] that is H = P (I_D kron A) P^T: the eigenvalues of A, each D
times, and tr(H) = D tr(A).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from flatcheck.core.denoiser import Denoiser, NetCall
from flatcheck.core.probes import ProbeBank, build_probe_bank

from .conftest import make_scheduler


class LinearNet(torch.nn.Module):
    def __init__(self, shape=(1, 2, 2), seed=0, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = shape[0] * shape[1] * shape[2]
        self.config = {"sample_size": shape[1], "in_channels": shape[0]}
        # Separate top-level names, so the block breakdown sees two blocks.
        self.weight = torch.nn.Parameter((0.3 * torch.randn(d, d, generator=g)).to(dtype))
        self.bias = torch.nn.Parameter((0.1 * torch.randn(d, generator=g)).to(dtype))

    flatcheck_call = NetCall("sample", "none")

    def forward(self, sample, timestep=None, return_dict=True):
        out = (sample.flatten(1) @ self.weight.T + self.bias).view_as(sample)
        return SimpleNamespace(sample=out) if return_dict else (out,)


def linear_denoiser(seed=0, shape=(1, 2, 2), dtype=torch.float64) -> Denoiser:
    return Denoiser(LinearNet(shape, seed, dtype), make_scheduler())


def linear_bank(den: Denoiser, n=24, seed=0) -> ProbeBank:
    c, h, w = den.sample_shape
    data = torch.rand(40, c, h, w, generator=torch.Generator().manual_seed(seed + 7)) * 2 - 1
    return build_probe_bank(den, n=n, seed=seed, data=data)


def closed_form_hessian(den: Denoiser, bank: ProbeBank) -> torch.Tensor:
    """The exact Hessian in the flat [W row-major, b] order, from A (no autograd)."""
    x0, t, noise = bank.x0.double(), bank.t, bank.noise.double()
    a = den.alphas_cumprod[t].view(-1, 1, 1, 1)
    xt = (a.sqrt() * x0 + (1 - a).sqrt() * noise).flatten(1)
    n, d = xt.shape
    xa = torch.cat([xt, torch.ones(n, 1, dtype=xt.dtype)], 1)
    A = 2.0 / (n * d) * xa.T @ xa
    H = torch.zeros(d * d + d, d * d + d, dtype=torch.float64)
    for r in range(d):
        idx = list(range(r * d, r * d + d)) + [d * d + r]  # row r of W, then b_r
        H[[[i] for i in idx], idx] = A
    return H
