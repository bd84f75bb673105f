"""`flatcheck fid`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import (
    AllowPickleOpt, BatchOpt, DebugOpt, DeviceOpt, DtypeOpt, FeaturesOpt, JsonOpt, ModelArg, OutOpt, RefOpt, SchedulerOpt, SeedOpt,
    WeightsOpt, console, load_checkpoint,
)

SamplesOpt = Annotated[
    Optional[int],
    typer.Option("--samples", help="Samples to generate and score, default 1000 (all of a --samples-from folder); "
                                   ">= 2048 gives a full-rank Inception covariance.", show_default=False),
]
DEFAULT_SAMPLES = 1000  # ~35 s of DDIM-25 for the bundled models on a 2-core CPU
StepsOpt = Annotated[int, typer.Option("--steps", help="Sampling steps.")]
SamplerOpt = Annotated[str, typer.Option("--sampler", help="Sampler: ddim (default), checkpoint, ddpm, dpm-solver++, euler, euler-ancestral, heun, pndm, unipc.")]
SampleDirOpt = Annotated[
    Optional[Path],
    typer.Option("--sample-dir", help="Resumable sample folder: samples are written there once and reused by later runs "
                                      "(default with --out: OUT/samples-SAMPLER-STEPS).", show_default=False),
]
SamplesFromOpt = Annotated[
    Optional[Path],
    typer.Option("--samples-from", help="Score an existing sample folder (from fid, exposure --save-samples...) instead of generating.",
                 show_default=False),
]
BootstrapOpt = Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples for the interval.")]
KidSubsetOpt = Annotated[Optional[int], typer.Option("--kid-subset-size", help="KID subset size (default: min(1000, half the smaller set)).", show_default=False)]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Recompute the reference statistics (and do not write them to the cache).")]


def fid(
    model: ModelArg = None,
    ref: RefOpt = None,
    features: FeaturesOpt = None,
    fid_weights: WeightsOpt = None,
    samples: SamplesOpt = None,
    steps: StepsOpt = 25,
    sampler: SamplerOpt = "ddim",
    sample_dir: SampleDirOpt = None,
    samples_from: SamplesFromOpt = None,
    bootstrap: BootstrapOpt = 200,
    kid_subset_size: KidSubsetOpt = None,
    no_cache: NoCacheOpt = False,
    batch_size: BatchOpt = 64,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    seed: SeedOpt = 0,
    json: JsonOpt = None,
    out: OutOpt = None,
    allow_pickle: AllowPickleOpt = False,
    debug: DebugOpt = False,
) -> None:
    """FD/FID and KID of the model's samples against a reference, with a bootstrap interval (torch-fidelity features)."""
    from ..errors import InputError
    from ..fid.extractors import FEATURES
    from ..sampling import check_run, check_sampler_name

    # Every cheap check before anything loads.
    check_sampler_name(sampler)
    if samples is None and samples_from is None:
        samples = DEFAULT_SAMPLES
    check_run(steps, batch_size, samples)
    if samples is not None and samples < 2:
        raise InputError(f"--samples must be >= 2 for a Frechet distance (got {samples})")
    if bootstrap < 2:
        raise InputError(f"--bootstrap must be >= 2 (got {bootstrap})")
    if features is not None and features.strip().lower() not in FEATURES:
        raise InputError(f"unknown --features '{features}' (choose from: {', '.join(FEATURES)})")
    if samples_from is not None and sample_dir is not None:
        raise InputError("give --samples-from (score a folder) or --sample-dir (generate into a folder), not both")

    from ..fid.attach import fid_setup, score_pixels, to_pixels
    from ..report.fid_view import fid_table
    from ..report.jsonio import write_json
    from ..runtime import environment, seed_everything

    con = console(json)
    seed_everything(seed)
    ckpt, dev = load_checkpoint(model, scheduler, device, dtype, allow_pickle)
    from ..denoiser import Denoiser

    den = Denoiser.from_checkpoint(ckpt)
    # Reference and feature network are checked (and loaded) before the minutes of sampling.
    setup = fid_setup(ckpt, ref, features, fid_weights, dev, batch_size, seed)
    if setup is None:
        raise InputError("--ref is required for this model (an image folder, .npz of images, stats .npz, or a torch-fidelity dataset)")

    with _Bar(con) as bar:
        if samples_from is not None:
            from ..sample_store import SampleStore

            store = SampleStore.read(samples_from)
            samples = store.count if samples is None else samples
            if samples < 2:
                raise InputError(f"--samples-from '{samples_from}' holds {store.count} sample(s); need at least 2")
            if store.count < samples:
                raise InputError(f"--samples-from '{samples_from}' holds {store.count} samples, {samples} asked (lower --samples)")
            x = store.load(samples)
            sampling = f"from {samples_from}: {store.spec.sampler['class']}, {store.spec.steps} steps, seed {store.spec.seed}"
        else:
            from ..sampling import make_sampler, sample

            sched = make_sampler(den.scheduler, sampler)
            folder = sample_dir if sample_dir is not None else (out / f"samples-{sampler}-{steps}" if out is not None else None)
            bar.start(f"sampling ({sampler}, {steps} steps)", samples)
            if folder is not None:
                from ..sample_store import generate

                x = generate(folder, den, sched, steps, samples, seed, batch_size=batch_size, progress=bar.advance).load(samples)
            else:
                x = sample(den, sched, steps, samples, seed, batch_size=batch_size, progress=bar.advance)
            sampling = f"{sampler}, {steps} steps, seed {seed}" + (f", stored in {folder}" if folder is not None else "")
        if den.vae is not None:  # latent model: score (and show) decoded images
            bar.start("decoding latents", None)
            x = to_pixels(den, x, batch_size)
        bar.start(f"features ({setup.features}) and statistics", None)
        result = score_pixels(setup, x, bootstrap=bootstrap, kid_subset_size=kid_subset_size, use_cache=not no_cache)
    grid = None
    if out is not None:
        from ..images import save_grid

        grid = save_grid(x[:64].clamp(-1, 1), out / "fid-samples.png", nrow=8)
    if json:
        write_json({"model": ckpt.source, "fid": result, "sampling": sampling, "grid": grid, "environment": environment(dev)}, json)
    if json != "-":
        con.print(fid_table(result, ckpt.source, sampling))
        if grid is not None:
            con.print(f"samples: {grid}")


class _Bar:
    """One rich progress bar that stages re-use (transient: gone when the command prints its table)."""

    def __init__(self, con):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=con, transient=True)
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        return self

    def start(self, description: str, total: int | None) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(description, total=total)

    def advance(self, k: int) -> None:
        self.bar.advance(self.task, k)

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)


ORDER = 40  # position in `flatcheck --help`


def register(app) -> None:
    app.command()(fid)
