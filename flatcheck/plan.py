"""The plan of a run: what each phase computes, the memory it needs, how long it takes - before it runs.

    work     each measure's cost function (measures/<name>/cost.py) counts its phases' images through
             the denoiser (no-grad, gradient, HVP), decodes and features, and the parameter-sized
             vectors each phase holds (core.work);
    memory   peak of a phase = the process before any weights (libraries) + the weights + the vectors
             held x the bytes of one vector + the peak of one call at the phase's batch, traced on the
             meta device (flatcheck.footprint: exact for the tensors, nothing allocated);
    time     images x the seconds of one image, from one timed forward and one forward + backward at
             the model's resolution on the real device (an HVP: HVP_RATIO x a forward + backward);
    fit      the largest peak against the memory the device has free; when it does not fit, the
             options that would (each checked by planning again with it).

`plan_run` works on a Denoiser whose network may be on the meta device: the plan of an SDXL or Flux
audit for an 80 GB GPU is made on a laptop from the configs alone. The audit makes the same plan
with the real model before its measures start and stops in one line when it does not fit.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from .core.work import RunShape, Work
from .errors import InputError

# An HVP costs this many forward + backward passes of the same batch (benchmarks/bench_hessian.py, on the
# bundled model, 1 thread): (graph rebuilt, gradient graph kept). Plain: 3.62 and 2.48, quiet machine.
# Under --gradient-checkpointing (core.checkpointing segments recompute each block inside both backwards)
# the plain ones times what checkpointing added in one run under load: 4.13 / 2.93 and 2.97 / 2.04.
HVP_RATIO = (3.6, 2.5)
HVP_RATIO_CHECKPOINTED = (5.1, 3.6)
# A run fits when its planned peak leaves this share of what the device has free: the plan's estimate
# is within 25% of measured peaks at real size (benchmarks/README.md), and the kernel's page cache, the
# allocator's fragmentation and whatever else runs on the machine need room too.
FIT_MARGIN = 0.15


@dataclass
class PhasePlan:
    measure: str
    work: Work
    peak_bytes: int  # estimated peak of the process during the phase
    parts: dict[str, int]  # what the peak is made of: baseline, weights, vectors, call
    seconds: float | None  # estimated time (None: not calibrated)


@dataclass
class Plan:
    model: str
    device: str
    dtype: str
    parameters: int  # of the denoiser
    measured_parameters: int  # what sharpness perturbs
    vector_bytes: int  # one parameter-sized vector of the measured parameters
    weights_bytes: int  # denoiser + autoencoder, in the run's dtype
    baseline_bytes: int  # the process before any weights
    available_bytes: int  # what the device has for this run
    available_source: str
    usable_bytes: int  # what the plan lets the run use: available_bytes less FIT_MARGIN of it
    phases: list[PhasePlan]
    peak_bytes: int
    fits: bool
    advice: list[str] = field(default_factory=list)  # options that would fit (when it does not)
    calibration: dict | None = None  # seconds per image of each call kind, and how measured
    options: dict = field(default_factory=dict)

    @property
    def worst(self) -> PhasePlan | None:
        return max(self.phases, key=lambda p: p.peak_bytes, default=None)

    @property
    def seconds(self) -> float | None:
        known = [p.seconds for p in self.phases if p.seconds is not None]
        return sum(known) if known and len(known) == len(self.phases) else None

    def refusal(self) -> str:
        """The one line of a run that will not fit."""
        w = self.worst
        line = (
            f"this run needs about {gib(self.peak_bytes)} at its peak ({w.measure}: {w.work.phase}), "
            f"{gib(self.available_bytes)} is available ({self.available_source}) and flatcheck keeps "
            f"{FIT_MARGIN:.0%} of it free"
        )
        if self.advice:
            line += "; it would fit with " + " or ".join(self.advice)
        else:
            line += "; no option flatcheck knows makes it fit on this device"
        return line + " (see `flatcheck plan`)"


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


# ---------------------------------------------------------------------------------------- memory
def available_memory(device: torch.device) -> tuple[int, str]:
    """Bytes this run may use on the device, and where the number comes from."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_allocated(device)), f"free on {torch.cuda.get_device_name(device)}"
    if device.type == "meta":
        return 0, "nothing: the meta device holds no data"
    from .core.memory import anonymous_rss, current_rss, meminfo_bytes

    avail = meminfo_bytes("MemAvailable")
    source = "MemAvailable"
    limit = _cgroup_room()
    if limit is not None and (avail is None or limit < avail):
        avail, source = limit, "the cgroup's memory limit"
    # MemAvailable counts this process's mapped files (page cache) already: add only what is its own
    # (SD 1.5 loaded from memory-mapped safetensors: 28.9 GB "available" on a 24 GB machine otherwise).
    rss = anonymous_rss()
    if rss is None:
        rss = current_rss() or 0
    if avail is None:
        return 0, "unknown (no /proc/meminfo)"
    return int(avail + rss), f"{source} + this process"


