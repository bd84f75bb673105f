"""Activation ranges for simulated quantization, calibrated across sampling steps.

Inputs of every quantized layer are observed while the full-precision model generates a
calibration set (the Q-Diffusion / PTQ4DM practice: activation statistics change with the
timestep, so they are gathered over the whole sampling trajectory, not at one t). Per layer
we keep the exact min and max and a fixed-size seeded subsample of the values of every call;
the three clipping rules then work on that pool:

    minmax      [min, max] over all calls
    percentile  the (100-p, p) percentiles of the pooled values
    mse         the range [a*lo, a*hi] (a in a grid over (0, 1]) with the least fake-quant MSE
                on the pool, searched per bit width

At HEADROOM_BITS and more, every rule gives the observed [min, max] widened HEADROOM times about
zero. At those widths rounding costs almost nothing (a 16-bit step is 1.5e-5 of the range) and
clipping is the only error left: the evaluation's seeds and conditions are not the calibration's,
so its extremes go past the calibrated ones (by up to 28% of the range on a class-conditional
UNet here). On the digits UNet with a class embedding, 16-bit activations alone moved samples by
a relative MSE of 2.8e-5 with MSE-searched ranges and 1.1e-7 with this headroom. Widening costs
log2(HEADROOM) bits: at 12 bits that cost more than the clipping it saved on that model (relative
MSE 1.1e-5 with headroom, 3.2e-6 with minmax ranges), hence 14.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...errors import InputError, OptionError, require_at_least
from .config import METHODS


@dataclass
class ActivationStats:
    """What calibration saw at each layer's input."""

    lo: dict[str, float] = field(default_factory=dict)  # exact minimum over every call
    hi: dict[str, float] = field(default_factory=dict)  # exact maximum
    pool: dict[str, torch.Tensor] = field(default_factory=dict)  # seeded subsample (float32, CPU)
    calls: dict[str, int] = field(default_factory=dict)
    description: str = ""
    samples: torch.Tensor | None = field(default=None, repr=False)  # the calibration samples (model space)


# Values pooled per layer at most (x 2 before a halving): the pool's memory does not grow with the
# calibration's calls (SD 1.5's ~700 layers x 1,024 values x 4 bytes a call: 1.8 GB over the 640 calls of
# 32 samples x 20 steps at batch 1 without it; with it, at most 700 x 2 x 65,536 x 4 B = 0.37 GB).
POOL_VALUES = 65536


