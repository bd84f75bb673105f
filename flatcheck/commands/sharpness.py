"""`flatcheck sharpness`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .options import (
    AllowPickleOpt, BatchOpt, DataOpt, DebugOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelArg, OutOpt, ProbesOpt,
    SchedulerOpt, SeedOpt, console, load_checkpoint,
)

MeasuresOpt = Annotated[str, typer.Option("--measures", help="Comma list of: avg (average case), worst (worst case), hessian (top eigenvalues + trace), landscape (filter-normalised 1-D/2-D).")]
NormsOpt = Annotated[str, typer.Option("--norms", help="Comma list of: adaptive (each weight moves ~r of itself; ASAM), absolute (isotropic, |delta| = r |theta|; SAM).")]
RadiiOpt = Annotated[Optional[str], typer.Option("--radii", help="Comma list of relative radii r > 0, for both the average and the worst case (default: average 0.003,0.01,0.03,0.1,0.3; worst 3e-5,1e-4,3e-4,1e-3,3e-3 - an ascent direction moves the loss at ~100x smaller radii than a random one).", show_default=False)]
WorstRadiiOpt = Annotated[Optional[str], typer.Option("--worst-radii", help="Comma list of radii for the worst case only (overrides --radii there).", show_default=False)]
TimestepsOpt = Annotated[Optional[str], typer.Option("--timesteps", metavar="LO:HI", help="Probe timesteps from [LO, HI) (default: the whole schedule).", show_default=False)]


def sharpness(
    model: ModelArg = None,
    data: DataOpt = None,
    probes: ProbesOpt = 128,
    timesteps: TimestepsOpt = None,
    measures: MeasuresOpt = "avg,worst,hessian,landscape",
    norms: NormsOpt = "adaptive,absolute",
    radii: RadiiOpt = None,
    worst_radii: WorstRadiiOpt = None,
    draws: Annotated[int, typer.Option("--draws", help="Gaussian perturbations per radius (average case), each as a +-delta pair; the ± is over them.")] = 4,
    ascent_steps: Annotated[int, typer.Option("--ascent-steps", help="Projected gradient ascent steps (worst case); 1 = SAM/ASAM's one-step estimate.")] = 3,
    buckets: Annotated[int, typer.Option("--buckets", help="Timestep buckets for the breakdown.")] = 4,
    block_radius: Annotated[float, typer.Option("--block-radius", help="Radius of the per-block average case (down/mid/up...).")] = 0.1,
    hessian_probes: Annotated[int, typer.Option("--hessian-probes", help="Probes (spread over the bank's timesteps) in the Hessian sub-bank.")] = 32,
    top_k: Annotated[int, typer.Option("--top-k", help="Top Hessian eigenvalues (Lanczos).")] = 3,
    lanczos_iters: Annotated[int, typer.Option("--lanczos-iters", help="At most this many HVPs for the eigenvalues.")] = 20,
    tol: Annotated[float, typer.Option("--tol", help="Eigenvalues stop at residual bound <= tol x |eigenvalue|.")] = 1e-3,
    hutchinson_draws: Annotated[int, typer.Option("--hutchinson-draws", help="Rademacher draws for the Hessian trace (the ± is over them).")] = 16,
    landscape_probes: Annotated[int, typer.Option("--landscape-probes", help="Probes in the landscape sub-bank.")] = 64,
    landscape_span: Annotated[float, typer.Option("--landscape-span", help="Landscape axes run over [-span, span] (1 = a step as large as each filter).")] = 1.0,
    landscape_points: Annotated[int, typer.Option("--landscape-points", help="Points of the 1-D curve.")] = 21,
    landscape_grid: Annotated[int, typer.Option("--landscape-grid", help="Points per axis of the 2-D surface (0: no surface).")] = 9,
    batch_size: BatchOpt = 64,
    seed: SeedOpt = 0,
    json: JsonOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    scheduler: SchedulerOpt = None,
    allow_pickle: AllowPickleOpt = False,
    debug: DebugOpt = False,
) -> None:
    """How flat is the denoiser's training loss around its weights: average- and worst-case sharpness over a sweep of radii, Hessian top eigenvalues and trace, filter-normalised landscapes, broken down by timestep bucket and by block. Every measure shares one seeded probe bank; weights are restored bit for bit.

    Radii r are relative: |delta| ~ r |theta| (absolute norm), or each weight moved by ~r of itself (adaptive).

    Defaults, chosen by measurement on the bundled digits models: 128 probes; average case 5 radii x 2 norms x 4 antithetic pairs; worst case 5 radii x 2 norms x 3 ascent steps; per-block average case at r = 0.1; Lanczos <= 20 HVPs (tolerance 1e-3) and 16 Hutchinson draws on a 32-probe sub-bank; 21-point curve and 9x9 surface on a 64-probe sub-bank. Data-free by default (the bank's x0 are the model's own DDIM samples); --data digits skips that sampling."""
    from ..errors import InputError
    from ..sharpness import SharpnessConfig

    config = SharpnessConfig(
        measures=_names(measures, "--measures"), norms=_names(norms, "--norms"),
        radii=_floats(radii, "--radii") if radii is not None else SharpnessConfig.radii,
        worst_radii=(_floats(worst_radii, "--worst-radii") if worst_radii is not None
                     else _floats(radii, "--radii") if radii is not None else SharpnessConfig.worst_radii),
        draws=draws, ascent_steps=ascent_steps, buckets=buckets, block_radius=block_radius,
        hessian_probes=hessian_probes, top_k=top_k, lanczos_iters=lanczos_iters, tol=tol,
        hutchinson_draws=hutchinson_draws, landscape_probes=landscape_probes, landscape_span=landscape_span,
        landscape_points=landscape_points, landscape_grid=landscape_grid, batch_size=batch_size, seed=seed,
    ).validate()
    if probes < 1:
        raise InputError(f"--probes must be >= 1 (got {probes})")

    from ..denoiser import Denoiser
    from ..probes import build_probe_bank, parse_timesteps
    from ..report.jsonio import write_json
    from ..report.sharpness_view import save_arrays, save_plots, sharpness_tables
    from ..runtime import environment, seed_everything
    from ..sharpness import measure_sharpness

    con = console(json)
    seed_everything(seed)
    ckpt, dev = load_checkpoint(model, scheduler, device, dtype, allow_pickle)
    den = Denoiser.from_checkpoint(ckpt)
    t_range = parse_timesteps(timesteps, den.num_train_timesteps)
    with con.status("building the probe bank" + (" (data-free: sampling the model)" if data is None else "")):
        bank = build_probe_bank(den, n=probes, seed=seed, data=data, timesteps=t_range, batch_size=batch_size)
    with _progress(con) as tick:
        result = measure_sharpness(den, bank, config, progress=tick)
    plots = []
    if out is not None:
        plots = save_plots(result, out, ckpt.source)
        save_arrays(result, out / "sharpness.npz")
    if json:
        write_json({"model": ckpt.source, "environment": environment(dev), **_fields(result)}, json)
    for table in sharpness_tables(result, ckpt.source, plots, out):  # on stderr with --json -
        con.print(table)


def _names(spec: str, option: str) -> tuple[str, ...]:
    return tuple(s.strip().lower() for s in spec.split(",") if s.strip())


def _floats(spec: str, option: str) -> tuple[float, ...]:
    from ..errors import InputError

    try:
        return tuple(float(s) for s in spec.split(",") if s.strip())
    except ValueError:
        raise InputError(f"{option} '{spec}' is not a comma list of numbers (e.g. 0.01,0.1)") from None


def _fields(result) -> dict:
    import dataclasses

    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}


class _progress:
    """Rich progress bars, one per stage, driven by the measure's progress(stage, done, total) callback."""

    LABELS = {
        "average": "average case", "blocks": "per-block average case", "worst": "worst case (gradient ascent)",
        "hessian": "Hessian eigenvalues (Lanczos)", "hutchinson": "Hessian trace (Hutchinson)",
        "landscape": "loss landscape",
    }

    def __init__(self, con):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=con, transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.bar.start()
        return self.tick

    def tick(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            for other in self.tasks.values():  # stages run one after the other: close the previous one
                t = self.bar.tasks[other]
                self.bar.update(other, total=t.completed)
            self.tasks[stage] = self.bar.add_task(self.LABELS.get(stage, stage), total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc):
        for other in self.tasks.values():
            t = self.bar.tasks[other]
            self.bar.update(other, total=t.completed)
        self.bar.stop()
        return False


ORDER = 10


def register(app) -> None:
    app.command()(sharpness)
