"""Seeded generation with per-step hooks: the engine every generating measure uses.

Per-sample seeds: sample i draws its initial noise and every ancestral noise from its
own generator seeded with `sample_seed(seed, i)`, so sample i is the same whatever the
batch size, the batch it lands in, or the number of processes.

The loop is diffusers' own (scale_model_input -> network -> scheduler.step), so
with the same scheduler, steps and initial noise the pixels equal the pipeline's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable, Sequence

import torch

from ..errors import InputError, OptionError, RunError, require_at_least
from .denoiser import Denoiser
from .option_values import FLOW_SAMPLERS, SAMPLERS, check_sampler_name  # noqa: F401 - names checked torch-free
from .seeds import sample_seed  # noqa: F401 - part of the sampling API

# Settings that exist in one scheduler's config but would break another's.
_TRAINING_ONLY = ("variance_type",)


def make_sampler(training_scheduler, name: str | None = None):
    """A fresh scheduler for sampling: the checkpoint's own (name None) or one named in SAMPLERS.

    The noise schedule (betas, T, prediction_type, flow shift...) is always the checkpoint's.
    """
    import diffusers

    from ..families import is_flow_scheduler

    config = dict(training_scheduler.config)
    key = check_sampler_name(name)
    if is_flow_scheduler(type(training_scheduler).__name__, config) and key != "checkpoint":
        if key == "ddim":  # the default sampler: a flow model's default is its own flow sampler
            key = "checkpoint"
        elif key not in FLOW_SAMPLERS:
            raise InputError(
                f"--sampler {key} is a DDPM-family sampler; this flow-matching model takes: checkpoint, "
                f"{', '.join(FLOW_SAMPLERS)}"
            )
        else:
            cls = getattr(diffusers, FLOW_SAMPLERS[key])
            return cls.from_config(config)
    if key == "checkpoint":
        return type(training_scheduler).from_config(config)
    cls_name, extra = SAMPLERS[key]
    cls = getattr(diffusers, cls_name)
    if cls_name != "DDPMScheduler":
        for k in _TRAINING_ONLY:
            config.pop(k, None)
    return cls.from_config({**config, **extra})


def generators(seed: int, indices: Iterable[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(sample_seed(seed, int(i))) for i in indices]


def initial_noise(shape: Sequence[int], gens: list[torch.Generator]) -> torch.Tensor:
    """[len(gens), *shape] standard normal noise, row i from gens[i] (on CPU: reproducible anywhere)."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in gens])


@dataclass
class StepRecord:
    """What one sampling step saw and predicted, for one batch. eps and x0 are computed on demand,
    once per step however many hooks read them (every hook gets the same record)."""

    step: int  # 0 .. num_steps-1
    timestep: int | float  # the training timestep t the network was called at (fractional for some samplers)
    indices: torch.Tensor  # sample indices of this batch
    x_t: torch.Tensor  # the network's input (DDPM-normalised x_t)
    model_output: torch.Tensor  # the network's (guided, mean) output, before any output_transform
    denoiser: Denoiser = field(repr=False)
    cond: torch.Tensor | None = None  # the batch's condition ids (None: unconditional)

    @cached_property
    def eps(self) -> torch.Tensor:
        return self.denoiser.eps_from_output(self.model_output, self.x_t, self.timestep)

    @cached_property
    def x0(self) -> torch.Tensor:
        return self.denoiser.x0_from_output(self.model_output, self.x_t, self.timestep)


# A hook is called with every step's record. A hook object may also define
# `end_batch(x_final, indices)`, called once a batch has finished, with its final samples.
StepHook = Callable[[StepRecord], None]
# output_transform(record) -> the model output the scheduler steps with (e.g. epsilon scaling).
OutputTransform = Callable[[StepRecord], torch.Tensor]