class ActivationRecorder:
    """Forward pre-hooks that record layer inputs; use as a context manager around sampling.

    Each call keeps a seeded subsample of `per_call` values; when a layer's pool passes 2 x POOL_VALUES,
    every call's share is halved (every other value of each, itself a uniform subsample) and later calls
    keep the halved count: every call keeps weighing the same in the pool, whatever the number of calls."""

    def __init__(
        self, net: torch.nn.Module, names, per_call: int = 1024, seed: int = 0, pool_values: int = POOL_VALUES
    ):
        self.modules = dict(net.named_modules())
        self.names = list(names)
        self.per_call = per_call
        self.pool_values = pool_values
        self.gen = torch.Generator().manual_seed(seed)
        self._parts: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        self._keep = {n: per_call for n in self.names}  # values kept per call now
        self._held = {n: 0 for n in self.names}
        self.stats = ActivationStats()
        self._handles = []

    def _hook(self, name: str):
        def hook(module, args):
            x = args[0].detach()
            flat = x.reshape(-1)
            lo, hi = float(flat.min()), float(flat.max())
            s = self.stats
            s.lo[name] = min(s.lo.get(name, lo), lo)
            s.hi[name] = max(s.hi.get(name, hi), hi)
            s.calls[name] = s.calls.get(name, 0) + 1
            keep = self._keep[name]
            if flat.numel() > keep:
                # Indices drawn on CPU from one seeded generator: the same pool on any device.
                idx = torch.randint(flat.numel(), (keep,), generator=self.gen).to(flat.device)
                flat = flat[idx]
            parts = self._parts[name]
            parts.append(flat.float().cpu())
            self._held[name] += parts[-1].numel()
            if self._held[name] > 2 * self.pool_values and self._keep[name] > 1:
                parts[:] = [p[::2].clone() for p in parts]
                self._keep[name] = -(-keep // 2)  # the size of p[::2] for a part of `keep` values
                self._held[name] = sum(p.numel() for p in parts)

        return hook

    def __enter__(self) -> "ActivationRecorder":
        self._handles = [self.modules[n].register_forward_pre_hook(self._hook(n)) for n in self.names]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        for n, parts in self._parts.items():
            if parts:
                self.stats.pool[n] = torch.cat(parts)
        self._parts = {n: [] for n in self.names}


def collect_activations(
    denoiser, names, scheduler, steps: int, n: int, seed: int, batch_size: int = 64, per_call: int = 1024, progress=None
) -> ActivationStats:
    """Generate n full-precision samples (sample seeds from `seed`) and record the inputs of `names`."""
    from ...core.sampling import sample

    require_at_least("calib_samples", n, 1)
    with ActivationRecorder(denoiser.net, names, per_call=per_call, seed=seed) as rec:
        # every batch here: the recorder must see all of them in each process (core.dist)
        samples = sample(denoiser, scheduler, steps, n, seed, batch_size=batch_size, progress=progress, split=False)
    rec.stats.samples = samples
    kept = min(rec._keep.values(), default=per_call)
    rec.stats.description = (
        f"{n} full-precision samples, {steps} steps, seed {seed}, {per_call} values kept per layer call"
        + (f" (down to {kept} past {2 * rec.pool_values:,} a layer)" if kept < per_call else "")
    )
    return rec.stats


# ---------------------------------------------------------------------------- clipping rules
MSE_GRID = 100  # candidate clipping ratios a in (0, 1]
MSE_CHUNK = 10  # candidates evaluated together (memory traffic, see _mse_range)
MSE_POOL = 32768  # values the MSE search looks at (a seeded subsample of the pool beyond that)
HEADROOM_BITS = 14  # from this width on, ranges cover the observed extremes with headroom (module docstring)
HEADROOM = 2.0


def activation_range(
    stats: ActivationStats, name: str, method: str, bits: int, percentile: float = 99.99
) -> tuple[float, float]:
    """(lo, hi) clipping range of layer `name` for `bits`-bit activations."""
    lo, hi = stats.lo[name], stats.hi[name]
    if bits >= HEADROOM_BITS and method in METHODS:
        return HEADROOM * min(lo, 0.0), HEADROOM * max(hi, 0.0)
    if method == "minmax":
        return lo, hi
    pool = stats.pool[name]
    if method == "percentile":
        q = torch.tensor([1 - percentile / 100, percentile / 100], dtype=pool.dtype)
        plo, phi = torch.quantile(pool, q).tolist()
        return plo, phi
    if method == "mse":
        return _mse_range(pool, lo, hi, bits)
    raise OptionError("calibration", f"must be one of {', '.join(METHODS)} (got '{method}')")


def _mse_range(pool: torch.Tensor, lo: float, hi: float, bits: int) -> tuple[float, float]:
    # The pool stands for the activations at their own frequencies: outliers weigh what they
    # weigh in the data (appending the extremes again would over-weight them).
    if pool.numel() > MSE_POOL:  # a fixed strided subsample
        pool = pool[:: -(-pool.numel() // MSE_POOL)]
    x = pool.double()
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi <= lo:
        return lo, hi
    qmax = 2**bits - 1
    a = torch.arange(MSE_GRID, 0, -1, dtype=torch.float64).unsqueeze(1) / MSE_GRID  # widest first
    errs = []
    # MSE_CHUNK candidates at a time, [A, 1] scales against [1, K] values, in place: one [100, 32768]
    # float64 temporary per operation (26 MB each) made this search 10-18x slower on CPU (page faults)
    # and a third of `quantize --quick`; the chunks compute the same numbers bit for bit.
    for s in range(0, MSE_GRID, MSE_CHUNK):
        scale = a[s : s + MSE_CHUNK] * (hi - lo) / qmax
        zero = torch.round(-a[s : s + MSE_CHUNK] * lo / scale).clamp(0, qmax)
        d = torch.round(x / scale).add_(zero).clamp_(0, qmax).sub_(zero).mul_(scale).sub_(x)
        errs.append(d.pow_(2).mean(1))
    err = torch.cat(errs)
    best = int(torch.argmin(err))  # first minimum = the widest range among ties
    ratio = float(a[best])
    return ratio * lo, ratio * hi


def activation_ranges(
    stats: ActivationStats, names, method: str, bits_list, percentile: float = 99.99
) -> dict[tuple[str, int], tuple[float, float]]:
    """(name, bits) -> (lo, hi) for every layer and width needed; computed once each."""
    if method not in METHODS:
        raise OptionError("calibration", f"must be one of {', '.join(METHODS)} (got '{method}')")
    if method == "percentile" and not 50 < percentile <= 100:
        raise OptionError("percentile", f"must be in (50, 100] (got {percentile})")
    out = {}
    for name in names:
        if name not in stats.lo:
            raise InputError(f"layer '{name}' was never called during calibration: cannot calibrate its input")
        computed = {}
        for b in sorted(set(bits_list)):
            # minmax and percentile ranges do not depend on the width below HEADROOM_BITS: one for all of those
            key = b if method == "mse" or b >= HEADROOM_BITS else "low"
            if key not in computed:
                computed[key] = activation_range(stats, name, method, b, percentile)
            out[(name, b)] = computed[key]
    return out
