"""The measured parameters as one flat vector space: read, write, draw, reduce, differentiate, in bounded memory.

Perturbation measures think in flat vectors (theta, delta, directions, gradients); the network
keeps its own tensors. One vector of SD 1.5's UNet is 3.4 GB in float32 (Flux: 48 GB), so
every operation here works parameter by parameter or chunk by chunk: no float64 copy, no
boolean mask, no `theta + delta` temporary of full size is ever made. Each measure's peak is
its own vectors (theta0, a direction, a gradient ...: counted in its docstring) plus the
weights and one batch's graph.

Writing is always `p.copy_(theta0 + delta)` slice by slice, never accumulated in place, so a
perturbed point does not drift with rounding from one evaluation to the next; the slices
compute the same elementwise expressions as whole vectors would, so the numbers do not depend
on the chunking.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

# Entries per chunk of chunked draws and reductions: a multiple of 16, so torch's CPU normal
# sampler (uniforms in order, Box-Muller over blocks of 16) gives chunked draws the values of
# one whole draw, bit for bit.
CHUNK = 1 << 22


def measured_parameters(net: torch.nn.Module, patterns: str | None = None) -> list[tuple[str, torch.nn.Parameter]]:
    """Every floating-point parameter (trainable or frozen: a loaded checkpoint is often frozen).

    patterns: comma-separated globs on parameter names ('mid_block.*,up_blocks.0.*'): only those are
    measured (on billion-parameter denoisers, a few blocks); the others stay fixed at theta. 'lora': the
    adapter's lora_A / lora_B tensors of a denoiser whose LoRA layers are unfused (core.lora).
    """
    named = [(n, p) for n, p in net.named_parameters() if p.is_floating_point()]
    if patterns is None:
        return named
    if patterns.strip() == "lora":  # a LoRA's own tensors, on its unfused layers (core.lora)
        from .lora import adapter_parameters

        return adapter_parameters(net)
    from fnmatch import fnmatchcase

    globs = [g.strip() for g in patterns.split(",") if g.strip()]
    return [(n, p) for n, p in named if any(fnmatchcase(n, g) or fnmatchcase(n, g + ".*") for g in globs)]


def vector_dtype(params: list[torch.Tensor]) -> torch.dtype:
    """Flat vectors are kept in float32 for half-precision weights (sums, norms and Krylov
    bases lose too much in 8 mantissa bits), else in the weights' own dtype."""
    d = params[0].dtype
    return torch.float32 if d in (torch.float16, torch.bfloat16) else d


