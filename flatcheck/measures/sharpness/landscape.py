"""Filter-normalised loss landscapes (Li, Xu, Taylor, Studer & Goldstein, NeurIPS 2018).

A random Gaussian direction d is rescaled filter by filter so each filter of d has the norm of
the matching filter of theta: d_i <- d_i / |d_i| * |theta_i| (a filter is one output slice,
d[i], of a weight with two or more dimensions). Biases and normalisation parameters (1-D) get
d = 0, as in the paper. Then
    1-D:  L(theta + a d1)           for a in [-span, span]
    2-D:  L(theta + a d1 + b d2)    on a grid over [-span, span]^2
Scale-invariant layers make unnormalised directions misleading; filter normalisation makes the
curves of two networks comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ...core.denoiser import Denoiser
from ...core.params import ParamSpace
from ...core.probes import ProbeBank, bank_losses


@dataclass
class Landscape:
    span: float
    alphas: list[float]  # 1-D coordinates
    curve: list[float]  # L(theta + a d1), mean over the probes
    grid: list[float]  # 2-D coordinates (same on both axes)
    surface: list[list[float]]  # L(theta + a d1 + b d2), [len(grid) (a), len(grid) (b)]
    base_loss: float
    probes: int
    curvature: float  # second difference of the 1-D curve at 0: d2L/da2 along d1


def filter_normalized_direction(
    params: list[torch.Tensor], gen: torch.Generator, out: torch.Tensor | None = None
) -> torch.Tensor:
    """A flat direction, filter-normalised to the parameters (zero on 1-D parameters), drawn and
    written parameter by parameter into `out` (a new vector of ParamSpace(params).dtype if None)."""
    space = ParamSpace(params)
    out = space.empty() if out is None else out
    for p, sl in zip(space.params, space.slices):
        w = p.detach()
        if w.ndim <= 1:
            out[sl].zero_()
            continue
        d = torch.randn(w.shape, generator=gen, dtype=torch.float64)
        wf = w.reshape(w.shape[0], -1).double().cpu()
        df = d.reshape(d.shape[0], -1)
        df = df * (wf.norm(dim=1, keepdim=True) / (df.norm(dim=1, keepdim=True) + 1e-10))
        out[sl].copy_(df.reshape(-1))
    return out


def loss_landscape(
    denoiser: Denoiser,
    bank: ProbeBank,
    params: list[torch.Tensor],
    gen: torch.Generator,
    span: float = 1.0,
    points_1d: int = 21,
    points_2d: int = 9,
    batch_size: int = 64,
    progress: Callable[[str, int, int], None] | None = None,
    theta0: torch.Tensor | None = None,
) -> Landscape:
    """Mean bank loss along one and over two filter-normalised random directions; weights restored after.

    Vectors: the two directions (the second only for a surface), and theta0 unless the caller
    passes its saved copy of the weights."""
    space = ParamSpace(params)
    theta0 = space.read() if theta0 is None else theta0
    d1 = filter_normalized_direction(params, gen)
    d2 = filter_normalized_direction(params, gen) if points_2d > 0 else None
    alphas, grid = _axis(span, points_1d), _axis(span, points_2d)
    total = len(alphas) + len(grid) ** 2
    done = 0

    def at(point) -> float:
        nonlocal done
        space.write(point)
        value = float(bank_losses(denoiser, bank, batch_size).double().mean())
        done += 1
        if progress:
            progress("landscape", done, total)
        return value

    try:
        space.write(theta0)
        base = float(bank_losses(denoiser, bank, batch_size).double().mean())
        # The 0 of the axes is theta itself: reuse the base loss instead of evaluating it again.
        curve = [base if a == 0 else at(lambda sl, a=a: theta0[sl] + a * d1[sl]) for a in alphas]
        surface = [
            [base if a == 0 and b == 0 else at(lambda sl, a=a, b=b: theta0[sl] + a * d1[sl] + b * d2[sl]) for b in grid]
            for a in grid
        ]
    finally:
        space.write(theta0)  # bit for bit: theta0 is an exact copy
    curvature = _curvature_at_zero(alphas, curve)
    return Landscape(span, alphas, curve, grid, surface, base, len(bank), curvature)


def _axis(span: float, n: int) -> list[float]:
    """n points over [-span, span], the middle one exactly 0 when n is odd."""
    a = np.linspace(-span, span, n) if n > 1 else np.zeros(max(n, 0))
    a[np.abs(a) < 1e-12 * max(span, 1.0)] = 0.0
    return a.tolist()


def _curvature_at_zero(alphas: list[float], curve: list[float]) -> float:
    """Central second difference at a = 0 (nan if 0 is not an interior sample point)."""
    if 0.0 not in alphas:
        return float("nan")
    i = alphas.index(0.0)
    if i == 0 or i == len(alphas) - 1:
        return float("nan")
    h = alphas[i + 1] - alphas[i]
    return (curve[i + 1] - 2 * curve[i] + curve[i - 1]) / (h * h)
