"""`flatcheck sample`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .destinations import Writes
from .options import BATCH, COMMON, COND, SAMPLER, SEED, STEPS, ModelArg, check_inputs, console, load_checkpoint, takes


@takes(COMMON, SEED, COND, STEPS, SAMPLER, BATCH)
def sample(
    model: ModelArg = None,
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder: store/ (resumable samples), png/ (one PNG per sample), samples.npz."),
        Writes("folder", files=("samples.npz",), folders=("store", "png")),
    ] = ...,
    samples: Annotated[
        int,
        typer.Option(
            "--samples", help="Samples 0..N-1 of --seed: the same samples every measure uses with these options."
        ),
    ] = 64,
    png: Annotated[
        bool, typer.Option("--png/--no-png", help="Write one PNG per sample (decoded for latent models).")
    ] = True,
    npz: Annotated[
        bool,
        typer.Option(
            "--npz/--no-npz",
            help="Write samples.npz: uint8 images [N, H, W, C], indices, condition ids (all images in one file).",
        ),
    ] = True,
    o=None,
) -> None:
    """Generate samples and export them (PNG folder, .npz): resumable, with the seeds every measure uses, so fid, quantize and audit can read them (--samples-from OUT/store)."""  # noqa: E501 - the command's --help text, shown with its line breaks
    check_inputs(o, model)  # paths and spellings, before torch is imported
    from ..core.conditioning import ConditionOptions
    from ..core.denoiser import Denoiser
    from ..core.export import export_samples
    from ..core.progress import Counter
    from ..core.sampling import check_run, check_sampler_name, make_sampler
    from ..report.progress import progress_display
    from ..results import document, write_json

    check_sampler_name(o.sampler)
    check_run(o.steps, o.batch_size, samples)
    conditions = ConditionOptions(
        labels=o.labels, prompts=o.prompts, guidance_scale=o.guidance_scale, sample_size=o.sample_size
    ).check()
    ckpt, _ = load_checkpoint(model, o)
    # Under a launcher every process generates its share; the main one writes the folder and exports (core.export).
    den = Denoiser.from_checkpoint(ckpt, conditions)
    con = console(o.json)
    with progress_display(con) as progress:
        result = export_samples(
            den,
            make_sampler(den.scheduler, o.sampler),
            out,
            samples,
            o.seed,
            o.steps,
            o.sampler or "checkpoint",
            o.batch_size,
            png=png,
            npz=npz,
            progress=Counter(progress, "samples", samples).add,
        )
    if o.json:
        write_json(document("sample", result), o.json)
    if o.json != "-":
        con.print(
            f"{result.n} samples ({o.sampler or 'checkpoint'} {o.steps} steps, seed {o.seed}): {result.generated} "
            f"generated now, {result.n - result.generated} already in {result.folder}; "
            + (f"{result.png_written} PNGs written to {result.png_dir}; " if result.png_dir else "")
            + (f"images in {result.npz}" if result.npz else "")
        )
