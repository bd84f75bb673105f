"""`flatcheck quantize`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .options import (
    AllowPickleOpt, BatchOpt, DataOpt, DebugOpt, DeviceOpt, DtypeOpt, FeaturesOpt, JsonOpt, ModelArg, NoFidOpt, OutOpt, ProbesOpt,
    RefOpt, SchedulerOpt, SeedOpt, WeightsOpt, console, load_checkpoint,
)

BitsOpt = Annotated[Optional[str], typer.Option("--bits", help="Bit widths, one setting W{b}A{b} each (2-16). Default: 8,6,4.", show_default=False)]
WBitsOpt = Annotated[Optional[str], typer.Option("--wbits", help="Weight widths (2-16 or 'fp'); win over --bits. One width applies to all settings.")]
ABitsOpt = Annotated[Optional[str], typer.Option("--abits", help="Activation widths (2-16 or 'fp'); win over --bits. Alone with --wbits unset: weights stay full precision.")]
BnbOpt = Annotated[Optional[str], typer.Option("--bnb", help="Also run bitsandbytes kernels on the Linear layers: any of int8,nf4,fp4.")]
CalibOpt = Annotated[str, typer.Option("--calibration", help="Activation clipping: minmax, percentile or mse (searched per width).")]
PercentileOpt = Annotated[float, typer.Option("--percentile", help="Percentile for --calibration percentile.")]
FirstLastOpt = Annotated[str, typer.Option("--first-last", help="First/last layer: same (quantized like the rest), 8 (kept at W8A8) or fp.")]
AttentionOpt = Annotated[str, typer.Option("--attention", help="Attention projections (to_q/k/v/out): quant or fp. The attention matmuls stay full precision.")]
SamplesOpt = Annotated[int, typer.Option("--samples", help="Samples per setting, from the same seeds as full precision.")]
StepsOpt = Annotated[int, typer.Option("--steps", help="Sampling steps.")]
SamplerOpt = Annotated[str, typer.Option("--sampler", help="Sampler: ddim (default), checkpoint, ddpm, dpm-solver++, euler, euler-ancestral, heun, pndm, unipc.")]
CalibSamplesOpt = Annotated[int, typer.Option("--calib-samples", help="Full-precision samples whose layer inputs calibrate the activation ranges (other seeds).")]
SensSamplesOpt = Annotated[int, typer.Option("--sensitivity-samples", help="Samples per layer in the per-layer scan (0 skips it).")]
SensStepsOpt = Annotated[int, typer.Option("--sensitivity-steps", help="Sampling steps in the per-layer scan (0: same as --steps).")]
SensSettingOpt = Annotated[Optional[str], typer.Option("--sensitivity-setting", help="Setting the per-layer scan uses (default: the fewest bits).")]


def quantize(
    model: ModelArg = None,
    bits: BitsOpt = None,
    wbits: WBitsOpt = None,
    abits: ABitsOpt = None,
    bnb: BnbOpt = None,
    calibration: CalibOpt = "mse",
    percentile: PercentileOpt = 99.99,
    first_last: FirstLastOpt = "same",
    attention: AttentionOpt = "quant",
    samples: SamplesOpt = 64,
    steps: StepsOpt = 50,
    sampler: SamplerOpt = "ddim",
    calib_samples: CalibSamplesOpt = 32,
    sensitivity_samples: SensSamplesOpt = 8,
    sensitivity_steps: SensStepsOpt = 20,
    sensitivity_setting: SensSettingOpt = None,
    probes: ProbesOpt = 128,
    data: DataOpt = None,
    ref: RefOpt = None,
    features: FeaturesOpt = None,
    fid_weights: WeightsOpt = None,
    no_fid: NoFidOpt = False,
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
    """Generation quality under W/A quantization (default W8A8, W6A6, W4A4): sample drift, probe loss, FD/FID per setting
    (when a reference is known: --ref, or the digits data for the bundled models), and the layers that hurt most."""
    from ..quant.settings import LayerPolicy, settings_from_options
    from ..quantize import QuantizeConfig, check_config, full_precision_samples, measure_quantization

    # Check every option before loading anything: bad input fails fast, with one line.
    config = QuantizeConfig(
        settings=settings_from_options(bits, wbits, abits, bnb),
        policy=LayerPolicy(first_last=first_last.strip().lower(), attention=attention.strip().lower()),
        calibration=calibration.strip().lower(), percentile=percentile, sampler=sampler, steps=steps, samples=samples,
        calib_samples=calib_samples, sensitivity_samples=sensitivity_samples, sensitivity_steps=sensitivity_steps or None,
        sensitivity_setting=sensitivity_setting, seed=seed, batch_size=batch_size, keep_samples=True,
    )
    check_config(config)
    if probes < 1:
        from ..errors import InputError

        raise InputError(f"--probes must be >= 1 (got {probes})")
    from ..sampling import check_sampler_name

    check_sampler_name(sampler)  # a typo fails here, before the model loads
    if any(s.backend == "bnb" for s in config.settings):
        from ..quant.bnb_backend import import_bitsandbytes

        import_bitsandbytes()

    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..denoiser import Denoiser
    from ..probes import build_probe_bank
    from ..report.jsonio import write_json
    from ..report.quantize_view import quantize_report, save_quantize_grids
    from ..runtime import environment, seed_everything

    con = console(json)
    ckpt, dev = load_checkpoint(model, scheduler, device, dtype, allow_pickle)
    seed_everything(seed)
    den = Denoiser.from_checkpoint(ckpt)
    from ..fid.attach import attach_to_quantization, fid_setup

    fid = fid_setup(ckpt, ref, features, fid_weights, dev, batch_size, seed, enabled=not no_fid)  # checked before sampling
    # With --data the bank comes first (a bad path fails before any sampling); data-free, its x0
    # are the full-precision samples the measure compares against anyway.
    bank = build_probe_bank(den, probes, seed, data=data, batch_size=batch_size) if data else None
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} images"),
                  TimeElapsedColumn(), console=con, transient=True) as bar:
        task = bar.add_task("full precision", total=samples)
        t0 = time.perf_counter()
        fp = full_precision_samples(den, config, lambda k: bar.advance(task, k))
        fp_seconds = time.perf_counter() - t0
        if bank is None:
            bank = build_probe_bank(den, probes, seed, data=fp, batch_size=batch_size)
            bank.source = f"data-free: x0 from the {len(fp)} full-precision samples ({sampler}, {steps} steps, seed {seed})"
        task = bar.add_task("quantized", total=None)

        def progress(stage: str, k: int, total: int) -> None:
            bar.update(task, description=stage, total=total, advance=k)

        result = measure_quantization(den, bank, config, progress, fp_samples=fp, fp_seconds=fp_seconds)
        if fid is not None:
            bar.update(task, description="FD/FID per setting", total=None)
            attach_to_quantization(fid, den, result)
    result.model = ckpt.source
    result.environment = environment(dev)
    if out is not None:
        save_quantize_grids(result, out)
    if json:
        write_json(result, json)
    if json != "-":
        con.print(quantize_report(result))
        if out is not None:
            con.print(f"grids written to {out}/ (side-by-side.png, samples-<setting>.png)")


ORDER = 30  # position in `flatcheck --help`


def register(app) -> None:
    app.command()(quantize)
