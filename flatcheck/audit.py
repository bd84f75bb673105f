"""`flatcheck audit`: every measure on one shared probe bank and one set of full-precision samples.

Order of work, each thing computed once:
  1. load the checkpoint, build the Denoiser;
  2. generate the full-precision samples (seeded, per-sample seeds);
  3. build the probe bank: x0 from --data, or (data-free) drawn from the samples of step 2;
  4. hand bank and samples to sharpness, exposure, quantize and FID (each may be skipped);
  5. one verdict line per area.
The result is an `AuditReport` dataclass; it never prints. Reports render it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import torch

from .errors import InputError, RunError

SCHEMA_VERSION = "1.0"
AREAS = ("sharpness", "exposure", "quantize", "fid")
PROFILES = ("quick", "default", "full")


@dataclass
class AuditOptions:
    """Every option of an audit. A profile fills the sizes; explicit values override the profile."""

    profile: str = "default"
    seed: int = 0
    probes: int = 256  # probe bank size
    samples: int = 256  # full-precision samples (quantize compares against them, FID scores them)
    steps: int = 50  # sampling steps
    sampler: str = "ddim"
    batch_size: int = 64
    data: str | None = None  # reference images; None = data-free
    timesteps: str | None = None  # 'LO:HI' range of the probe bank
    skip: tuple[str, ...] = ()
    # Measure-specific sizes, set by the profile (see PROFILE_SIZES).
    sharpness_iters: int = 20  # power-iteration / Lanczos steps for the top Hessian eigenvalues
    sharpness_hutchinson: int = 16  # Rademacher draws for the Hessian trace
    landscape_points: int = 21  # points of the 1-D filter-normalised loss curve
    quantize_settings: tuple[str, ...] = ("W8A8", "W4A8", "W8A4", "W4A4")
    quantize_calib_samples: int = 32  # separate calibration run (its own seeds)
    quantize_sensitivity_samples: int = 8  # per-layer scan; 0 skips it
    fid_features: str | None = None  # feature network for FD/FID; None: digits-cnn for bundled digits models, else inception
    fid_weights: str | None = None  # local feature-network weights (offline Inception .pth / TorchScript .pt)


PROFILE_SIZES: dict[str, dict[str, Any]] = {
    # CI: about a minute on a 2-core CPU for the bundled 0.7M-parameter models.
    "quick": dict(probes=64, samples=64, steps=20, sharpness_iters=16, sharpness_hutchinson=4, landscape_points=11,
                  quantize_settings=("W8A8", "W4A4"), quantize_calib_samples=16, quantize_sensitivity_samples=0),
    "default": {},
    # Paper-grade: 50k samples for FID (Heusel et al.); hours of GPU time, days on a CPU.
    "full": dict(probes=2048, samples=50_000, steps=100, sharpness_iters=50, sharpness_hutchinson=64, landscape_points=41,
                 quantize_calib_samples=256, quantize_sensitivity_samples=64, batch_size=256),
}


def options_for(profile: str = "default", **overrides) -> AuditOptions:
    """The options of a profile, with explicit (non-None) overrides applied."""
    if profile not in PROFILES:
        raise InputError(f"unknown profile '{profile}' (use {', '.join(PROFILES)})")
    base = replace(AuditOptions(profile=profile), **PROFILE_SIZES[profile])
    fields = set(AuditOptions.__dataclass_fields__)
    unknown = set(overrides) - fields
    if unknown:
        raise InputError(f"unknown audit option(s): {', '.join(sorted(unknown))}")
    for k, v in overrides.items():
        if v is not None:
            _check_type(k, v, getattr(base, k))
    opts = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    opts.skip = tuple(opts.skip)
    opts.quantize_settings = tuple(opts.quantize_settings)
    validate(opts)
    return opts


def _check_type(name: str, value, default) -> None:
    if isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value)
    elif isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int)
    else:  # str or None defaults take strings
        ok = isinstance(value, str)
    if not ok:
        raise InputError(f"audit option '{name}' has the wrong type ({type(value).__name__}: {value!r})")


def validate(opts: AuditOptions) -> None:
    for name in ("probes", "samples", "steps", "batch_size", "sharpness_iters", "sharpness_hutchinson", "landscape_points",
                 "quantize_calib_samples"):
        if getattr(opts, name) < 1:
            raise InputError(f"audit option {name} must be >= 1 (got {getattr(opts, name)})")
    if opts.quantize_sensitivity_samples < 0:
        raise InputError(f"audit option quantize_sensitivity_samples must be >= 0 (got {opts.quantize_sensitivity_samples})")
    bad = [a for a in opts.skip if a not in AREAS]
    if bad:
        raise InputError(f"--skip {bad[0]}: no such area (use {', '.join(AREAS)})")


@dataclass
class Verdict:
    area: str
    status: str  # good | fair | poor | skipped | error
    line: str  # one sentence a person reads first


@dataclass
class AuditReport:
    schema_version: str
    model: dict
    environment: dict
    options: dict
    seeds: dict
    bank: dict
    samples: dict
    verdicts: list[Verdict]
    sharpness: Any = None
    exposure: Any = None
    quantize: Any = None
    fid: Any = None
    timings: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    _samples: Any = None  # the full-precision samples, for plots (not in the JSON)

    def verdict(self, area: str) -> Verdict:
        return next(v for v in self.verdicts if v.area == area)


@dataclass
class AuditInputs:
    """What every measure shares: built once per audit (and once per checkpoint in compare)."""

    denoiser: Any
    bank: Any  # ProbeBank: x0 from --data or from the full-precision samples
    options: AuditOptions
    reference_images: torch.Tensor | None = None  # --data images in [-1, 1] (pixel space), for FD/FID
    fp_samples: torch.Tensor | None = None  # [N, C, H, W] model space, CPU; filled by exposure or generated
    fp_seconds: float | None = None


Progress = Callable[[str, int, int], None]  # (task, done, total)


def resolve_data(ckpt, data: str | None) -> str | None:
    """--data as given; 'none' forces data-free; a bundled digits model defaults to its own training set."""
    if data is not None:
        return None if data.lower() == "none" else data
    if ckpt.form == "bundled" and ckpt.root.name.startswith("digits"):
        return "digits"
    return None


def resolve_for(ckpt, opts: AuditOptions) -> AuditOptions:
    """The options' automatic choices made concrete for this checkpoint (the report records these)."""
    from .fid import default_features

    return replace(opts, data=resolve_data(ckpt, opts.data), fid_features=opts.fid_features or default_features(ckpt))