class StepReducer:
    """Streaming per-step statistics of one per-sample quantity: keeps sums, never the tensors.

    fn(record) -> [B] values. For each step: count, sum, sum of squares (float64), so the
    per-step mean and its standard error come out at the end; with `per_sample`, also each
    sample's total over the steps (for the standard error of a sum over steps, whose terms
    are correlated within a sample). Memory: O(steps + samples).
    """

    def __init__(self, fn: Callable[[StepRecord], torch.Tensor] | None = None, per_sample: bool = False):
        self.fn = fn
        self.count: list[int] = []
        self.sum: list[float] = []
        self.sumsq: list[float] = []
        self.timesteps: list[int | float] = []
        self.per_sample = per_sample
        self.totals = torch.zeros(0, dtype=torch.float64)  # indexed by sample index
        self.seen = torch.zeros(0, dtype=torch.bool)

    def __call__(self, rec: StepRecord) -> None:
        self.add(rec.step, rec.timestep, rec.indices, self.fn(rec))

    def add(self, step: int, timestep: int | float, indices: torch.Tensor, values: torch.Tensor) -> None:
        """Enter values [B] of samples `indices` at one step (for callers that computed them already)."""
        v = values.detach().to("cpu", torch.float64).reshape(-1)
        while len(self.count) <= step:
            self.count.append(0), self.sum.append(0.0), self.sumsq.append(0.0), self.timesteps.append(-1)
        self.count[step] += v.numel()
        self.sum[step] += float(v.sum())
        self.sumsq[step] += float((v * v).sum())
        self.timesteps[step] = timestep
        if self.per_sample:
            idx = indices.to(torch.long)
            top = int(idx.max()) + 1
            if top > len(self.totals):
                self.totals = torch.cat([self.totals, torch.zeros(top - len(self.totals), dtype=torch.float64)])
                self.seen = torch.cat([self.seen, torch.zeros(top - len(self.seen), dtype=torch.bool)])
            self.totals.index_add_(0, idx, v)
            self.seen[idx] = True

    def mean(self) -> list[float]:
        return [s / c for s, c in zip(self.sum, self.count)]

    def stderr(self) -> list[float]:
        """Standard error of each step's mean (ddof=1; 0 for a single value)."""
        out = []
        for s, q, c in zip(self.sum, self.sumsq, self.count):
            if c < 2:
                out.append(0.0)
                continue
            var = max(q - s * s / c, 0.0) / (c - 1)
            out.append(math.sqrt(var / c))
        return out

    def sample_totals(self) -> torch.Tensor:
        """Each seen sample's sum over steps, in index order (needs per_sample=True)."""
        return self.totals[self.seen]


class RecordSteps:
    """Keeps every step's tensors (x_t, eps, x0) on CPU: only when asked, it costs steps x samples."""

    def __init__(self, what: Sequence[str] = ("x_t", "eps", "x0")):
        self.what = tuple(what)
        self.steps: dict[int, dict[str, list[torch.Tensor]]] = {}

    def __call__(self, rec: StepRecord) -> None:
        slot = self.steps.setdefault(rec.step, {k: [] for k in self.what})
        for k in self.what:
            slot[k].append(getattr(rec, k).detach().float().cpu())

    def stacked(self, name: str) -> torch.Tensor:
        """[steps, N, ...] of one recorded quantity, samples in the order they were generated."""
        return torch.stack([torch.cat(self.steps[s][name]) for s in sorted(self.steps)])


def timestep_value(t) -> int | float:
    """A scheduler timestep as a number: int when integral, else the float the network was called at
    (Euler/Heun with linspace spacing run at t = 946.42...; rounding it would misplace alpha_t)."""
    v = float(t)
    return int(v) if v.is_integer() else v


def set_timesteps(scheduler, steps: int, denoiser: Denoiser | None = None) -> None:
    """scheduler.set_timesteps as the pipelines call it: a flow-matching model's family sets its sigmas and
    shift (flatcheck.families: SD3's and Flux's resolution shift mu, Flux's sigmas)."""
    if denoiser is None or not denoiser.flow:
        scheduler.set_timesteps(steps)
        return
    denoiser.family.set_timesteps(scheduler, steps, denoiser.sample_shape, denoiser.net.config)