def usable(available: int) -> int:
    """What a run may plan to use of `available` bytes (FIT_MARGIN kept free)."""
    return int(available * (1 - FIT_MARGIN))


def _cgroup_room() -> int | None:
    """cgroup v2 limit minus usage, where a limit is set."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit == "max":
            return None
        return int(limit) - int(open("/sys/fs/cgroup/memory.current").read().strip())
    except (OSError, ValueError):
        return None


def parse_size(text: str) -> int:
    """'80GB', '80 GiB', '24g', '512MiB' -> bytes (GB and GiB alike mean 2^30: what tools print as GB)."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not m:
        raise InputError(f"--memory '{text}' is not a size (e.g. 80GB, 24GiB, 512MB)")
    return int(float(m.group(1)) * 1024 ** "bkmgt".index(m.group(2) or "b"))


# ---------------------------------------------------------------------------------------- the plan
_TRACES: dict = {}  # (model key, kind, batch, guided, checkpointing, measured names) -> bytes, for this process


def model_key(denoiser) -> str:
    """What a trace depends on: classes, configs, dtypes, input shape and condition shapes (not weights)."""
    import json

    def module(m):
        if m is None:
            return None
        return [
            type(m).__name__,
            json.dumps(dict(m.config), sort_keys=True, default=str),
            str(next(m.parameters()).dtype),
        ]

    c = denoiser.conditioning
    cond = (
        None
        if c is None
        else [c.kind, sorted((k, tuple(v.shape)) for k, v in c.tables.items()), c.guided, sorted(c.static), c.added]
    )
    return json.dumps([module(denoiser.net), module(denoiser.vae), list(denoiser.sample_shape), cond], default=str)


@dataclass
class Calls:
    """Traced peaks of the denoiser's calls, memoised by what they depend on (the advice plans again many
    times, and one process audits many checkpoints of one architecture)."""

    denoiser: object
    params: list[torch.Tensor]
    checkpointing: bool
    names: tuple[str, ...] = ()

    def __post_init__(self):
        self.key = model_key(self.denoiser)

    def bytes(self, kind: str, batch: int, guided: bool = False) -> int:
        from .footprint import call_bytes

        key = (
            self.key,
            kind,
            batch,
            guided and kind == "forward",
            self.checkpointing and kind != "forward",
            self.names if kind != "forward" else (),
        )
        if key not in _TRACES:
            if kind == "hvp" and batch > 2:
                # An HVP's trace walks every attention chunk, whose number grows with the batch (a minute at
                # SD 1.5's batch 16): extrapolated from one and two probes, linear in the batch (an upper
                # bound: a chunk's memory does not grow with it).
                one, two = self.bytes(kind, 1), self.bytes(kind, 2)
                _TRACES[key] = one + (batch - 1) * max(0, two - one)
            else:
                _TRACES[key] = call_bytes(
                    self.denoiser, self.params, kind, batch, guided=guided, checkpointing=self.checkpointing
                )
        return _TRACES[key]


