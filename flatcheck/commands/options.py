"""Options every command shares, and the small helpers the commands use.

Heavy imports (torch, diffusers) stay inside functions so `--help` is fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelArg = Annotated[
    Optional[str],
    typer.Argument(help="Pipeline folder, model folder, Hub repo id or bundled name (default: digits-base).", show_default=False),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N or mps.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Weights and compute dtype: float32, float16 or bfloat16.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random draw; same seed, same numbers.")]
JsonOpt = Annotated[
    Optional[str], typer.Option("--json", metavar="PATH|-", help="Write the machine-readable result to PATH, or to stdout with '-'.")
]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Folder for plots, sample grids and other artifacts.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
AllowPickleOpt = Annotated[
    bool, typer.Option("--allow-pickle", help="Allow pickle weights (.bin/.ckpt/.pt/.pth). Loading a pickle can run arbitrary code.")
]
SchedulerOpt = Annotated[
    Optional[Path],
    typer.Option("--scheduler", help="Scheduler folder (scheduler_config.json) for a bare model folder; overrides the checkpoint's."),
]
# Options of the measures that read data or generate.
DataOpt = Annotated[
    Optional[str],
    typer.Option("--data", help="Reference images: a folder of images, an .npy/.npz array, or 'digits'. Default: data-free (the model's own samples)."),
]
ProbesOpt = Annotated[int, typer.Option("--probes", help="Number of (x0, t, noise) probes in the bank.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Batch size for every forward pass.")]
SamplerOpt = Annotated[
    Optional[str],
    typer.Option("--sampler", help="Sampler: the checkpoint's own (default), or ddpm, ddim, dpm-solver++, euler, euler-ancestral, heun, pndm, unipc."),
]

# FD/FID against a reference (fid, quantize, exposure).
RefOpt = Annotated[
    Optional[str],
    typer.Option("--ref", help="Reference: an image folder, an .npz/.npy of images, a stats .npz (mu, sigma), 'digits', "
                               "or a torch-fidelity dataset (cifar10-train...). Default: digits for the bundled models.",
                 show_default=False),
]
FeaturesOpt = Annotated[
    Optional[str],
    typer.Option("--features", help="Feature network: inception (FID), digits-cnn, clip or dinov2. "
                                    "Default: digits-cnn for the bundled digits models, else inception.", show_default=False),
]
WeightsOpt = Annotated[
    Optional[Path],
    typer.Option("--fid-weights", help="Local feature-network weights (offline): torch-fidelity's Inception .pth or the "
                                       "TorchScript inception-2015-12-05.pt; OpenAI's CLIP .pt; a digits-cnn .safetensors.",
                 show_default=False),
]
NoFidOpt = Annotated[bool, typer.Option("--no-fid", help="Skip FD/FID even when a reference is known.")]


def console(json_dest: Optional[str]):
    from rich.console import Console

    # With --json -, stdout carries only JSON: human output moves to stderr.
    return Console(stderr=json_dest == "-", highlight=False)


def load_checkpoint(model, scheduler, device, dtype, allow_pickle):
    """(Checkpoint, torch.device) from the shared options; InputError on anything wrong."""
    from ..checkpoint import load
    from ..runtime import resolve_device, resolve_dtype

    dev, dt = resolve_device(device), resolve_dtype(dtype)
    return load(model, scheduler=scheduler, dtype=dt, device=dev, allow_pickle=allow_pickle), dev