def timesteps_for(scheduler, steps: int, denoiser: Denoiser | None = None) -> list[int | float]:
    set_timesteps(scheduler, steps, denoiser)
    return [timestep_value(t) for t in scheduler.timesteps]


def scale_model_input(scheduler, x: torch.Tensor, t) -> torch.Tensor:
    """The network's input at t: scheduler.scale_model_input where the scheduler has one (flow-matching
    schedulers have none: the network sees x_t itself)."""
    scale = getattr(scheduler, "scale_model_input", None)
    return x if scale is None else scale(x, t)


def takes_variance(scheduler) -> bool:
    """Whether scheduler.step reads a predicted variance: diffusers' DDPM schedulers with learned variance
    split it off the output themselves; every other scheduler steps with the mean part only."""
    return type(scheduler).__name__.startswith("DDPM") and scheduler.config.get("variance_type") in (
        "learned",
        "learned_range",
    )


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
    output_transform: OutputTransform | None = None,
) -> torch.Tensor:
    """Generate the samples `indices` in one batch; returns the final x (model space, float32, CPU).

    x_init replaces the seeded initial noise (e.g. real data noised to the first step);
    it is taken as already scaled for the scheduler. Ancestral noise still comes from the
    per-sample generators. output_transform changes what the scheduler steps with (hooks
    see the raw network output).
    """
    gens = generators(seed, indices)
    set_timesteps(scheduler, steps, denoiser)
    dev, dt = denoiser.device, denoiser.dtype
    if x_init is None:
        x = initial_noise(denoiser.sample_shape, gens).to(dev, dt) * getattr(scheduler, "init_noise_sigma", 1.0)
    else:
        x = x_init.to(dev, dt)
    idx = torch.as_tensor(list(indices))
    if cond is None and denoiser.conditioning is not None:
        cond = denoiser.conditioning.ids(seed, idx.tolist())  # sample i's condition: a function of (seed, i)
    # Ancestral samplers draw per-step noise; per-sample generators keep it batch-independent.
    step_kwargs = {"generator": gens} if "generator" in _step_params(scheduler) else {}
    with_variance = denoiser.info.learned_variance and takes_variance(scheduler)
    hooked = False  # once a hook has seen this batch, an out-of-memory retry would count it twice
    try:
        for i, t in enumerate(scheduler.timesteps):
            x_in = scale_model_input(scheduler, x, t)
            raw = denoiser.raw_output(x_in, t.to(dev), cond, guided=True)
            out = denoiser.mean_part(raw)
            if hooks or output_transform is not None:
                rec = StepRecord(
                    i, timestep_value(t), idx, x_in, out, denoiser, cond
                )  # one record: eps/x0 computed once
                for hook in hooks:
                    hooked = True
                    hook(rec)
                if output_transform is not None:
                    out = output_transform(rec)
            if with_variance:  # the scheduler reads the predicted variance from the second half
                out = torch.cat([out, raw[:, out.shape[1] :]], 1)
            x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    except BaseException as exc:
        from .oom import is_oom

        if hooked and is_oom(exc):
            raise RunError(
                f"out of memory after step hooks had recorded part of a batch of {len(idx)}: "
                "rerun with a smaller --batch-size"
            ) from exc
        raise
    final = x.float().cpu()
    for hook in hooks:
        end = getattr(hook, "end_batch", None)
        if end is not None:
            end(final, idx)
    return final


_STEP_PARAMS: dict[type, set] = {}


def _step_params(scheduler) -> set:
    import inspect

    cls = type(scheduler)
    if cls not in _STEP_PARAMS:
        _STEP_PARAMS[cls] = set(inspect.signature(cls.step).parameters)
    return _STEP_PARAMS[cls]


