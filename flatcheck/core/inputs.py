"""What every measure shares, built once per run: the probe bank, the full-precision samples, the FD scorer.

One way to build each:
  bank     x0 from --data (encoded once for latent models) or, data-free, drawn from the shared
           samples (`probes.probe_bank`); timesteps stratified, noise from the bank's seed;
  samples  indices 0..n-1 of the run's seed, sampler and step count (`SampleSet`), made on first
           use - by a measure that watches the run through step hooks when it asks first
           (exposure), else plainly - or read from a sample folder, which must be this very run's
           (model weights, sampler, steps, seed, conditions, shape, dtype) unless the user accepts
           another's (`allow_foreign_samples`: the report then says whose they are);
  scorer   the run's reference and feature network, checked before any sampling (`fd.scorer`).
A single command builds exactly what its one measure uses; the audit builds what all of them use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import InputError, OptionError, at_least, check_bounds
from .denoiser import Denoiser
from .fd.options import FdOptions
from .fd.scorer import Scorer, make_scorer
from .probes import DataPool, ProbeBank, drawn, parse_timesteps, probe_bank, reference_conditions
from .progress import Counter, Progress
from .sampling import check_sampler_name, make_sampler, sample

SAMPLES_TASK = "full-precision samples"


@dataclass(frozen=True)
class InputOptions:
    """How the shared inputs are made (every field is recorded in the report's options)."""

    seed: int = 0
    data: str | None = None  # reference images ('digits', a folder, .npy/.npz); None: data-free
    probes: int = field(default=256, metadata=at_least(1))  # probe bank size
    timesteps: str | None = None  # 'LO:HI' range of the bank's timesteps
    samples: int = field(default=256, metadata=at_least(1))  # full-precision samples
    steps: int = field(default=50, metadata=at_least(1))  # their sampling steps
    sampler: str | None = "ddim"  # None: the checkpoint's own scheduler class
    batch_size: int = field(default=64, metadata=at_least(1))
    sample_dir: str | None = None  # resumable folder the samples are generated into
    # resumable folders under this one, one per run (named by its SampleSpec's digest): `audit --out DIR` keeps
    # its shared samples in DIR/samples/, so a rerun with the same options after a failure does not resample them
    sample_root: str | None = None
    samples_from: str | None = None  # a sample folder to read them from instead of generating
    allow_foreign_samples: bool = False  # read samples_from even when another run made it (another model...)
    fd: FdOptions = field(default_factory=FdOptions)

    def check(self) -> "InputOptions":
        """Every check that needs no model: bad values fail before anything loads."""
        check_bounds(self)
        check_sampler_name(self.sampler)
        if self.sample_dir is not None and self.samples_from is not None:
            raise InputError("give samples_from (read a sample folder) or sample_dir (generate into one), not both")
        return self


class SampleSet:
    """The full-precision samples every measure shares: indices 0..n-1 of one seed, sampler and step count.

    Made once, on first use. `get(hooks)` lets the first user watch that very run through step
    hooks (exposure takes its eps norms on it), so nothing samples the same run twice.
    """

    def __init__(self, denoiser: Denoiser, options: InputOptions, progress: Progress | None = None):
        self.denoiser, self.options, self.progress = denoiser, options, progress
        self.n, self.seed, self.steps, self.sampler = options.samples, options.seed, options.steps, options.sampler
        self.origin: str | None = None  # where the samples came from, once made
        self.folder: dict | None = None  # a folder they were read from: whose samples they are (describe())
        self.seconds: float | None = None  # how long generating them took (None: read, not generated)
        self.plain_seconds: float | None = None  # the same when no hooks slowed the run (a fair time baseline)
        self._x: torch.Tensor | None = None
        if options.samples_from is not None:
            self._read(Path(options.samples_from))

    @property
    def made(self) -> bool:
        return self._x is not None

    def serves(self, sampler: str | None, steps: int, n: int, seed: int) -> bool:
        """True when a run of (sampler, steps, n, seed) is exactly this set (so it can share it), and none of
        it is in a sample folder yet (step hooks watching a resumed run would see only the missing samples)."""
        return (check_sampler_name(sampler), steps, n, seed) == (
            check_sampler_name(self.sampler),
            self.steps,
            self.n,
            self.seed,
        ) and not self._stored()

    def _folder(self) -> Path | None:
        """The resumable folder the samples go to: sample_dir, or this run's own under sample_root."""
        o = self.options
        if o.sample_dir is not None:
            return Path(o.sample_dir)
        if o.sample_root is None:
            return None
        import hashlib
        import json

        from .sample_store import SampleSpec

        spec = SampleSpec.of_run(self.denoiser, make_sampler(self.denoiser.scheduler, o.sampler), o.steps, o.seed)
        digest = hashlib.sha256(json.dumps(spec.to_json(), sort_keys=True).encode()).hexdigest()[:12]
        return Path(o.sample_root) / f"{o.sampler or 'checkpoint'}-{o.steps}-seed{o.seed}-{digest}"

    def _stored(self) -> int:
        """How many of this run's samples its folder holds already (0: no folder, or a new one)."""
        from . import dist
        from .sample_store import MANIFEST, SampleStore

        folder = dist.from_main(self._folder)
        if folder is None or not (folder / MANIFEST).is_file():
            return 0
        return SampleStore.read(folder).count

    def get(self, hooks: Sequence = ()) -> torch.Tensor:
        """The samples [n, *sample_shape] (model space, float32, CPU); generated now if not yet made.

        hooks watch the generating run; asking with hooks once the set is made is an error (the
        run is over), which the caller avoids by checking `made`.
        """
        if self._x is None:
            self._generate(hooks)
        elif hooks:
            raise RuntimeError("the shared samples were already made: step hooks cannot watch them any more")
        return self._x

    def describe(self) -> dict:
        return {
            "n": self.n,
            "seed": self.seed,
            "sampler": self.sampler or "checkpoint",
            "steps": self.steps,
            "origin": self.origin or "not made (no measure used them)",
            **({"folder": self.folder} if self.folder is not None else {}),
        }

    def _generate(self, hooks: Sequence) -> None:
        d, o = self.denoiser, self.options
        scheduler = make_sampler(d.scheduler, o.sampler)
        tick = Counter(self.progress, SAMPLES_TASK, self.n)
        t0 = time.perf_counter()
        from . import dist

        # Of several processes, the main one's folder decides (the others are given no --out: it writes it alone).
        folder = dist.from_main(self._folder)
        if folder is not None:
            from .sample_store import generate, load_everywhere

            before = min(self._stored(), self.n)
            store = generate(
                folder, d, scheduler, o.steps, self.n, o.seed, batch_size=o.batch_size, hooks=hooks, progress=tick.add
            )
            self._x = load_everywhere(store, self.n)
            self.origin = f"generated into {folder} (resumable)"
            if before:  # a rerun after a failure or Ctrl-C: what an earlier run stored is read, not resampled
                self.origin += f"; {before} of {self.n} read from an earlier run"
        else:
            self._x = sample(
                d, scheduler, o.steps, self.n, o.seed, batch_size=o.batch_size, hooks=hooks, progress=tick.add
            )
            self.origin = "generated"
        self.seconds = time.perf_counter() - t0
        self.plain_seconds = None if hooks else self.seconds

    def _read(self, folder: Path) -> None:
        """The first n samples of a folder that this very run would have made (else InputError, unless the
        options accept another run's: then seed, steps and sampler are the folder's and `folder` says whose)."""
        from .sample_store import SampleSpec, SampleStore, mismatch
        from .sampling import sampler_name_for

        store = SampleStore.read(folder)
        if self.n > store.count:
            raise OptionError(
                "samples_from", f"'{folder}' holds {store.count} samples, {self.n} asked (lower --samples)"
            )
        d, o, spec = self.denoiser, self.options, store.spec
        # Before any sample is loaded: a folder another run made would score that run under this model's name.
        want = SampleSpec.of_run(d, make_sampler(d.scheduler, o.sampler), o.steps, o.seed)
        why = mismatch(spec, want, store.made_by)
        if why is not None and not o.allow_foreign_samples:
            raise InputError(
                f"--samples-from '{folder}' holds samples of another run ({why}): use samples of this run "
                "(flatcheck sample with the same options), or --allow-foreign-samples to use them anyway"
            )
        self._x = store.load(self.n)
        self.seed, self.steps = spec.seed, spec.steps
        if why is not None:  # another run's: say its sampler the way --sampler names it, where a name gives it
            self.sampler = sampler_name_for(spec.sampler, d.scheduler) or spec.sampler["class"]
        self.folder = {
            "path": str(folder),
            "model": spec.model,
            "made_by": store.made_by,
            "this_model": want.model,
            "other_run": why,
        }
        self.origin = f"read from {folder}" + (
            f": another run's samples ({why}), used under --allow-foreign-samples" if why is not None else ""
        )


@dataclass
class Inputs:
    """The shared inputs of one run (see the module doc).

    Data-free, the bank is drawn from the shared samples, so it is made when first asked for
    (`bank_pending` until then): a measure that watches the samples' run (exposure) makes them first.
    """

    denoiser: Denoiser
    options: InputOptions
    samples: SampleSet
    scorer: Scorer | None = None
    fd_problem: str | None = None  # why there is no scorer although a reference was asked for (audit only)
    timings: dict[str, float] = field(default_factory=dict)
    _bank: ProbeBank | None = None
    _make_bank: Callable[[], ProbeBank] | None = None

    @property
    def bank(self) -> ProbeBank | None:
        if self._bank is None and self._make_bank is not None:
            self._bank, self._make_bank = self._make_bank(), None
        return self._bank

    @property
    def bank_pending(self) -> bool:
        """True while the bank waits for the shared samples it is drawn from."""
        return self._bank is None and self._make_bank is not None


def build_inputs(
    denoiser: Denoiser,
    options: InputOptions,
    *,
    bank: bool = True,
    progress: Progress | None = None,
    pool: torch.Tensor | None = None,
    pool_note: str | None = None,
    samples: SampleSet | None = None,
    fd_optional: bool = False,
    pool_cond: torch.Tensor | None = None,
) -> Inputs:
    """The run's shared inputs. bank=False skips the probe bank (a measure that needs none).

    pool: data-free, draw the bank from these model-space samples instead of this model's own
    (compare pools every checkpoint's samples so that no checkpoint is favoured), with their condition
    ids in pool_cond for conditional models; samples: this
    model's sample set when it was already made (compare made it for the pool).
    fd_optional: a reference that cannot be scored (e.g. Inception weights offline) leaves the
    run without a scorer, saying why in `fd_problem`, instead of stopping it (the audit: the
    other measures still stand).
    """
    options.check()
    inputs = Inputs(denoiser, options, samples or SampleSet(denoiser, options, progress))
    try:
        inputs.scorer = make_scorer(options.fd, denoiser, denoiser.device, options.batch_size, options.seed)
    except InputError as exc:
        if not fd_optional:
            raise
        inputs.fd_problem = f"not scored: {exc}"
    if not bank:
        return inputs
    lo_hi = parse_timesteps(options.timesteps, denoiser.num_train_timesteps)

    def make(x0: torch.Tensor, source: str, cond: torch.Tensor | None, t0: float) -> ProbeBank:
        made = probe_bank(
            x0,
            options.probes,
            options.seed,
            lo_hi,
            source,
            cond,
            flow_shift=denoiser.training_shift,
            num_train_timesteps=denoiser.num_train_timesteps,
        )
        inputs.timings["bank"] = time.perf_counter() - t0
        return made

    if options.data is not None:
        t0 = time.perf_counter()
        pool = DataPool(denoiser, options.data, options.batch_size)  # only the images the bank draws are read
        cond, how = reference_conditions(denoiser, options.data, len(pool), options.seed)
        source = f"data: {options.data} ({len(pool)} images, {drawn(options.probes, len(pool))})" + (
            f"; conditions: {how}" if how else ""
        )
        inputs._bank = make(pool, source, cond, t0)
        return inputs
    if pool is not None and denoiser.conditioning is not None and pool_cond is None:
        raise InputError("a conditional model's pooled samples need their condition ids")

    def from_pool(pool=pool, pool_cond=pool_cond) -> ProbeBank:
        if pool is None:  # this model's own samples: made now unless a measure made them already
            if not inputs.samples.made:  # (a measure's run that made them is timed as that measure's)
                inputs.samples.get()
                inputs.timings["samples"] = inputs.samples.seconds or 0.0
            pool = inputs.samples.get()
            if denoiser.conditioning is not None:  # each sample's own condition travels with it
                pool_cond = denoiser.conditioning.ids(inputs.samples.seed, range(len(pool)))
        t0 = time.perf_counter()
        o = options
        source = (
            (
                pool_note
                or f"data-free: drawn from the {len(pool)} full-precision samples ({o.sampler} {o.steps} steps, "
                f"seed {o.seed})"
            )
            + (" with repeats" if o.probes > len(pool) else "")
            + ("; each probe keeps its sample's condition" if pool_cond is not None else "")
        )
        return make(pool, source, pool_cond, t0)

    if pool is None and not inputs.samples.made:
        inputs._make_bank = from_pool  # drawn from the shared samples once something makes them
    else:
        inputs._bank = from_pool()
    return inputs
