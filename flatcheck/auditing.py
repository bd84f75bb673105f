"""The audit: every measure in the REGISTRY on one shared probe bank and one set of full-precision samples.

Order of work, each thing computed once:
  1. load the checkpoint, build the Denoiser;
  2. the shared inputs (core.inputs): the probe bank (x0 from --data, or drawn from the shared
     samples when data-free), the sample set (made on first use) and the FD scorer;
  3. each measure in its run order, on those inputs (a measure may be skipped); exposure runs
     first, so with --data its sampler run is the one that makes the shared samples;
  4. one verdict line per measure.
The peak memory of the whole run and of each phase (the shared inputs, each measure, the bank's
losses) goes into the report's environment (`peak_memory`, core.memory.PeakMemory).
A single command (`flatcheck quantize` ...) is this audit with the other measures skipped: one run
path. The result is an `AuditReport`; it never prints. Reports render it (report/), results.py
turns it into the JSON document.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterator

from .core.condition_options import ConditionOptions
from .core.fd.options import FdOptions
from .core.progress import Progress
from .errors import AuditInterrupted, InputError, OptionError, RunError, at_least, check_bounds
from .measures import REGISTRY, Skipped, Verdict
from .measures.base import Items, check_profile, checked_fields
from .results import VERSIONS, to_jsonable

if TYPE_CHECKING:  # torch is imported where the run starts: options are made and checked without it (fast errors)
    import torch

    from .core.inputs import InputOptions, Inputs
    from .core.memory import PeakMemory

SCHEMA_VERSION = VERSIONS["report"]
AREAS = tuple(REGISTRY)
GRID = 64  # samples shown in a report's grid


@dataclass
class AuditOptions:
    """Every option of an audit. A profile fills the sizes; explicit values override the profile.

    `configs` holds per-measure config overrides by measure name ([audit.<measure>] in a config
    file); the report records every measure's whole config after profile and overrides.
    """

    profile: str = "default"
    seed: int = 0
    probes: int = field(default=256, metadata=at_least(1))  # probe bank size
    samples: int = field(
        default=256, metadata=at_least(1)
    )  # full-precision samples (quantize compares against them, FD scores them)
    steps: int = field(default=50, metadata=at_least(1))  # sampling steps
    sampler: str = "ddim"
    batch_size: int = field(default=64, metadata=at_least(1))
    data: str | None = None  # reference images; None = data-free
    timesteps: str | None = None  # 'LO:HI' range of the probe bank
    skip: tuple[str, ...] = ()
    ref: str | None = None  # FD/FID reference; None: the --data images; "none": no FD/FID
    fid_features: str | None = (
        None  # feature network for FD/FID; None: digits-cnn for bundled digits models, else inception
    )
    fid_weights: str | None = None  # local feature-network weights (offline Inception .pth / TorchScript .pt)
    fid_bootstrap: int = field(default=200, metadata=at_least(1))  # bootstrap resamples behind every FD interval
    fid_kid_subsets: int = field(default=100, metadata=at_least(1))
    labels: str | None = None  # class models: '3,7' or a file; None: drawn uniformly from the seed
    prompts: str | None = None  # text models: a file, one prompt per line; None: core.conditioning.DEFAULT_PROMPTS
    guidance_scale: float | None = None  # classifier-free guidance of every sampler run; None: the pipeline's default
    sample_size: int | None = (
        None  # input side (latents) for models without one in their config (Flux); None: the pipeline's
    )
    configs: dict[str, dict] = field(default_factory=dict)  # measure name -> config overrides

    def inputs(
        self,
        *,
        sample_dir: str | None = None,
        sample_root: str | None = None,
        samples_from: str | None = None,
        allow_foreign_samples: bool = False,
        **fd,
    ) -> InputOptions:
        """The shared inputs these options ask for; `fd` sets FdOptions fields no audit option has
        (kid_subset_size, use_cache)."""
        from .core.inputs import InputOptions

        ref = self.data if self.ref is None else None if self.ref.lower() == "none" else self.ref
        fd_options = FdOptions(
            ref=ref,
            features=self.fid_features or "inception",
            weights=self.fid_weights,
            bootstrap=self.fid_bootstrap,
            kid_subsets=self.fid_kid_subsets,
            **fd,
        )
        return InputOptions(
            seed=self.seed,
            data=self.data,
            probes=self.probes,
            timesteps=self.timesteps,
            samples=self.samples,
            steps=self.steps,
            sampler=self.sampler,
            batch_size=self.batch_size,
            sample_dir=sample_dir,
            sample_root=sample_root,
            samples_from=samples_from,
            allow_foreign_samples=allow_foreign_samples,
            fd=fd_options,
        )

    def conditions(self) -> ConditionOptions:
        return ConditionOptions(
            labels=self.labels, prompts=self.prompts, guidance_scale=self.guidance_scale, sample_size=self.sample_size
        )

    def measure_config(self, name: str):
        """The config measure `name` runs with: its defaults, the profile, the shared inputs, the overrides."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        try:
            return REGISTRY[name].make_config(self.profile, shared, self.configs.get(name))
        except OptionError as exc:  # say it the way a config file spells it
            raise exc.named(f"{name}.{exc.option}") from None