def check_run(steps: int, batch_size: int, n: int | None = None) -> None:
    """InputError for values no run can use (one line each)."""
    require_at_least("steps", steps, 1)
    require_at_least("batch_size", batch_size, 1)
    require_at_least("samples", n, 1)


def sample(
    denoiser: Denoiser,
    scheduler,
    steps: int,
    n: int | Sequence[int],
    seed: int,
    *,
    batch_size: int = 64,
    cond=None,
    x_init: torch.Tensor | None = None,
    hooks: Sequence[StepHook] = (),
    output_transform: OutputTransform | None = None,
    progress: Callable[[int], None] | None = None,
    split: bool = True,
) -> torch.Tensor:
    """Generate samples (int n -> indices 0..n-1) in batches; returns [N, *sample_shape] on CPU.

    split=False keeps every batch in this process even in a run of several (core.dist): for callers
    whose module hooks accumulate what the batches do (activation calibration); step hooks imply it.

    x_init: optional [N, ...] starting points, row k for the k-th index (see sample_batch).
    progress(k) is called after each batch with the number of samples it made.
    """
    indices = list(range(n)) if isinstance(n, int) else list(n)
    check_run(steps, batch_size)
    if x_init is not None and len(x_init) != len(indices):
        raise ValueError(f"x_init has {len(x_init)} rows for {len(indices)} samples")
    from .oom import batched

    def one(pos: Sequence[int]) -> torch.Tensor:  # pos: positions in `indices`
        sl = slice(pos[0], pos[-1] + 1)
        x = sample_batch(
            denoiser,
            scheduler,
            steps,
            indices[sl],
            seed,
            x_init=None if x_init is None else x_init[sl],
            cond=None if cond is None else cond[sl],
            hooks=hooks,
            output_transform=output_transform,
        )
        if progress:
            progress(len(pos))
        return x

    # A batch that runs out of GPU memory is split and retried (core.oom): sample i is the same either way.
    # Several processes split the batches, unless hooks must watch every one of them (core.dist).
    out = batched(one, range(len(indices)), batch_size, "sampling", split=split and not hooks)
    return torch.cat(out) if out else torch.empty((0, *denoiser.sample_shape))


def parse_steps(spec: str | int | Sequence[int]) -> tuple[int, ...]:
    """'20' or '20,100' -> (20, 100); each >= 1, no repeats (InputError otherwise)."""
    if isinstance(spec, int):
        parts = [str(spec)]
    elif isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",")]
    else:
        parts = [str(p) for p in spec]
    out: list[int] = []
    for p in parts:
        try:
            v = int(p)
        except ValueError:
            raise OptionError("steps", f"'{spec}' is not a comma-separated list of integers (e.g. 20,100)") from None
        require_at_least("steps", v, 1)
        if v not in out:
            out.append(v)
    if not out:
        raise InputError("--steps is empty (e.g. 20 or 20,100)")
    return tuple(out)


def sampler_config(scheduler) -> dict:
    """The sampler's identity as plain data: class and full config (what a manifest records)."""
    import json

    cfg = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    # Round-trip through JSON so tuples, numpy values etc. compare equal to a loaded manifest.
    return {"class": type(scheduler).__name__, "config": json.loads(json.dumps(cfg, default=str))}


def sampler_name_for(recorded: dict, training_scheduler) -> str | None:
    """The --sampler name that gives this checkpoint the sampler a manifest recorded (`sampler_config`), or None.

    A sample folder records the scheduler's class and config, not the name it was asked by: this finds the
    name back, so a report says `ddim` as every other report does, and a run that reads the folder is the
    run that made it. The default (ddim) is tried first, then the checkpoint's own scheduler."""
    for name in ("ddim", "checkpoint", *SAMPLERS):
        try:
            if sampler_config(make_sampler(training_scheduler, name)) == recorded:
                return name
        except InputError:  # a DDPM-family name for a flow model
            continue
    return None