def run_shape(denoiser, opts, fd: bool, reference_images: int, samples_made: bool) -> RunShape:
    from .core.sampling import make_sampler, timesteps_for

    c = denoiser.conditioning
    guided = c is not None and bool(getattr(c, "guided", False))
    cache: dict[int, int] = {}

    def evals(steps: int) -> int:
        if steps not in cache:
            try:
                cache[steps] = len(timesteps_for(make_sampler(denoiser.scheduler, opts.sampler), steps, denoiser))
            except Exception:  # noqa: BLE001 - a scheduler that cannot plan without running: count steps
                cache[steps] = steps
        return cache[steps]

    return RunShape(
        probes=opts.probes,
        samples=opts.samples,
        steps=opts.steps,
        batch_size=opts.batch_size,
        guided=guided,
        samples_made=samples_made,
        fd=fd,
        reference_images=reference_images,
        evals=evals,
    )


def plan_run(
    denoiser,
    opts,
    *,
    device: torch.device,
    available: tuple[int, str] | None = None,
    baseline_bytes: int | None = None,
    calibration: dict | None = None,
    fd: bool = False,
    reference_images: int = 0,
    samples_made: bool = False,
    model: str = "",
    advise: bool = True,
) -> Plan:
    """The plan of an audit (or of one measure: opts.skip holds the others) on `denoiser`, whose network
    and autoencoder may live on the meta device. opts: audit.AuditOptions."""
    from .core.params import measured_parameters, vector_dtype
    from .measures import REGISTRY, in_run_order

    names = in_run_order(opts.skip)
    configs = {n: opts.measure_config(n) for n in names}
    sharp = configs.get("sharpness") or REGISTRY["sharpness"].make_config(
        opts.profile, {}, opts.configs.get("sharpness")
    )
    named = measured_parameters(denoiser.net, sharp.params)
    if not named and sharp.params == "lora":
        raise InputError("--params lora measures a LoRA adapter's parameters: none is loaded (give --lora PATH)")
    if not named:
        raise InputError(f"--params '{sharp.params}' matches no parameter of {type(denoiser.net).__name__}")
    params = [p for _, p in named]
    shape = run_shape(denoiser, opts, fd, reference_images, samples_made)
    works: list[tuple[str, Work]] = []
    uses_samples = any(n in names for n in ("fid", "quantize", "exposure")) or (
        opts.data is None and any(REGISTRY[n].uses_bank for n in names)
    )
    if uses_samples and not samples_made:
        exposure_makes = (
            "exposure" in configs
            and any(s == opts.steps for s in configs["exposure"].steps)
            and configs["exposure"].samples == opts.samples
        )
        if not exposure_makes:
            works.append(
                (
                    "inputs",
                    Work(
                        "shared samples",
                        forwards=opts.samples * shape.evals(opts.steps),
                        batch=min(opts.batch_size, opts.samples),
                        guided=shape.guided,
                    ),
                )
            )
    for n in names:
        cost = REGISTRY[n].cost
        if cost is not None:
            works += [(n, w) for w in cost(configs[n], shape, denoiser.net)]

    vdtype = vector_dtype(params)
    measured = sum(p.numel() for p in params)
    vector_bytes = measured * torch.tensor([], dtype=vdtype).element_size()
    weights = sum(p.numel() * p.element_size() for p in denoiser.net.parameters())
    if denoiser.vae is not None:
        weights += sum(p.numel() * p.element_size() for p in denoiser.vae.parameters())
    if baseline_bytes is None:
        from .core.memory import baseline_rss

        baseline_bytes = baseline_rss() if device.type != "cuda" else 0
    avail, source = available if available is not None else available_memory(device)
    checkpointing = bool(sharp.gradient_checkpointing)
    if (
        not advise
        and avail > 0
        and max((w.vectors for _, w in works), default=0) * vector_bytes + baseline_bytes + weights > usable(avail)
    ):
        advise = None  # a trial of the advice that cannot fit whatever its calls need: not traced
    calls = Calls(denoiser, params, checkpointing, tuple(n for n, _ in named))
    decode_bytes = 0 if advise is None else _decode_bytes(denoiser, opts.batch_size)
    phases = []
    for measure, w in works:
        call = 0 if advise is None else calls.bytes(w.graph, w.batch, w.guided and w.graph == "forward")
        if w.decodes:
            call = max(call, decode_bytes)
        parts = {"baseline": baseline_bytes, "weights": weights, "vectors": w.vectors * vector_bytes, "call": call}
        phases.append(PhasePlan(measure, w, sum(parts.values()), parts, _seconds(w, calibration, checkpointing)))
    peak = max((p.peak_bytes for p in phases), default=baseline_bytes + weights)
    plan = Plan(
        model=model,
        device=str(device),
        dtype=str(next(denoiser.net.parameters()).dtype).removeprefix("torch."),
        parameters=sum(p.numel() for p in denoiser.net.parameters()),
        measured_parameters=measured,
        vector_bytes=vector_bytes,
        weights_bytes=weights,
        baseline_bytes=baseline_bytes,
        available_bytes=avail,
        available_source=source,
        usable_bytes=usable(avail),
        phases=phases,
        peak_bytes=peak,
        fits=avail <= 0 or peak <= usable(avail),
        calibration=calibration,
        options={
            "profile": opts.profile,
            "batch_size": opts.batch_size,
            "params": sharp.params or "all",
            "gradient_checkpointing": checkpointing,
        },
    )
    if not plan.fits and advise:
        plan.advice = _advice(
            denoiser, opts, plan, device, (avail, source), baseline_bytes, fd, reference_images, samples_made
        )
    return plan


