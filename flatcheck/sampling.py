"""Seeded generation with per-step hooks: the engine every generating measure uses.

Per-sample seeds: sample i draws its initial noise and every ancestral noise from its
own generator seeded with `sample_seed(seed, i)`, so sample i is the same whatever the
batch size, the batch it lands in, or the number of processes.

The loop is diffusers' own (scale_model_input -> network -> scheduler.step), so
with the same scheduler, steps and initial noise the pixels equal the pipeline's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable, Sequence

import torch

from .denoiser import Denoiser
from .errors import InputError

# Short names for --sampler -> diffusers scheduler class (and fixed settings).
SAMPLERS: dict[str, tuple[str, dict]] = {
    "ddpm": ("DDPMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpm-solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm-solver": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver"}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
# Settings that exist in one scheduler's config but would break another's.
_TRAINING_ONLY = ("variance_type",)


def make_sampler(training_scheduler, name: str | None = None):
    """A fresh scheduler for sampling: the checkpoint's own (name None) or one named in SAMPLERS.

    The noise schedule (betas, T, prediction_type...) is always the checkpoint's.
    """
    import diffusers

    config = dict(training_scheduler.config)
    if name is None or name == "checkpoint":
        return type(training_scheduler).from_config(config)
    key = name.strip().lower()
    if key not in SAMPLERS:
        raise InputError(f"unknown sampler '{name}' (choose from: checkpoint, {', '.join(SAMPLERS)})")
    cls_name, extra = SAMPLERS[key]
    cls = getattr(diffusers, cls_name)
    if cls_name != "DDPMScheduler":
        for k in _TRAINING_ONLY:
            config.pop(k, None)
    return cls.from_config({**config, **extra})


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample `index`: a fixed mix of the run seed and the index (SplitMix64 step)."""
    z = (seed * 0x9E3779B97F4A7C15 + index + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def generators(seed: int, indices: Iterable[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(sample_seed(seed, int(i))) for i in indices]


def initial_noise(shape: Sequence[int], gens: list[torch.Generator]) -> torch.Tensor:
    """[len(gens), *shape] standard normal noise, row i from gens[i] (on CPU: reproducible anywhere)."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in gens])


@dataclass
class StepRecord:
    """What one sampling step saw and predicted, for one batch. eps and x0 are computed on demand."""

    step: int  # 0 .. num_steps-1
    timestep: int  # the training timestep t the network was called at
    indices: torch.Tensor  # sample indices of this batch
    x_t: torch.Tensor  # the network's input (DDPM-normalised x_t)
    model_output: torch.Tensor
    denoiser: Denoiser = field(repr=False)

    @cached_property
    def eps(self) -> torch.Tensor:
        return self.denoiser.eps_from_output(self.model_output, self.x_t, self.timestep)

    @cached_property
    def x0(self) -> torch.Tensor:
        return self.denoiser.x0_from_output(self.model_output, self.x_t, self.timestep)


StepHook = Callable[[StepRecord], None]


def timesteps_for(scheduler, steps: int) -> list[int]:
    scheduler.set_timesteps(steps)
    return [int(t) for t in scheduler.timesteps]


@torch.no_grad()
def sample_batch(
    denoiser: Denoiser,
    scheduler,
    steps: int,
    indices: Sequence[int],
    seed: int,
    *,
    x_init: torch.Tensor | None = None,
    cond=None,
    hooks: Sequence[StepHook] = (),
) -> torch.Tensor:
    """Generate the samples `indices` in one batch; returns the final x (model space, float32, CPU).

    x_init replaces the seeded initial noise (e.g. real data noised to the first step);
    it is taken as already scaled for the scheduler.
    """
    gens = generators(seed, indices)
    scheduler.set_timesteps(steps)
    dev, dt = denoiser.device, denoiser.dtype
    if x_init is None:
        x = initial_noise(denoiser.sample_shape, gens).to(dev, dt) * scheduler.init_noise_sigma
    else:
        x = x_init.to(dev, dt)
    idx = torch.as_tensor(list(indices))
    # Ancestral samplers draw per-step noise; per-sample generators keep it batch-independent.
    step_kwargs = {"generator": gens} if "generator" in _step_params(scheduler) else {}
    for i, t in enumerate(scheduler.timesteps):
        x_in = scheduler.scale_model_input(x, t)
        out = denoiser.model_output(x_in, t.to(dev), cond)
        for hook in hooks:
            hook(StepRecord(i, int(t), idx, x_in, out, denoiser))
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return x.float().cpu()


_STEP_PARAMS: dict[type, set] = {}


def _step_params(scheduler) -> set:
    import inspect

    cls = type(scheduler)
    if cls not in _STEP_PARAMS:
        _STEP_PARAMS[cls] = set(inspect.signature(cls.step).parameters)
    return _STEP_PARAMS[cls]


def sample(
    denoiser: Denoiser,
    scheduler,
    steps: int,
    n: int | Sequence[int],
    seed: int,
    *,
    batch_size: int = 64,
    cond=None,
    hooks: Sequence[StepHook] = (),
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Generate samples (int n -> indices 0..n-1) in batches; returns [N, *sample_shape] on CPU."""
    indices = list(range(n)) if isinstance(n, int) else list(n)
    if steps < 1:
        raise InputError(f"--steps must be >= 1 (got {steps})")
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1 (got {batch_size})")
    out = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        c = cond[start : start + batch_size] if cond is not None else None
        out.append(sample_batch(denoiser, scheduler, steps, chunk, seed, cond=c, hooks=hooks))
        if progress:
            progress(len(chunk))
    return torch.cat(out) if out else torch.empty((0, *denoiser.sample_shape))