# Shared-input sizes per profile (each measure's own sizes are in its package's PROFILES).
PROFILE_SIZES: dict[str, dict[str, Any]] = {
    # CI: about 6 s of measures (110-125 batch-64 forward passes) on a 2-core CPU for the bundled 0.7M-parameter
    # models. 10 sampling steps, not 20: every sampler run (the shared samples, exposure's three runs,
    # quantize's calibration and settings) costs half, and the bundled models keep their order on every
    # gated number (benchmarks/README.md); the eps-norm gap is larger at 10 steps, not hidden.
    "quick": dict(probes=64, samples=64, steps=10, fid_bootstrap=50, fid_kid_subsets=20),
    "default": {},
    # Paper-grade: 50k samples for FID (Heusel et al.); hours of GPU time, days on a CPU.
    "full": dict(probes=2048, samples=50_000, steps=100, batch_size=256),
}


def options_for(profile: str = "default", **overrides) -> AuditOptions:
    """The options of a profile, with explicit (non-None) overrides applied.

    A key named after a measure (sharpness={...}) overrides that measure's config fields.
    """
    check_profile(profile)
    base = replace(AuditOptions(profile=profile), **PROFILE_SIZES[profile])
    fields = set(AuditOptions.__dataclass_fields__) - {"configs", "profile"}
    configs = {k: overrides.pop(k) for k in list(overrides) if k in REGISTRY and overrides[k] is not None}
    bad = [k for k, v in configs.items() if not isinstance(v, dict)]
    if bad:
        raise InputError(
            f"audit option '{bad[0]}' must be a table of {bad[0]} options ([audit.{bad[0]}] in a config file)"
        )
    configs = {k: dict(v) for k, v in configs.items()}
    unknown = set(overrides) - fields
    if unknown:
        raise InputError(
            f"unknown audit option(s): {', '.join(sorted(unknown))} (measure tables: {', '.join(REGISTRY)})"
        )
    try:
        overrides = checked_fields(AuditOptions, {k: v for k, v in overrides.items() if v is not None})
    except OptionError as exc:
        raise InputError(f"audit option '{exc.option}' {exc.problem}") from None
    opts = replace(base, **overrides, configs=configs)
    validate(opts)
    return opts


def validate(opts: AuditOptions) -> None:
    from .core.option_values import check_features, check_sampler_name, parse_timesteps

    check_bounds(opts)
    opts.conditions().check()
    check_sampler_name(opts.sampler)
    parse_timesteps(opts.timesteps, None)  # its form; the schedule's length is checked once the model is located
    check_features(opts.fid_features, opts.fid_weights)
    bad = [a for a in opts.skip if a not in AREAS]
    if bad:
        raise InputError(f"--skip {bad[0]}: no such area (use {', '.join(AREAS)})")
    for name in AREAS:  # every measure's config, checked before anything loads
        if name not in opts.skip:
            opts.measure_config(name)