def _decode_bytes(denoiser, batch: int) -> int:
    """Peak of decoding one batch: Denoiser.decode goes in slices, so one slice's trace."""
    if denoiser.vae is None:
        return 0
    from .footprint import decode_footprint

    h, w = denoiser.sample_shape[-2:]
    return decode_footprint(denoiser, min(batch, denoiser.vae_slice(h * w * denoiser.vae_factor**2)))


def _seconds(w: Work, calibration: dict | None, checkpointing: bool) -> float | None:
    if not calibration:
        return None
    passes = w.forwards * (2 if w.guided else 1)
    rebuilt, kept = HVP_RATIO_CHECKPOINTED if checkpointing else HVP_RATIO
    hvp = (w.hvps - w.hvps_kept) * rebuilt + w.hvps_kept * kept
    s = passes * calibration["forward"] + w.gradients * calibration["gradient"] + hvp * calibration["gradient"]
    if w.decodes and calibration.get("decode") is not None:
        s += w.decodes * calibration["decode"]
    return s


def _advice(denoiser, opts, plan: Plan, device, available, baseline, fd, reference_images, samples_made) -> list[str]:
    """Options that make the run fit, each checked by planning again with it; at most three, cheapest first."""
    from .core.params import measured_parameters

    sharp = dict(opts.configs.get("sharpness") or {})
    can_checkpoint = getattr(denoiser.net, "_supports_gradient_checkpointing", False) and not sharp.get(
        "gradient_checkpointing"
    )
    tries: list[tuple[str, dict, int]] = []
    if can_checkpoint:
        tries.append(("--gradient-checkpointing", {"gradient_checkpointing": True}, opts.batch_size))
    for b in (16, 4, 1):
        if b < opts.batch_size:
            tries.append((f"--batch-size {b}", {}, b))
            if can_checkpoint:
                tries.append((f"--gradient-checkpointing --batch-size {b}", {"gradient_checkpointing": True}, b))
    if sharp.get("params") is None:
        extra = {"gradient_checkpointing": True} if can_checkpoint else {}
        for head in _parameter_heads(measured_parameters(denoiser.net, None)):
            tries.append(
                (
                    f"--params '{head}.*'" + (" --gradient-checkpointing" if extra else ""),
                    {"params": f"{head}.*", **extra},
                    1,
                )
            )
    found: list[str] = []
    for label, change, batch in tries:
        label += f" --batch-size {batch}" if batch != opts.batch_size and "--batch-size" not in label else ""
        if any(set(f.split()) <= set(label.split()) for f in found) or (
            not change and any(f.startswith("--batch-size") for f in found)
        ):
            continue  # a found option set within this one (or a larger batch alone) already fits
        trial = dataclasses.replace(opts, batch_size=batch, configs={**opts.configs, "sharpness": {**sharp, **change}})
        try:
            p = plan_run(
                denoiser,
                trial,
                device=device,
                available=available,
                baseline_bytes=baseline,
                fd=fd,
                reference_images=reference_images,
                samples_made=samples_made,
                advise=False,
            )
        except InputError:
            continue
        if p.fits:
            found.append(label)
            if len(found) >= 3:
                break
    return found