def generate_samples(denoiser, opts: AuditOptions, progress: Progress | None = None) -> torch.Tensor:
    """The full-precision samples every measure shares (per-sample seeds: batch size does not matter)."""
    from .sampling import make_sampler, sample

    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if progress:
            progress("full-precision samples", done[0], opts.samples)

    return sample(denoiser, make_sampler(denoiser.scheduler, opts.sampler), opts.steps, opts.samples, opts.seed,
                  batch_size=opts.batch_size, progress=tick)


def prepare_inputs(denoiser, opts: AuditOptions, progress: Progress | None = None, *, fp: torch.Tensor | None = None,
                   bank_x0: torch.Tensor | None = None, bank_note: str | None = None) -> tuple[AuditInputs, dict]:
    """The bank (and reference images), each built once. Returns (inputs, timings).

    With --data the bank needs no samples: the full-precision samples are then generated by the
    exposure measure's own sampler run (its hooks watch the same trajectories) and shared from there.
    Data-free, the samples come first and the bank's x0 are drawn from them (or from `bank_x0`,
    the pool compare shares between checkpoints).
    """
    from .probes import _encode, _images_for, parse_timesteps

    timings: dict[str, float] = {}
    lo_hi = parse_timesteps(opts.timesteps, denoiser.num_train_timesteps)
    inputs = AuditInputs(denoiser, None, opts, fp_samples=fp)
    t0 = time.perf_counter()
    if opts.data is not None:
        images = _images_for(denoiser, opts.data)
        inputs.reference_images = images
        x0 = _encode(denoiser, images, opts.batch_size)
        inputs.bank = _bank_from_model_space(x0, opts, lo_hi)
        inputs.bank.source = f"data: {opts.data} ({len(x0)} images, {opts.probes} drawn{' with repeats' if opts.probes > len(x0) else ''})"
        timings["bank"] = time.perf_counter() - t0
        return inputs, timings
    if fp is None:
        inputs.fp_samples = generate_samples(denoiser, opts, progress)
        inputs.fp_seconds = timings["samples"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    pool = inputs.fp_samples if bank_x0 is None else bank_x0
    inputs.bank = _bank_from_model_space(pool, opts, lo_hi)
    inputs.bank.source = (bank_note or f"data-free: drawn from the {len(pool)} full-precision samples ({opts.sampler} {opts.steps} steps, seed {opts.seed})") + (
        " with repeats" if opts.probes > len(pool) else "")
    timings["bank"] = time.perf_counter() - t0
    return inputs, timings


class _ModelSpace:
    """build_probe_bank encodes a tensor it is given; ours is already in model space (samples, latents)."""

    vae = None


def _bank_from_model_space(x0: torch.Tensor, opts: AuditOptions, lo_hi: tuple[int, int]):
    from .probes import build_probe_bank

    return build_probe_bank(_ModelSpace(), opts.probes, opts.seed, x0, lo_hi, opts.batch_size)


# ---------------------------------------------------------------------------- running the audit
def describe_model(ckpt) -> dict:
    from .info import describe_checkpoint
    from .report.jsonio import to_jsonable

    info = to_jsonable(describe_checkpoint(ckpt))
    info.pop("weight_files", None)
    return info


def audit_checkpoint(ckpt, opts: AuditOptions, progress: Progress | None = None) -> AuditReport:
    """Audit one loaded checkpoint. Deterministic: same checkpoint and options, same numbers."""
    from .denoiser import Denoiser
    from .runtime import seed_everything

    opts = resolve_for(ckpt, opts)
    seed_everything(opts.seed)
    denoiser = Denoiser.from_checkpoint(ckpt)
    inputs, timings = prepare_inputs(denoiser, opts, progress)
    return run_measures(inputs, describe_model(ckpt), timings, progress)


# Exposure runs first: with --data its sampler run is the one that makes the shared samples.
RUN_ORDER = ("exposure", "quantize", "sharpness", "fid")


def run_measures(inputs: AuditInputs, model: dict, timings: dict, progress: Progress | None = None) -> AuditReport:
    """Every area on the shared inputs; an area that fails at run time becomes an 'error' verdict."""
    from . import audit_areas  # noqa: F401 - registers the area runners
    from .probes import bank_losses
    from .runtime import environment
    from .stats import mean_estimate

    opts, bank = inputs.options, inputs.bank
    t0 = time.perf_counter()
    losses = bank_losses(inputs.denoiser, bank, opts.batch_size)
    timings["bank_loss"] = time.perf_counter() - t0
    results: dict[str, Any] = {}
    verdicts: dict[str, Verdict] = {}
    for area in RUN_ORDER:
        if area in opts.skip:
            results[area], verdicts[area] = None, Verdict(area, "skipped", "skipped (--skip)")
            continue
        if inputs.fp_samples is None and area != "exposure" and area in NEEDS_SAMPLES:
            t0 = time.perf_counter()
            inputs.fp_samples = generate_samples(inputs.denoiser, opts, progress)
            inputs.fp_seconds = timings["samples"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            results[area], verdicts[area] = AREA_RUNNERS[area](inputs, results, progress)
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("flatcheck"):
                raise
            results[area], verdicts[area] = None, Verdict(area, "skipped", f"not available in this build ({exc.name} is missing)")
        except RunError as exc:  # a measure that could not finish; bad input (InputError) still stops the audit
            results[area], verdicts[area] = None, Verdict(area, "error", str(exc))
        timings[area] = time.perf_counter() - t0
    if inputs.fp_samples is None:  # every sample-using area skipped: the plot still wants some
        inputs.fp_samples = generate_samples(inputs.denoiser, opts, progress)
    return AuditReport(
        schema_version=SCHEMA_VERSION,
        model=model,
        environment=environment(inputs.denoiser.device),
        options=asdict(opts),
        seeds={"bank": bank.seed, "samples": opts.seed, **{f"{a}": opts.seed for a in AREAS if results.get(a) is not None}},
        bank={"n": len(bank), "seed": bank.seed, "source": bank.source, "t_range": list(bank.t_range), "loss": mean_estimate(losses.double())},
        samples={"n": len(inputs.fp_samples), "seed": opts.seed, "sampler": opts.sampler, "steps": opts.steps},
        verdicts=[verdicts[a] for a in AREAS],
        timings={k: round(v, 3) for k, v in timings.items()},
        _samples=inputs.fp_samples,
        **{a: results[a] for a in AREAS},
    )


NEEDS_SAMPLES = ("quantize", "fid")
AREA_RUNNERS: dict[str, Callable] = {}
