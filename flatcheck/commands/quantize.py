"""`flatcheck quantize`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..measures.quantize.config import (
    ATTENTION_POLICIES,
    FIRST_LAST_POLICIES,
    LORA_PRECISIONS,
    METHODS,
    LayerPolicy,
    settings_from_options,
)
from ..measures.quantize.config import QuantizeConfig as C
from .options import (
    BATCH,
    COMMON,
    COND,
    DATA,
    DRY_RUN,
    FD,
    MEASURE_PROFILE,
    NO_FID,
    OUT,
    SAMPLES,
    SAMPLES_FROM,
    SEED,
    TIMESTEPS,
    ModelArg,
    check_inputs,
    choices,
    measure_command,
    measure_profile,
    takes,
)

Calibration = choices("Calibration", METHODS)
FirstLast = choices("FirstLast", FIRST_LAST_POLICIES)
Attention = choices("Attention", ATTENTION_POLICIES)
LoraPrecision = choices("LoraPrecision", LORA_PRECISIONS)

BitsOpt = Annotated[
    Optional[str],
    typer.Option("--bits", help="Bit widths, one setting W{b}A{b} each (2-16). Default: 8,6,4.", show_default=False),
]
WBitsOpt = Annotated[
    Optional[str],
    typer.Option("--wbits", help="Weight widths (2-16 or 'fp'); win over --bits. One width applies to all settings."),
]
ABitsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--abits",
        help="Activation widths (2-16 or 'fp'); win over --bits. "
        "Alone with --wbits unset: weights stay full precision.",
    ),
]
BnbOpt = Annotated[
    Optional[str],
    typer.Option("--bnb", help="Also run bitsandbytes kernels on the Linear layers: any of int8,nf4,fp4."),
]


@takes(
    COMMON,
    MEASURE_PROFILE,
    DRY_RUN,
    SEED,
    OUT,
    COND,
    DATA,
    TIMESTEPS,
    SAMPLES,
    BATCH,
    FD,
    NO_FID,
    SAMPLES_FROM,
    samples=C.samples,
    steps=C.steps,
    sampler=C.sampler,
)
def quantize(
    model: ModelArg = None,
    bits: BitsOpt = None,
    wbits: WBitsOpt = None,
    abits: ABitsOpt = None,
    bnb: BnbOpt = None,
    calibration: Annotated[
        Calibration,
        typer.Option("--calibration", help="Activation clipping: minmax, percentile or mse (searched per width)."),
    ] = C.calibration,
    percentile: Annotated[
        float, typer.Option("--percentile", help="Percentile for --calibration percentile.")
    ] = C.percentile,
    first_last: Annotated[
        FirstLast,
        typer.Option("--first-last", help="First/last layer: same (quantized like the rest), 8 (kept at W8A8) or fp."),
    ] = LayerPolicy.first_last,
    attention: Annotated[
        Attention,
        typer.Option(
            "--attention",
            help="Attention projections (to_q/k/v/out): quant or fp. The attention matmuls stay full precision.",
        ),
    ] = LayerPolicy.attention,
    calib_samples: Annotated[
        int,
        typer.Option(
            "--calib-samples",
            help="Full-precision samples whose layer inputs calibrate the activation ranges (other seeds).",
        ),
    ] = C.calib_samples,
    sensitivity_samples: Annotated[
        int, typer.Option("--sensitivity-samples", help="Samples per layer in the per-layer scan (0 skips it).")
    ] = C.sensitivity_samples,
    sensitivity_steps: Annotated[
        int, typer.Option("--sensitivity-steps", help="Sampling steps in the per-layer scan (0: same as --steps).")
    ] = C.sensitivity_steps,
    sensitivity_setting: Annotated[
        Optional[str],
        typer.Option("--sensitivity-setting", help="Setting the per-layer scan uses (default: the fewest bits)."),
    ] = None,
    quantize_vae: Annotated[
        bool,
        typer.Option(
            "--quantize-vae",
            help="Latent models: quantize the autoencoder's decoder too (simulated settings), and decode each "
            "setting's samples with it.",
        ),
    ] = False,
    lora_precision: Annotated[
        LoraPrecision,
        typer.Option(
            "--lora-precision",
            help="With --lora: fused quantizes the weights with the LoRA merged in; full quantizes the base and "
            "keeps the adapter in full precision beside it (as deployments that load a LoRA on a quantized base).",
        ),
    ] = C.lora_precision,
    o=None,
) -> None:
    """Generation quality under W/A quantization (default W8A8, W6A6, W4A4): sample drift, probe loss, FD/FID per setting
    (when a reference is known: --ref, or the digits data for the bundled models), and the layers that hurt most."""  # noqa: E501 - the command's --help text, shown with its line breaks
    check_inputs(o, model)  # paths and spellings, before torch is imported
    if LoraPrecision(lora_precision).value != C.lora_precision and o.lora is None:
        from ..errors import InputError

        raise InputError("--lora-precision is about a LoRA: give --lora PATH")
    measure_profile(o)
    # Every cheap check before the model loads: bad input fails fast, with one line.
    settings = settings_from_options(bits, wbits, abits, bnb)
    policy = LayerPolicy(first_last=FirstLast(first_last).value, attention=Attention(attention).value)
    config = dict(
        settings=settings,
        policy=policy,
        calibration=Calibration(calibration).value,
        percentile=percentile,
        calib_samples=calib_samples,
        sensitivity_samples=sensitivity_samples,
        sensitivity_steps=sensitivity_steps or None,
        sensitivity_setting=sensitivity_setting,
        quantize_vae=quantize_vae,
        lora_precision=LoraPrecision(lora_precision).value,
    )
    C(**config, samples=o.samples, steps=o.steps, batch_size=o.batch_size).validate()
    from ..errors import require_at_least

    require_at_least("probes", o.probes, 1)
    if any(s.backend == "bnb" for s in settings):
        from ..measures.quantize import check_bitsandbytes

        check_bitsandbytes()
    # Under --quick / --full the settings and the layer policy are the profile's unless an option that sets them
    # was given.
    sources = {"settings": ("bits", "wbits", "abits", "bnb"), "policy": ("first_last", "attention")}
    return measure_command("quantize", model, o, config, sources=sources)