def _parameter_heads(named) -> list[str]:
    """The network's blocks at the level users select them ('mid_block', 'up_blocks.3',
    'transformer_blocks.0'), largest first."""
    sizes: dict[str, int] = {}
    for name, p in named:
        parts = name.split(".")
        head = ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]
        sizes[head] = sizes.get(head, 0) + p.numel()
    return sorted(sizes, key=lambda h: -sizes[h])


def check_fits(denoiser, opts, *, fd: bool, model: str = "") -> Plan:
    """The plan of this run on a loaded Denoiser (traced on a meta copy of it); InputError with the
    plan's one line when its peak exceeds what the device may use. What the audit does before its measures.
    FLATCHECK_MEMORY_CHECK=0 runs it anyway (the plan is still recorded in the report): for a machine
    whose free memory the plan cannot see, e.g. swap or memory freed by another job before the peak."""
    import os

    from .footprint import meta_copy

    check = os.environ.get("FLATCHECK_MEMORY_CHECK", "1") != "0"
    plan = plan_run(meta_copy(denoiser), opts, device=denoiser.device, fd=fd, model=model)
    if not plan.fits and check:
        raise InputError(plan.refusal())
    return plan


def summary(plan: Plan) -> dict:
    """The plan as a report's environment records it, beside the measured peaks (environment.peak_memory)."""
    by_measure: dict[str, int] = {}
    for p in plan.phases:
        by_measure[p.measure] = max(by_measure.get(p.measure, 0), p.peak_bytes)
    return {
        "estimated_peak_bytes": plan.peak_bytes,
        "by_phase": by_measure,
        "available_bytes": plan.available_bytes,
        "available_source": plan.available_source,
        "weights_bytes": plan.weights_bytes,
        "baseline_bytes": plan.baseline_bytes,
        "vector_bytes": plan.vector_bytes,
        "how": "flatcheck.plan: the process before the weights + weights + parameter-sized vectors held + "
        "one call's peak traced on the meta device",
    }


# ---------------------------------------------------------------------------------------- calibration
def calibrate(denoiser, batch: int = 1, params: list[torch.Tensor] | None = None) -> dict:
    """Seconds per image of a no-grad forward, a forward + backward (over `params`) and a decode, each
    timed once after a warm-up call, at the model's resolution on its real device, at one image and,
    when that is fast (small models, where per-call costs dominate), again at `batch`."""
    once = _calibrate(denoiser, 1, params)
    if batch > 1 and once["forward"] + once["gradient"] < 0.05:
        return _calibrate(denoiser, batch, params)
    return once


def _calibrate(denoiser, batch: int, params: list[torch.Tensor] | None) -> dict:
    from .core.params import ParamSpace, differentiable

    dev = denoiser.device
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, *denoiser.sample_shape, generator=g).to(dev)
    noise = torch.randn(x0.shape, generator=g).to(dev)
    t = torch.full((batch,), denoiser.num_train_timesteps // 2, device=dev)
    cond = None if denoiser.conditioning is None else torch.zeros(batch, dtype=torch.long)
    params = params if params is not None else [p for p in denoiser.net.parameters() if p.is_floating_point()]

    def timed(fn, warm: bool = True) -> float:
        if warm:
            fn()  # warm-up: first calls pay one-off costs (page-in of the weights, kernel selection)
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        return (time.perf_counter() - t0) / batch

    def forward():
        with torch.no_grad():
            denoiser.loss(x0, t, noise, cond)

    space = ParamSpace(params)

    def gradient():
        with differentiable(params):
            buf = space.zeros()
            space.backward_into(buf, denoiser.loss(x0, t, noise, cond))

    fwd = timed(forward)
    # the forward's warm-up paged the weights in: a large model's gradient is timed without one
    out = {
        "forward": fwd,
        "gradient": timed(gradient, warm=fwd * batch < 1.0),
        "batch": batch,
        "how": f"one timed call of {batch} image(s) after a warm-up, on {dev}",
    }
    if denoiser.vae is not None:
        z = torch.randn(1, *denoiser.sample_shape, generator=g).to(dev)

        def decode():
            with torch.no_grad():
                denoiser.decode(z)

        out["decode"] = timed(decode) * batch
    return out


def _sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