@dataclass
class AuditReport:
    schema_version: str
    model: dict
    environment: dict
    options: dict
    seeds: dict
    bank: dict | None
    samples: dict
    conditioning: dict | None  # what samples and probes are conditioned on (None: unconditional model)
    verdicts: list[Verdict]
    results: dict[str, Any]  # measure name -> result dataclass (None: skipped or failed)
    timings: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    # measure name -> {"complete": false, "error": line}: a measure that failed or was interrupted (its section)
    incomplete: dict[str, dict] = field(default_factory=dict)
    _samples: Any = (
        None  # images of the first 64 full-precision samples (decoded for latent models), for grids; not in the JSON
    )

    def verdict(self, area: str) -> Verdict:
        return next(v for v in self.verdicts if v.area == area)

    @property
    def complete(self) -> bool:
        """False when a measure of the run failed or was interrupted (its section says what failed)."""
        return not self.incomplete

    def to_dict(self) -> dict:
        """The JSON document `--json` writes (schema `report`), as plain data (null for what is not finite)."""
        from .results import to_jsonable

        return to_jsonable(self)

    def to_json(self, indent: int | None = 2) -> str:
        import json

        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def __json__(self) -> dict:
        """The JSON document: the run's context, then one section per measure (null when not run)."""
        head = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("results", "timings", "artifacts", "incomplete", "_samples")
        }
        return {
            **head,
            **{name: self.incomplete.get(name, self.results.get(name)) for name in AREAS},
            "timings": self.timings,
            "artifacts": self.artifacts,
        }


def resolve_data(ckpt, data: str | None) -> str | None:
    """--data as given; 'none' forces data-free; a bundled digits model defaults to its own training set."""
    from .core.fd import is_bundled_digits

    if data is not None:
        return None if data.lower() == "none" else data
    return "digits" if is_bundled_digits(ckpt) else None


def resolve_for(ckpt, opts: AuditOptions) -> AuditOptions:
    """The options' automatic choices made concrete for this checkpoint (the report records these).

    A bundled digits model's FD reference is its training set even data-free (it ships with scikit-learn).
    """
    from .core.fd import DIGITS_REF, default_features, is_bundled_digits

    ref = opts.ref
    if ref is None and opts.data is not None and opts.data.lower() == "none" and is_bundled_digits(ckpt):
        ref = DIGITS_REF
    return replace(
        opts, data=resolve_data(ckpt, opts.data), ref=ref, fid_features=opts.fid_features or default_features(ckpt)
    )


def describe_model(ckpt) -> dict:
    from .core.info import describe_checkpoint

    info = to_jsonable(describe_checkpoint(ckpt))
    info.pop("weight_files", None)
    lora = getattr(ckpt, "lora", None)
    info["lora"] = to_jsonable(lora.info) if lora is not None else None  # base+LoRA: which adapter, at which scale
    return info


@dataclass
class RunMemory:
    """The peak memory of a run and of its named phases, as `environment.peak_memory` records them.

    `run` is open for the whole run; each phase is a PeakMemory nested in it (core.memory keeps the
    run's peak across the phases' resets). Peaks are absolute: a phase's includes the weights and
    whatever the run held when it began.
    """

    run: PeakMemory
    phases: dict[str, PeakMemory] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        from .core.memory import PeakMemory

        with PeakMemory(self.run.device) as mem:
            yield
        self.phases[name] = mem

    def describe(self) -> dict:
        doc = {
            "kind": self.run.kind,
            "how": self.run.how,
            "run_bytes": self.run.peak_bytes,
            "by_phase": {name: m.peak_bytes for name, m in self.phases.items()},
        }
        if self.run.reserved_peak_bytes is not None:  # CUDA: what the caching allocator held from the driver
            doc["reserved_run_bytes"] = self.run.reserved_peak_bytes
            doc["reserved_by_phase"] = {name: m.reserved_peak_bytes for name, m in self.phases.items()}
        return doc


def selected(opts: AuditOptions) -> list[str]:
    """The measures this run runs, in run order."""
    from .measures import in_run_order

    return in_run_order(opts.skip)


def options_document(opts: AuditOptions) -> dict:
    """The report's `options`: every option, and each run measure's whole config under `configs` (known before
    the run: gate compares a baseline report's with it before auditing)."""
    return {**to_jsonable(opts), "configs": to_jsonable({n: opts.measure_config(n) for n in selected(opts)})}


def report_paths(opts: AuditOptions, skipped: str | None = None) -> dict[str, Items]:
    """What a run with these options puts in its report, known before it runs (gate.check_metric reads it with
    the report schema): each run measure's places (Measure.paths of its config) under its section, the sections
    of the measures it does not run (`skipped`: why, default the skip option), and the probe bank."""
    names = selected(opts)
    out: dict[str, Items] = {}
    for name in AREAS:
        if name not in names:
            out[name] = Items(absent=skipped or f"skipped in this run (skip = {', '.join(opts.skip)})")
        elif REGISTRY[name].paths is not None:
            out.update({f"{name}.{k}": v for k, v in REGISTRY[name].paths(opts.measure_config(name)).items()})
    if not any(REGISTRY[n].uses_bank for n in names):
        out["bank"] = Items(absent="no measure of this run uses the probe bank")
    out["seeds"] = Items(names=("bank", "samples", *names))
    out["environment.peak_memory.by_phase"] = Items(names=("inputs", *names, "bank_loss"))
    return out


