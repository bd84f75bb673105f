"""A network's parameters as one flat vector: read, write, and per-entry masks.

Perturbation measures think in flat vectors (theta, delta, directions); the network keeps its
own tensors. Writing is always `p.copy_(theta0 + delta)`, never accumulated in place, so a
perturbed point does not drift with rounding from one evaluation to the next.
"""

from __future__ import annotations

import torch


def measured_parameters(net: torch.nn.Module, patterns: str | None = None) -> list[tuple[str, torch.nn.Parameter]]:
    """Every floating-point parameter (trainable or frozen: a loaded checkpoint is often frozen).

    patterns: comma-separated globs on parameter names ('mid_block.*,up_blocks.0.*'): only those are
    measured (on billion-parameter denoisers, a few blocks); the others stay fixed at theta.
    """
    named = [(n, p) for n, p in net.named_parameters() if p.is_floating_point()]
    if patterns is None:
        return named
    from fnmatch import fnmatchcase

    globs = [g.strip() for g in patterns.split(",") if g.strip()]
    return [(n, p) for n, p in named if any(fnmatchcase(n, g) or fnmatchcase(n, g + ".*") for g in globs)]


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


@torch.no_grad()
def assign(params: list[torch.Tensor], vec: torch.Tensor) -> None:
    """Write a flat vector into the parameters (cast to each parameter's dtype)."""
    s = 0
    for p in params:
        e = s + p.numel()
        p.copy_(vec[s:e].view_as(p))
        s = e


def block_masks(params: list[torch.Tensor], groups) -> dict[str, torch.Tensor]:
    """Group name -> bool mask over the flat vector (groups: blocks.ParamGroup list)."""
    offsets, s = [], 0
    for p in params:
        offsets.append((s, s + p.numel()))
        s += p.numel()
    masks = {}
    for g in groups:
        m = torch.zeros(s, dtype=torch.bool, device=params[0].device)
        for i in g.indices:
            m[offsets[i][0] : offsets[i][1]] = True
        masks[g.name] = m
    return masks