def flat(tensors) -> torch.Tensor:
    """Concatenation of small tensors (tests, per-chunk work): one new vector."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def chunk_sizes(n: int) -> list[int]:
    """Chunk lengths covering n: CHUNK each, the last one at least 16 long (see CHUNK)."""
    sizes, done = [], 0
    while done < n:
        m = min(CHUNK, n - done)
        if 0 < n - done - m < 16:
            m = n - done
        sizes.append(m)
        done += m
    return sizes


class ParamSpace:
    """Flat coordinates over a list of parameters: slice i of a flat vector is parameter i."""

    def __init__(self, params: list[torch.Tensor]):
        self.params = list(params)
        self.sizes = [p.numel() for p in self.params]
        self.slices: list[slice] = []
        start = 0
        for n in self.sizes:
            self.slices.append(slice(start, start + n))
            start += n
        self.dim = start
        self.device = self.params[0].device
        self.dtype = vector_dtype(self.params)

    # -- vectors
    def empty(self) -> torch.Tensor:
        return torch.empty(self.dim, dtype=self.dtype, device=self.device)

    def zeros(self) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=self.dtype, device=self.device)

    def read(self) -> torch.Tensor:
        """A copy of the parameters' current values (one vector)."""
        out = self.empty()
        for p, sl in zip(self.params, self.slices):
            out[sl].copy_(p.detach().reshape(-1))
        return out

    @torch.no_grad()
    def write(self, value: Callable[[slice], torch.Tensor] | torch.Tensor) -> None:
        """Set the parameters to a flat vector, or to value(slice) computed slice by slice (e.g.
        `lambda s: theta0[s] + r * u[s]`: the point theta0 + r u without a full-size temporary)."""
        for p, sl in zip(self.params, self.slices):
            part = value[sl] if torch.is_tensor(value) else value(sl)
            p.copy_(part.view_as(p))

    def views(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Per-parameter views of a flat vector (cast to each parameter's dtype: a copy only then)."""
        return [v[sl].view_as(p).to(p.dtype) for p, sl in zip(self.params, self.slices)]

    # -- reductions, chunk by chunk in float64
    def chunks(self) -> list[slice]:
        out, start = [], 0
        for m in chunk_sizes(self.dim):
            out.append(slice(start, start + m))
            start += m
        return out

    def norm(self, value: Callable[[slice], torch.Tensor] | torch.Tensor) -> float:
        """||value|| in float64, value a flat vector or computed chunk by chunk."""
        total = 0.0
        for sl in self.chunks():
            part = value[sl] if torch.is_tensor(value) else value(sl)
            total += float(part.double().square().sum())
        return total**0.5

    # -- draws
    def gaussian(
        self,
        gen: torch.Generator,
        out: torch.Tensor,
        transform: Callable[[slice, torch.Tensor], torch.Tensor],
        keep: "_Keep | None" = None,
        norm_only: bool = False,
    ) -> float:
        """Draw z ~ N(0, I) over the whole space in float64, chunk by chunk (the values of one
        `torch.randn(dim, generator=gen, dtype=float64)`), zero it outside `keep`, and write
        transform(slice, z[slice]) into out[slice]. Returns ||z|| (after `keep`)."""
        total = 0.0
        for sl in self.chunks():
            z = torch.randn(sl.stop - sl.start, generator=gen, dtype=torch.float64)
            if keep is not None:
                z = keep.zero_outside(z, sl)
            if norm_only:
                total += float(z.square().sum())
            else:
                out[sl].copy_(transform(sl, z.to(self.device)))
        return total**0.5

    def rademacher(self, gen: torch.Generator, out: torch.Tensor) -> torch.Tensor:
        """out <- +-1 entries, the values of one `torch.randint(0, 2, (dim,), generator=gen) * 2 - 1`."""
        for sl in self.chunks():
            r = torch.randint(0, 2, (sl.stop - sl.start,), generator=gen)
            out[sl].copy_(r * 2 - 1)
        return out

    # -- gradients into a flat vector
    def backward_into(self, into: torch.Tensor, outputs, grad_outputs=None, retain_graph: bool = False) -> None:
        """into += d(outputs . grad_outputs)/d params, accumulated in place parameter by parameter:
        autograd adds each parameter's gradient into a view of `into` (no list of full-size
        gradients, no concatenated copy)."""
        if into.dtype != self.params[0].dtype:  # half-precision weights, float32 vectors: per-parameter copies
            grads = torch.autograd.grad(
                outputs, self.params, grad_outputs, retain_graph=retain_graph, allow_unused=True
            )
            for g, sl in zip(grads, self.slices):
                if g is not None:
                    into[sl].add_(g.reshape(-1).to(into.dtype))
            return
        saved = [p.grad for p in self.params]
        views = [into[sl].view_as(p) for p, sl in zip(self.params, self.slices)]
        try:
            for p, v in zip(self.params, views):
                p.grad = v
            torch.autograd.backward(outputs, grad_outputs, retain_graph=retain_graph, inputs=self.params)
            for p, v, sl in zip(self.params, views, self.slices):
                if p.grad is not v:  # autograd replaced the tensor instead of adding in place
                    into[sl].copy_(p.grad.reshape(-1))
        finally:
            for p, g in zip(self.params, saved):
                p.grad = g


class Blocks:
    """Named sets of parameters (blocks.ParamGroup), as slices of the flat space instead of masks."""

    def __init__(self, space: ParamSpace, groups):
        self.space = space
        self.ranges: dict[str, list[slice]] = {}
        for g in groups:
            merged: list[slice] = []
            for i in sorted(g.indices):
                sl = space.slices[i]
                if merged and merged[-1].stop == sl.start:
                    merged[-1] = slice(merged[-1].start, sl.stop)
                else:
                    merged.append(sl)
            self.ranges[g.name] = merged
        self.sizes = {name: sum(s.stop - s.start for s in r) for name, r in self.ranges.items()}

    def names(self) -> list[str]:
        return list(self.ranges)

    def gather(self, name: str, v: torch.Tensor) -> torch.Tensor:
        """The block's entries of v, in order: a new contiguous tensor the size of the block (what v[mask]
        gives, so sums over it reduce in the same order)."""
        return torch.cat([v[s] for s in self.ranges[name]])

    def restrict(self, name: str) -> "_Keep":
        return _Keep(self.ranges[name])


class _Keep:
    """One block: zero a chunk outside it."""

    def __init__(self, ranges: list[slice]):
        self.ranges = ranges

    def zero_outside(self, z: torch.Tensor, chunk: slice) -> torch.Tensor:
        out = torch.zeros_like(z)
        for r in self.ranges:
            lo, hi = max(r.start, chunk.start), min(r.stop, chunk.stop)
            if lo < hi:
                out[lo - chunk.start : hi - chunk.start] = z[lo - chunk.start : hi - chunk.start]
        return out


# Kept for callers that work on small networks (tests, benchmarks).
@torch.no_grad()
def assign(params: list[torch.Tensor], vec: torch.Tensor) -> None:
    """Write a flat vector into the parameters (cast to each parameter's dtype)."""
    ParamSpace(params).write(vec)


def block_masks(params: list[torch.Tensor], groups) -> dict[str, torch.Tensor]:
    """Group name -> bool mask over the flat vector (small networks only: one byte per parameter per block)."""
    space = ParamSpace(params)
    masks = {}
    for name, ranges in Blocks(space, groups).ranges.items():
        m = torch.zeros(space.dim, dtype=torch.bool, device=space.device)
        for r in ranges:
            m[r] = True
        masks[name] = m
    return masks


@contextmanager
def differentiable(params: list[torch.Tensor], second_order: bool = False):
    """Parameters that take gradients (flags put back after); second order also needs the math
    SDPA kernel, the only one with a double backward on CPU, and large attention in query chunks
    (core.checkpointing: 4096 tokens keep several 512 MiB score tensors per layer otherwise)."""
    from .checkpointing import ChunkedAttention

    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        with (
            torch.enable_grad(),
            sdpa_kernel(SDPBackend.MATH) if second_order else nullcontext(),
            ChunkedAttention() if second_order else nullcontext(),
        ):
            yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
