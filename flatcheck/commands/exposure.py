"""`flatcheck exposure`."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import (
    AllowPickleOpt, BatchOpt, DataOpt, DebugOpt, DeviceOpt, DtypeOpt, FeaturesOpt, JsonOpt, ModelArg, NoFidOpt, OutOpt, RefOpt,
    SamplerOpt, SchedulerOpt, SeedOpt, WeightsOpt, console, load_checkpoint,
)

StepsOpt = Annotated[str, typer.Option("--steps", help="Sampling steps T', one or a comma-separated list (the paper uses 20,100).")]
ReferenceOpt = Annotated[int, typer.Option("--probes", help="Reference points: data noised by the forward process (and run b's starts).")]
SamplesOpt = Annotated[int, typer.Option("--samples", help="Samples the sampler generates per run (eps norms, drift, scaling check).")]
LinearOpt = Annotated[bool, typer.Option("--linear-scale/--no-linear-scale", help="Also fit and check eps scaling linear in t (one more sampler run).")]
SaveSamplesOpt = Annotated[
    bool, typer.Option("--save-samples", help="Store run (a)'s samples under OUT/samples-SAMPLER-STEPS (a resumable sample folder, e.g. for FID).")
]


def exposure(
    model: ModelArg = None,
    steps: StepsOpt = "20",
    sampler: SamplerOpt = None,
    data: DataOpt = None,
    probes: ReferenceOpt = 128,
    samples: SamplesOpt = 128,
    batch_size: BatchOpt = 64,
    linear_scale: LinearOpt = False,
    save_samples: SaveSamplesOpt = False,
    ref: RefOpt = None,
    features: FeaturesOpt = None,
    fid_weights: WeightsOpt = None,
    no_fid: NoFidOpt = False,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    seed: SeedOpt = 0,
    json: JsonOpt = None,
    out: OutOpt = None,
    allow_pickle: AllowPickleOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Exposure bias (Ning et al.): eps-norm gap between the sampler's inputs and forward-noised data, variance error,
    epsilon scaling that closes the gap (and a rerun checking it), x0-prediction drift, per sampling step; FD/FID of
    each step count's samples when a reference is known (--ref, or the digits data for the bundled models)."""
    from ..errors import InputError
    from ..sampling import check_run, check_sampler_name, parse_steps

    # Every cheap check before the model loads.
    step_list = parse_steps(steps)
    check_sampler_name(sampler)
    check_run(step_list[0], batch_size, samples)
    if probes < 2:
        raise InputError(f"--probes must be >= 2 (got {probes})")
    if save_samples and out is None:
        raise InputError("--save-samples needs --out DIR")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..denoiser import Denoiser
    from ..exposure import ExposureConfig, measure_exposure, work_units
    from ..probes import build_probe_bank
    from ..report.exposure_view import exposure_plot, exposure_table
    from ..report.jsonio import write_json
    from ..runtime import environment

    con = console(json)
    ckpt, dev = load_checkpoint(model, scheduler, device, dtype, allow_pickle)
    den = Denoiser.from_checkpoint(ckpt)
    from ..fid.attach import attach_to_exposure, fid_setup

    fid = fid_setup(ckpt, ref, features, fid_weights, dev, batch_size, seed, enabled=not no_fid)  # checked before sampling
    config = ExposureConfig(steps=step_list, sampler=sampler, samples=samples, batch_size=batch_size, seed=seed,
                            linear_scale=linear_scale, keep_samples=save_samples or fid is not None)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=con, transient=True) as bar:
        task = bar.add_task("reference data", total=None)
        bank = build_probe_bank(den, n=probes, seed=seed, data=data, batch_size=batch_size)
        bar.update(task, description="exposure (network calls x samples)", total=work_units(den, config, len(bank)), completed=0)
        result = measure_exposure(den, bank.x0, config, lambda k: bar.advance(task, k), reference_noise=bank.noise,
                                  reference_source=bank.source)
        if fid is not None:
            bar.update(task, description="FD/FID per step count")
            attach_to_exposure(fid, den, result)
    if save_samples:
        from ..sample_store import SampleSpec, SampleStore
        from ..sampling import make_sampler

        for run in result.runs:
            folder = out / f"samples-{run.sampler}-{run.steps}"
            spec = SampleSpec.of_run(den, make_sampler(den.scheduler, sampler), run.steps, seed)
            store = SampleStore.open(folder, spec, batch_size)
            if store.count == 0:  # same spec, same samples: a folder already filled is left as it is
                for start in range(0, len(run._samples), batch_size):
                    store.add_shard(start, run._samples[start : start + batch_size])
            run.samples_dir = str(folder)
    plot = exposure_plot(result, out / "exposure.png", ckpt.source) if out is not None else None
    if json:
        write_json({"model": ckpt.source, "exposure": result, "plot": plot, "environment": environment(dev)}, json)
    if json != "-":
        con.print(exposure_table(result, ckpt.source))
        if plot is not None:
            con.print(f"plot: {plot}")


ORDER = 20  # position in `flatcheck --help`


def register(app) -> None:
    app.command()(exposure)