def audit_checkpoint(
    ckpt,
    opts: AuditOptions,
    progress: Progress | None = None,
    *,
    inputs: dict | None = None,
    fd_optional: bool | None = None,
    skipped_line: str = "skipped (--skip)",
) -> AuditReport:
    """Audit one loaded checkpoint. Deterministic: same checkpoint and options, same numbers.

    inputs: what a command adds to the shared inputs (AuditOptions.inputs' keywords: sample_dir,
    samples_from, allow_foreign_samples, use_cache ...). fd_optional: whether a reference that cannot be scored (e.g.
    Inception weights offline) only skips FD; default: yes unless --ref was given explicitly
    (then it is an input error, before any sampling). skipped_line: what the verdict of a
    measure that is not run says.
    """
    from .core import inputs as shared_inputs
    from .core import oom
    from .core.denoiser import Denoiser
    from .core.memory import PeakMemory
    from .core.option_values import parse_timesteps
    from .core.runtime import seed_everything
    from .plan import check_fits, summary

    names = selected(opts)
    if fd_optional is None:
        # An implied reference that cannot be scored leaves the other measures standing; when FD is all
        # that runs (flatcheck fid), it is the user's input error.
        fd_optional = opts.ref is None and names != ["fid"]
    oom.reset()  # this audit's out-of-memory backoffs, reported in its environment
    opts = resolve_for(ckpt, opts)
    seed_everything(opts.seed)
    with PeakMemory(_device_of(ckpt)) as run:  # the checkpoint is loaded already: its weights are in every peak
        memory = RunMemory(run)
        with memory.phase("inputs"):
            denoiser = Denoiser.from_checkpoint(ckpt, opts.conditions())
            parse_timesteps(opts.timesteps, denoiser.num_train_timesteps)  # the schedule's length, before any work
            # Before any heavy work: will this run fit? (one line and exit 2 when it will not)
            plan = check_fits(denoiser, opts, fd=opts.inputs().fd.ref is not None, model=ckpt.source)
            built = shared_inputs.build_inputs(
                denoiser,
                opts.inputs(**(inputs or {})),
                bank=any(REGISTRY[n].uses_bank for n in names),
                progress=progress,
                fd_optional=fd_optional,
            )
        return run_measures(
            built, describe_model(ckpt), opts, progress, skipped_line=skipped_line, memory=memory, plan=summary(plan)
        )


def _device_of(ckpt) -> torch.device:
    import torch

    return next((p.device for p in ckpt.denoiser.parameters()), torch.device("cpu"))


def run_measures(
    inputs: Inputs,
    model: dict,
    opts: AuditOptions,
    progress: Progress | None = None,
    *,
    skipped_line: str = "skipped (--skip)",
    memory: RunMemory | None = None,
    plan: dict | None = None,
) -> AuditReport:
    """Every selected measure on the shared inputs; a measure that fails at run time becomes an 'error' verdict.

    memory: the run's peak memory with the phases measured before this (audit_checkpoint's inputs);
    None: the run's peak starts here."""
    from .core.memory import PeakMemory

    with ExitStack() as stack:
        if memory is None:
            memory = RunMemory(stack.enter_context(PeakMemory(inputs.denoiser.device)))
        return _run_measures(inputs, model, opts, progress, skipped_line, memory, plan)


def _run_measures(
    inputs: Inputs,
    model: dict,
    opts: AuditOptions,
    progress: Progress | None,
    skipped_line: str,
    memory: RunMemory,
    plan: dict | None = None,
) -> AuditReport:
    from .core.probes import bank_losses
    from .core.runtime import environment
    from .core.stats import mean_estimate, per_item

    timings: dict[str, float] = {}
    results: dict[str, Any] = {n: None for n in AREAS}
    verdicts = {n: Verdict(n, "skipped", skipped_line) for n in AREAS}
    incomplete: dict[str, dict] = {}
    interrupted: str | None = None
    for name in selected(opts):
        if interrupted is not None:  # Ctrl-C: the measures after the interrupted one do not start
            incomplete[name] = {"complete": False, "error": f"not started: interrupted during {interrupted}"}
            verdicts[name] = Verdict(name, "error", incomplete[name]["error"])
            continue
        measure = REGISTRY[name]
        config = opts.measure_config(name)
        t0 = time.perf_counter()
        with memory.phase(name):
            try:
                results[name] = measure.run(inputs, config, progress)
                verdicts[name] = measure.verdict(results[name])
            except Skipped as exc:
                verdicts[name] = Verdict(name, "skipped", str(exc))
            except ModuleNotFoundError as exc:
                if not (exc.name or "").startswith("flatcheck"):
                    raise
                verdicts[name] = Verdict(name, "skipped", f"not available in this build ({exc.name} is missing)")
            except InputError:  # bad input is found before the work (issue 26): still stops the audit
                raise
            except KeyboardInterrupt:
                interrupted = name
                incomplete[name] = {"complete": False, "error": "interrupted (Ctrl-C)"}
                verdicts[name] = Verdict(name, "error", f"interrupted (Ctrl-C) after {time.perf_counter() - t0:.1f} s")
            except Exception as exc:  # noqa: BLE001 - out of memory, a kernel error: the other measures' work is kept
                if _one_of_several_processes():
                    raise  # the other processes wait in this measure's collectives: stop all of them, as before
                line = failure_line(exc)
                incomplete[name] = {"complete": False, "error": line}
                verdicts[name] = Verdict(name, "error", line)
        timings[name] = time.perf_counter() - t0
    # After the measures: data-free, the bank is drawn from the shared samples, which the first measure
    # (exposure) makes while watching their run. After Ctrl-C nothing more is computed.
    bank, bank_doc = (inputs.bank if interrupted is None or not inputs.bank_pending else None), None
    if bank is not None and interrupted is None:
        t0 = time.perf_counter()
        with memory.phase("bank_loss"):
            losses = bank_losses(inputs.denoiser, bank, opts.batch_size)
        timings["bank_loss"] = time.perf_counter() - t0
        bank_doc = {
            "n": len(bank),
            "seed": bank.seed,
            "source": bank.source,
            "t_range": list(bank.t_range),
            "loss": mean_estimate(losses.double()),
            "loss_definition": inputs.denoiser.loss_definition(),
            # for a gate rule's paired difference against a baseline with the same bank (gate_uncertainty)
            "loss_per_probe": per_item(losses),
        }
    timings = {**inputs.timings, **timings}
    samples = inputs.samples
    grid = (
        inputs.denoiser.pixels(samples.get()[:GRID], opts.batch_size) if samples.made and interrupted is None else None
    )  # inside the run's peak
    report = AuditReport(
        schema_version=SCHEMA_VERSION,
        model=model,
        environment={
            **environment(inputs.denoiser.device),
            **_backoffs(),
            "peak_memory": memory.describe(),
            **({"memory_plan": plan} if plan is not None else {}),
        },
        options=options_document(opts),
        seeds={
            "bank": bank.seed if bank is not None else opts.seed,
            "samples": samples.seed,
            **{n: opts.seed for n in AREAS if results[n] is not None},
        },
        bank=bank_doc,
        samples=samples.describe(),
        conditioning=inputs.denoiser.conditioning.describe() if inputs.denoiser.conditioning is not None else None,
        verdicts=[verdicts[n] for n in AREAS],
        results=results,
        timings={k: round(v, 3) for k, v in timings.items()},
        incomplete=incomplete,
        _samples=grid,
    )
    if interrupted is not None:
        raise AuditInterrupted(report, interrupted)
    return report


def _one_of_several_processes() -> bool:
    from .core import dist

    return dist.world() > 1


def failure_line(exc: BaseException) -> str:
    """What a measure's failure was, in one line (as the CLI says an error)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return "out of GPU memory: lower --batch-size or --probes, or use --dtype bfloat16"
    if isinstance(exc, MemoryError):
        return "out of memory: lower --batch-size or --probes"
    if isinstance(exc, RunError):
        return str(exc)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}".rstrip(": ")


def _backoffs() -> dict:
    """Out-of-memory backoffs of this run (core.oom): where, the batch asked for and the one that fitted."""
    from .core import oom

    done = oom.describe()
    return {"batch_backoff": done} if done else {}


def generate_samples(denoiser, opts: AuditOptions, progress: Progress | None = None) -> torch.Tensor:
    """The full-precision samples an audit with these options shares (made alone, e.g. to check them)."""
    from .core.inputs import SampleSet

    return SampleSet(denoiser, opts.inputs(), progress).get()
