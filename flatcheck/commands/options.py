"""The command line's options, each declared once, in groups that commands take whole.

A command declares only its own options; `takes(GROUP, ...)` appends the groups' options to its
signature (typer reads them from there) and hands their values to the command as one namespace
`o` (`o.given`: the names the command line set, as opposed to defaults). Defaults that differ by
command are given to `takes` (e.g. samples=64), not retyped.
Heavy imports (torch, diffusers) stay inside functions so `--help` is fast.
"""

from __future__ import annotations

import enum
import functools
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Optional

import typer

from .destinations import FILE, FOLDER, Writes


@dataclass(frozen=True)
class Opt:
    name: str  # the command function's keyword (= the config or options field it sets)
    annotation: Any  # Annotated[type, typer.Option(...)]
    default: Any


def group(*opts: Opt) -> tuple[Opt, ...]:
    return opts


def choices(name: str, values) -> type[enum.Enum]:
    """An Enum of a config's allowed values (typer lists them in --help and refuses others)."""
    return enum.Enum(name, {str(v): str(v) for v in values}, type=str)


ModelArg = Annotated[
    Optional[str],
    typer.Argument(
        help="Pipeline folder, model folder, Hub repo id or bundled name (default: digits-base).", show_default=False
    ),
]

# Every command.
# For every command (cli.run reads it from argv before any parsing; the option makes --help list it).
DEBUG = group(Opt("debug", Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")], False))
COMMON = group(
    # --device takes cuda:N too, so it stays a string (checked by core.runtime.resolve_device).
    Opt(
        "device",
        Annotated[str, typer.Option("--device", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N or mps.")],
        "auto",
    ),
    Opt(
        "dtype",
        Annotated[
            str,
            typer.Option("--dtype", help="Weights and compute dtype: float32, float16 or bfloat16 (fp32, fp16, bf16)."),
        ],
        "float32",
    ),
    Opt(
        "json",
        Annotated[
            Optional[str],
            typer.Option(
                "--json",
                metavar="PATH|-",
                help="Write the machine-readable result to PATH, or to stdout with '-' "
                "(human output then goes to stderr).",
            ),
            Writes("file", stdout=True),
        ],
        None,
    ),
    Opt(
        "scheduler",
        Annotated[
            Optional[Path],
            typer.Option(
                "--scheduler",
                help="Scheduler folder (scheduler_config.json) for a bare model folder; overrides the checkpoint's.",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt(
        "allow_pickle",
        Annotated[
            bool,
            typer.Option(
                "--allow-pickle",
                help="Allow pickle weights (.bin/.ckpt/.pt/.pth). Loading a pickle can run arbitrary code.",
            ),
        ],
        False,
    ),
    Opt(
        "variant",
        Annotated[
            Optional[str],
            typer.Option(
                "--variant",
                help="Read a weight-file variant (diffusers' variant=, e.g. fp16: "
                "diffusion_pytorch_model.fp16.safetensors). Default: the plain files, or the only variant "
                "a folder holds.",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt(
        "model_config",
        Annotated[
            Optional[Path],
            typer.Option(
                "--model-config",
                help="Configs of a single-file MODEL (one .safetensors in the original layout): a diffusers "
                "pipeline folder of the same model (its tokenizers, and any component the file lacks, are read "
                "from it too), or the denoiser's config folder. Default: flatcheck's bundled configs of the "
                "well-known model the tensor names show (SD 1.x, SD 2.x, SDXL base, SD3 medium, FLUX.1 dev/schnell).",
                show_default=False,
            ),
        ],
        None,
    ),
    # LoRA (core.lora): put on the denoiser after it loads, fused; every measure runs on base+LoRA.
    Opt(
        "lora",
        Annotated[
            Optional[Path],
            typer.Option(
                "--lora",
                help="A LoRA adapter for the denoiser (diffusers/peft .safetensors, or kohya's layout where the "
                "pipeline converts it): every measure runs on base+LoRA. Needs peft.",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt(
        "lora_scale",
        Annotated[float, typer.Option("--lora-scale", help="Strength of --lora: multiplies its alpha/rank.")],
        1.0,
    ),
    *DEBUG,
    Opt(
        "threads",
        Annotated[
            Optional[int],
            typer.Option(
                "--threads",
                help="CPU threads for torch. Default: the CPUs this process may use (affinity mask, cgroup quota) "
                "less the cores other processes kept busy while it started, at least 1, never more than "
                "OMP_NUM_THREADS. Recorded in every report, with the reason.",
                show_default=False,
            ),
        ],
        None,
    ),
    # The fast path (core.fastpath). None: ACCELERATE_MIXED_PRECISION, so `accelerate launch --mixed_precision bf16`
    # just works.
    Opt(
        "mixed_precision",
        Annotated[
            Optional[str],
            typer.Option(
                "--mixed-precision",
                metavar="no|bf16|fp16",
                help="Run the denoiser's forward under autocast to bf16 or fp16; weights stay in --dtype, "
                "losses, Hessian-vector products and sampler steps in float32. Default: "
                "$ACCELERATE_MIXED_PRECISION, else no.",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt(
        "channels_last",
        Annotated[
            bool,
            typer.Option(
                "--channels-last",
                help="Conv weights and inputs in channels_last (NHWC) memory order: faster convs on GPUs, same "
                "numbers; no effect on transformers.",
            ),
        ],
        False,
    ),
    Opt(
        "compile",
        Annotated[
            bool,
            typer.Option(
                "--compile",
                help="torch.compile the denoiser for sampling (no-grad forwards of the unmodified model); falls back "
                "to eager with a warning if compiling fails. Backend: $FLATCHECK_COMPILE_BACKEND, else inductor.",
            ),
        ],
        False,
    ),
)
SEED = group(
    Opt("seed", Annotated[int, typer.Option("--seed", help="Seed for every random draw; same seed, same numbers.")], 0)
)
OUT = group(
    Opt(
        "out",
        Annotated[
            Optional[Path],
            typer.Option("--out", help="Folder for plots, sample grids and other files.", show_default=False),
            FOLDER,
        ],
        None,
    )
)

# The shared inputs of a measure command: the probe bank and the full-precision samples.
DATA = group(
    Opt(
        "data",
        Annotated[
            Optional[str],
            typer.Option(
                "--data",
                help="Reference images: a folder of images, an .npy/.npz array, 'digits', or 'patches'/'patches-test' "
                "(RGB patches); 'none' for data-free (the bank's x0 drawn from the model's own samples). "
                "Default: digits for the bundled digits models, else data-free.",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt("probes", Annotated[int, typer.Option("--probes", help="Number of (x0, t, noise) probes in the bank.")], 128),
)
TIMESTEPS = group(
    Opt(
        "timesteps",
        Annotated[
            Optional[str],
            typer.Option(
                "--timesteps",
                metavar="LO:HI",
                help="Probe timesteps from [LO, HI) (default: the whole schedule).",
                show_default=False,
            ),
        ],
        None,
    )
)
N_SAMPLES = group(
    Opt(
        "samples",
        Annotated[
            int,
            typer.Option(
                "--samples",
                help="Full-precision samples (indices 0..N-1 of --seed); data-free, the bank is drawn from them.",
            ),
        ],
        64,
    )
)
STEPS = group(Opt("steps", Annotated[int, typer.Option("--steps", help="Sampling steps.")], 50))
SAMPLER = group(
    Opt(
        "sampler",
        Annotated[
            Optional[str],
            typer.Option(
                "--sampler",
                help="Sampler: checkpoint (the checkpoint's own scheduler), ddpm, ddim, dpm-solver++, dpm-solver, "
                "euler, euler-ancestral, heun, pndm, unipc.",
            ),
        ],
        "ddim",
    )
)
SAMPLES = N_SAMPLES + STEPS + SAMPLER
# Read the shared samples from a sample folder (fid, quantize, audit).
SAMPLES_FROM = group(
    Opt(
        "samples_from",
        Annotated[
            Optional[Path],
            typer.Option(
                "--samples-from",
                help="Read the full-precision samples from a sample folder (flatcheck sample's OUT/store, fid --out, "
                "--sample-dir) instead of generating them. --steps, --sampler and --seed default to the folder's; "
                "a folder another run made (another model, sampler, step count, seed, conditions, guidance, "
                "sample size or dtype) is refused.",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt(
        "allow_foreign_samples",
        Annotated[
            bool,
            typer.Option(
                "--allow-foreign-samples",
                help="Use a --samples-from folder that another run made (e.g. another model's samples); "
                "the report then names whose samples they are.",
            ),
        ],
        False,
    ),
)
BATCH = group(
    Opt("batch_size", Annotated[int, typer.Option("--batch-size", help="Batch size for every forward pass.")], 64)
)

# Conditions of class- and text-conditioned models (every command that runs the model).
COND = group(
    Opt(
        "labels",
        Annotated[
            Optional[str],
            typer.Option(
                "--labels",
                help="Class-conditional models: class labels the samples cycle through ('3,7', or a file of integers). "
                "Default: each sample's label drawn uniformly from --seed.",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt(
        "prompts",
        Annotated[
            Optional[str],
            typer.Option(
                "--prompts",
                metavar="FILE",
                help="Text-to-image models: prompts, one per line; sample i takes prompt i mod N. "
                "Default: flatcheck's 8 documented prompts (README).",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt(
        "guidance_scale",
        Annotated[
            Optional[float],
            typer.Option(
                "--guidance-scale",
                help="Classifier-free guidance of every sampler run (1: none). "
                "Default: the pipeline's own (e.g. 7.5 for Stable Diffusion, 4 for DiT).",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt(
        "sample_size",
        Annotated[
            Optional[int],
            typer.Option(
                "--sample-size",
                help="Latent side for models whose config has none (Flux); default: the pipeline's (Flux: 128, "
                "i.e. 1024 px).",
                show_default=False,
            ),
        ],
        None,
    ),
)

# FD/FID against a reference (quantize, exposure, fid).
FD = group(
    Opt(
        "ref",
        Annotated[
            Optional[str],
            typer.Option(
                "--ref",
                help="FD/FID reference: an image folder, an .npz/.npy of images, a stats .npz (mu, sigma), 'digits', "
                "'patches', 'patches-test', or a torch-fidelity dataset (cifar10-train...). "
                "Default: the --data images (digits for the bundled models).",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt(
        "features",
        Annotated[
            Optional[str],
            typer.Option(
                "--features",
                "--fid-features",
                help="Feature network for FD/FID: inception (FID), digits-cnn, patches-cnn (RGB patches), clip or "
                "dinov2. Default: digits-cnn for the bundled digits models, else inception.",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt(
        "fid_weights",
        Annotated[
            Optional[Path],
            typer.Option(
                "--fid-weights",
                help="Local feature-network weights (offline): torch-fidelity's Inception .pth or the TorchScript "
                "inception-2015-12-05.pt; OpenAI's CLIP .pt; a digits-cnn or patches-cnn .safetensors.",
                show_default=False,
            ),
        ],
        None,
    ),
)
NO_FID = group(
    Opt("no_fid", Annotated[bool, typer.Option("--no-fid", help="Skip FD/FID even when a reference is known.")], False)
)

# The audit's run: audit, compare and gate (sizes default to the profile's).
PROFILE = group(
    Opt(
        "quick",
        Annotated[
            bool,
            typer.Option(
                "--quick",
                help="CI profile: 64 probes, 64 samples x 10 steps, two quantization settings (about 34 s on a 2-core "
                "CPU for the bundled models).",
            ),
        ],
        False,
    ),
    Opt(
        "full",
        Annotated[
            bool,
            typer.Option(
                "--full",
                help="Paper-grade profile: 50,000 samples x 100 steps, 2048 probes. Needs a GPU (refused on CPU).",
            ),
        ],
        False,
    ),
    Opt(
        "skip",
        Annotated[
            Optional[list[str]],
            typer.Option(
                "--skip",
                help="Skip a measure (sharpness, exposure, quantize, fid); repeatable, or comma-separated.",
                show_default=False,
            ),
        ],
        None,
    ),
)
REPORTS = group(
    Opt(
        "out",
        Annotated[
            Optional[Path],
            typer.Option(
                "--out", help="Folder for audit.json, audit.md, audit.html and the plots.", show_default=False
            ),
            Writes("folder", files=("audit.json", "audit.md", "audit.html"), folders=("plots",)),
        ],
        None,
    ),
    Opt(
        "markdown",
        Annotated[
            Optional[Path],
            typer.Option(
                "--markdown",
                help="Write the Markdown report here (it also goes to $GITHUB_STEP_SUMMARY when that is set).",
                show_default=False,
            ),
            FILE,
        ],
        None,
    ),
    Opt(
        "html",
        Annotated[
            Optional[Path],
            typer.Option("--html", help="Write the self-contained HTML report here.", show_default=False),
            FILE,
        ],
        None,
    ),
)
# The audit's memory options (the plan's advice names them): they set the sharpness measure's config.
MEMORY = group(
    Opt(
        "params",
        Annotated[
            Optional[str],
            typer.Option(
                "--params",
                metavar="GLOBS",
                help="Sharpness measures only these parameters: comma-separated globs on their names "
                "(e.g. 'mid_block.*'); the rest stay fixed. What large denoisers need (see `flatcheck plan`).",
                show_default=False,
            ),
        ],
        None,
    ),
    Opt(
        "gradient_checkpointing",
        Annotated[
            bool,
            typer.Option(
                "--gradient-checkpointing",
                help="Sharpness recomputes activations in its gradients and HVPs, one block at a time: "
                "less memory for large denoisers, about one more forward per pass.",
            ),
        ],
        False,
    ),
)
# A measure command's profiles: the audit's, for this measure alone (measure_command).
MEASURE_PROFILE = group(
    Opt(
        "quick",
        Annotated[
            bool,
            typer.Option(
                "--quick",
                help="The audit's CI profile for this measure: the shared sizes of `audit --quick` (64 probes, 64 "
                "samples x 10 ddim steps) and this measure's quick settings. Options given here win; the others take "
                "the profile's values, not the defaults shown.",
            ),
        ],
        False,
    ),
    Opt(
        "full",
        Annotated[
            bool,
            typer.Option(
                "--full",
                help="The audit's paper-grade profile for this measure (2048 probes, 50,000 samples x 100 steps, this "
                "measure's full settings). Needs a GPU (refused on CPU).",
            ),
        ],
        False,
    ),
)
DRY_RUN = group(
    Opt(
        "dry_run",
        Annotated[
            bool,
            typer.Option(
                "--dry-run",
                help="Print the run's plan (work, memory and time per phase; "
                "see `flatcheck plan`) and exit without running it.",
            ),
        ],
        False,
    )
)
AUDIT_SIZES = {
    "probes": None,
    "samples": None,
    "steps": None,
    "sampler": None,
    "batch_size": None,
}  # None: the profile's


def takes(*groups: tuple[Opt, ...], **defaults):
    """Append the groups' options to a command's signature; the command gets their values as `o`."""
    opts = {o.name: o for g in groups for o in g}
    unknown = set(defaults) - set(opts)
    if unknown:
        raise TypeError(f"defaults for options not taken: {', '.join(sorted(unknown))}")

    def deco(fn):
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values()
            if p.name != "o"
        ]
        annotations = {p.name: p.annotation for p in own} | {o.name: o.annotation for o in opts.values()}
        writes = {name: place for name, ann in annotations.items() if (place := written_place(ann)) is not None}
        # A command that writes Markdown also appends it to $GITHUB_STEP_SUMMARY (report.markdown.write_step_summary).
        summary = "markdown" in writes
        # typer hands the click context to a parameter typed typer.Context (not an option: --help lists none):
        # it says which options the command line gave, which a profile must not override (o.given).
        context = inspect.Parameter(CONTEXT, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=typer.Context)
        extra = []
        for o in opts.values():
            ann = o.annotation
            default = defaults.get(o.name, o.default)
            if default is None and typing.get_origin(ann) is Annotated:  # a default of None needs an Optional type
                base, *meta = typing.get_args(ann)
                ann = Annotated[(Optional[base], *meta)]
            extra.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann))

        @functools.wraps(fn)
        def command(*args, **kwargs):
            ctx = kwargs.pop(CONTEXT, None)
            shared = {name: kwargs.pop(name) for name in opts}
            shared["given"] = given_on_command_line(ctx, [p.name for p in own] + list(opts))
            for k, v in shared.items():
                if isinstance(v, enum.Enum):
                    shared[k] = v.value
            from ..core import dist

            if not dist.is_main():  # one of several processes: only the main one writes files
                for k in ("json", "out", "markdown", "html"):
                    if k in shared:
                        shared[k] = None
                for k in ("out", "markdown", "html", "plot"):
                    if kwargs.get(k) is not None:
                        kwargs[k] = None
            else:  # every place it will write, before any work (the main process writes them all)
                from .destinations import check_all

                check_all({**kwargs, **shared}, writes, summary=summary)
            return fn(*args, **kwargs, o=SimpleNamespace(**shared))

        params = own + extra + [context]
        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return deco


CONTEXT = "flatcheck_context"


def written_place(annotation) -> tuple[str, Writes] | None:
    """(flag, Writes) of an option annotated as a place the command writes; None for any other option."""
    if typing.get_origin(annotation) is not Annotated:
        return None
    meta = typing.get_args(annotation)[1:]
    marker = next((m for m in meta if isinstance(m, Writes)), None)
    info = next((m for m in meta if isinstance(m, typer.models.ParameterInfo)), None)
    if marker is None or info is None:
        return None
    names = [d for d in (info.default, *(info.param_decls or ())) if isinstance(d, str) and d.startswith("--")]
    return names[0], marker


def given_on_command_line(ctx, names) -> frozenset[str]:
    """The parameters among `names` whose value came from the command line (or the environment), not a default.
    Without a context (a command called from Python) every one counts as given."""
    if ctx is None:
        return frozenset(names)
    sources = {name: ctx.get_parameter_source(name) for name in names}
    return frozenset(n for n, src in sources.items() if src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP"))


# ---------------------------------------------------------------------------- helpers
def console(json_dest: Optional[str]):
    from rich.console import Console

    from ..core import dist

    # With --json -, stdout carries only JSON: human output moves to stderr. Of several processes, only the main one
    # prints.
    return Console(stderr=json_dest == "-", highlight=False, quiet=not dist.is_main())


def load_checkpoint(model, o, lora=None, option: str = "--lora"):
    """(Checkpoint, torch.device) from the shared options; InputError on anything wrong. lora: a LoRA file for
    this model instead of --lora (compare's --lora-b, the flag its errors name)."""
    from ..core import dist, fastpath
    from ..core.checkpoint import load, load_keywords
    from ..core.runtime import deterministic_kernels, resolve_device, resolve_dtype
    from ..core.threads import set_threads

    set_threads(o.threads)
    dev, dt = resolve_device(o.device), resolve_dtype(o.dtype)
    fast = fastpath.resolve(o.mixed_precision, o.channels_last, o.compile, dev)  # refused before any weights load
    dist.start(dev)  # under accelerate launch / torchrun: join the process group (a no-op otherwise)
    dev = dist.local_device(dev)
    deterministic_kernels(dev)  # same seed + same GPU: the same numbers (a command sets it for its whole run)
    ckpt = load(model, dtype=dt, device=dev, **load_keywords(o))
    if lora is None:
        lora = getattr(o, "lora", None)
    if lora is not None:  # before the fast path wraps the denoiser: the adapter's layers are the ones it runs
        from ..core.lora import attach

        ckpt.lora = attach(ckpt, lora, getattr(o, "lora_scale", 1.0), allow_pickle=o.allow_pickle, option=option)
    fastpath.attach(ckpt.denoiser, fast)  # the Denoiser built from it computes this way
    return ckpt, dev


def sample_folder_inputs(o, ckpt, also_given=()) -> dict:
    """--samples-from: the shared inputs' keywords for it, after making the folder's step count, seed and
    sampler the run's where neither the command line nor `also_given` (a config table's keys) set them, so
    that the report records the run that made the samples. Whether the folder is this run's is checked
    with the model (core.inputs.SampleSet) before anything runs."""
    if getattr(o, "samples_from", None) is None:
        return {}
    from ..core.sample_store import SampleStore
    from ..core.sampling import sampler_name_for

    spec = SampleStore.read(o.samples_from).spec
    given = set(o.given) | set(also_given)
    if "steps" not in given:
        o.steps = spec.steps
    if "seed" not in given:
        o.seed = spec.seed
    if "sampler" not in given:
        o.sampler = sampler_name_for(spec.sampler, ckpt.scheduler) or o.sampler  # no name: refused by the check
    return dict(samples_from=str(o.samples_from), allow_foreign_samples=o.allow_foreign_samples)


def check_inputs(o, *models) -> None:
    """Every check of a running command that needs no torch, made before anything heavy is imported: the run
    options' spellings, each MODEL as `load` would refuse it (core.checkpoint.check: a Hub id is left to the
    load), and the --data and --ref paths (core.paths). A bad path then fails in about 0.4 s instead of 2.4-3 s
    (the imports), or 10-16 s for --ref and --data, which were read after the model loaded and the run was
    planned (benchmarks/README.md, start-up)."""
    from ..core.checkpoint import check, load_keywords
    from ..core.option_values import check_timesteps
    from ..core.paths import check_data, check_reference

    check_run_options(o)
    for model in models:
        found = check(model, **load_keywords(o))
        if found is not None and getattr(o, "timesteps", None) is not None:  # the schedule's length, from its config
            check_timesteps(o.timesteps, found.scheduler_config, found.scheduler_origin.split(" (")[0])
    check_lora_options(o)
    check_data(getattr(o, "data", None))
    if not getattr(o, "no_fid", False):
        check_reference(getattr(o, "ref", None))


def check_lora_options(o) -> None:
    """--lora (and compare's --lora-b): the file checked without torch; --lora-scale finite."""
    import math

    from ..core.lora import check_file
    from ..errors import InputError

    for name in ("lora", "lora_b"):
        if getattr(o, name, None) is not None:
            check_file(getattr(o, name), o.allow_pickle, option="--" + name.replace("_", "-"))
    scale = getattr(o, "lora_scale", 1.0)
    if not math.isfinite(scale):
        raise InputError(f"--lora-scale must be a finite number (got {scale})")


def check_run_options(o) -> None:
    """For a command that runs no model (info): the options that say how a model runs are checked as
    load_checkpoint checks them, in the same order, short of asking torch whether the device exists or
    autocast works there (that would import torch: 2.5 s and 750 MB here)."""
    from ..core.run_options import check_device_form, dtype_key, mixed_precision_key
    from ..core.threads import check_threads

    check_threads(o.threads)
    check_device_form(o.device)
    dtype_key(o.dtype)
    mixed_precision_key(o.mixed_precision)


def comma_list(spec: str) -> tuple[str, ...]:
    """'avg, worst' -> ('avg', 'worst') (lower case, blanks dropped)."""
    return tuple(s.strip().lower() for s in spec.split(",") if s.strip())


def comma_numbers(spec: str, option: str) -> tuple[float, ...]:
    """'0.01,0.1' -> (0.01, 0.1); InputError naming the option otherwise."""
    from ..errors import InputError

    try:
        return tuple(float(s) for s in spec.split(",") if s.strip())
    except ValueError:
        raise InputError(f"{option} '{spec}' is not a comma list of numbers (e.g. 0.01,0.1)") from None


def profile_name(quick: bool, full: bool) -> str:
    from ..errors import InputError

    if quick and full:
        raise InputError("--quick and --full exclude each other")
    return "quick" if quick else "full" if full else "default"


def audit_options(o, device=None, *, config: dict | None = None, source: str | None = None):
    """AuditOptions from a profile, a config file's [audit] table, then the command line (which wins).

    device: the run's torch.device; None checks the options before anything loads (--full is then refused on a
    CPU only when --device cpu says so). source: the config file, named in the errors of its own tables."""
    from ..auditing import options_for
    from ..errors import InputError

    profile = profile_name(o.quick, o.full)
    table = dict(config or {})
    table_profile = table.pop("profile", None)
    if table_profile is not None and profile == "default":
        profile = table_profile
    if config and source is not None:  # the file's own mistakes, said in its terms before the command line joins in
        try:
            options_for(profile, **_table_options(table))
        except InputError as exc:
            raise InputError(f"{source}: [audit] {exc}") from None
    merged = _table_options(table)
    from_cli = dict(
        seed=o.seed,
        data=o.data,
        probes=o.probes,
        samples=o.samples,
        steps=o.steps,
        sampler=o.sampler,
        timesteps=o.timesteps,
        skip=[a for spec in o.skip or () for a in comma_list(spec)],  # --skip a,b as --skip a --skip b
        batch_size=o.batch_size,
        ref=o.ref,
        fid_features=o.features,
        fid_weights=str(o.fid_weights) if o.fid_weights else None,
        labels=o.labels,
        prompts=o.prompts,
        guidance_scale=o.guidance_scale,
        sample_size=o.sample_size,
    )
    merged.update({k: v for k, v in from_cli.items() if v is not None and v != []})
    memory = {k: getattr(o, k) for k in ("params", "gradient_checkpointing") if getattr(o, k, None)}
    if memory and isinstance(merged.get("sharpness") or {}, dict):  # the sharpness table's, the command line winning
        merged["sharpness"] = {**dict(merged.get("sharpness") or {}), **memory}
    if isinstance(merged.get("skip"), list):
        merged["skip"] = tuple(merged["skip"])
    opts = options_for(profile, **merged)
    check_profile_device(opts.profile, device, o)
    return opts


def check_profile_device(profile: str, device, o=None) -> None:
    """--full on a CPU is refused. device None: before anything loads, refused only when --device cpu says so."""
    from ..errors import InputError

    on_cpu = device.type == "cpu" if device is not None else str(getattr(o, "device", "")).strip().lower() == "cpu"
    if profile == "full" and on_cpu:
        raise InputError(
            "--full generates 50,000 samples and needs a GPU (about a week on a CPU); "
            "use the default profile or --quick here"
        )


# The audit options a profile sizes (PROFILE_SIZES over AuditOptions' defaults) that measure commands take as options.
PROFILE_SIZED = ("probes", "samples", "steps", "sampler", "batch_size")


def measure_profile(o):
    """A measure command's profile: sets o.profile ('quick', 'full' or 'default') and returns the audit's options
    for it (None for the default, which is the command's own defaults, as its --help shows them).

    Under --quick / --full, each shared size the command line did not give (o.given) takes the audit's value for
    that profile, so `flatcheck sharpness --quick` runs on the bank of `flatcheck audit --quick`; the measure's
    own settings follow its Measure.profiles in measure_command."""
    o.profile = profile_name(o.quick, o.full)
    if o.profile == "default":
        return None
    from ..auditing import options_for

    sizes = options_for(o.profile)
    for name in PROFILE_SIZED:
        if hasattr(o, name) and name not in o.given:
            setattr(o, name, getattr(sizes, name))
    return sizes


def from_command_line(o, values: dict, sources: dict | None = None) -> dict:
    """The entries of `values` that a profile may not override: all of them without one (the command's defaults
    are the default profile), else those whose options (sources[key], default: the key itself) were given."""
    if getattr(o, "profile", "default") == "default":
        return dict(values)
    sources = sources or {}
    return {k: v for k, v in values.items() if any(name in o.given for name in sources.get(k, (k,)))}


def _table_options(table: dict) -> dict:
    """A config file's [audit] table as audit options (skip = "fid" means skip = ["fid"]); a value of the wrong
    kind is left for options_for to name."""
    out = dict(table)
    if isinstance(out.get("skip"), str):
        out["skip"] = [out["skip"]]
    if isinstance(out.get("skip"), list):
        out["skip"] = tuple(out["skip"])
    return out


def run_with_progress(con, fn, *args, **kwargs):
    """fn(*args, progress=..., **kwargs) under the one rich progress display."""
    from ..report.progress import progress_display

    with progress_display(con) as progress:
        return fn(*args, progress=progress, **kwargs)


def measure_command(
    name: str,
    model,
    o,
    config: dict,
    *,
    inputs: dict | None = None,
    shared: dict | None = None,
    require_fd: bool = False,
    files=None,
    sources: dict | None = None,
):
    """A measure command: the audit with the other measures skipped (one run path), then the measure's
    own view, the report JSON and its files.

    config: the measure's config fields from the command line; shared: audit options the command
    sets beyond the option groups; inputs: AuditOptions.inputs' keywords (sample folders...);
    require_fd: no reference for FD is an input error; files(report, out) -> command-only files.
    Profile (measure_profile, called by the command first): under --quick / --full, config and shared
    entries whose options were not given (sources: key -> the options that set it) are left to the
    profile (Measure.profiles, PROFILE_SIZES); the report records the profile.
    """
    from ..api import audit as run_audit
    from ..auditing import AREAS, options_for, resolve_for
    from ..errors import InputError, OptionError, RunError
    from ..report.writers import write_measure_outputs

    profile = getattr(o, "profile", "default")
    config = from_command_line(o, config, sources)
    shared = from_command_line(o, shared or {}, sources)

    def given() -> dict:
        values = {
            k: getattr(o, k)
            for k in (
                "seed",
                "batch_size",
                "samples",
                "steps",
                "sampler",
                "data",
                "probes",
                "timesteps",
                "labels",
                "prompts",
                "guidance_scale",
                "sample_size",
            )
            if getattr(o, k, None) is not None
        }
        if hasattr(o, "ref"):
            values.update(
                ref="none" if getattr(o, "no_fid", False) else o.ref,
                fid_features=o.features,
                fid_weights=str(o.fid_weights) if o.fid_weights else None,
            )
        values.update(shared)
        return {k: v for k, v in values.items() if v is not None}

    if getattr(o, "dry_run", False):
        from .planning import plan_command

        return plan_command(model, o, only=name, config=config, given=given(), profile=profile)

    def options():
        try:
            return options_for(profile, skip=tuple(a for a in AREAS if a != name), **given(), **{name: config})
        except OptionError as exc:  # this command's user typed flags, not config keys
            raise exc.flag() from None

    options()  # every option checked before anything loads
    check_profile_device(profile, None, o)
    ckpt, dev = load_checkpoint(model, o)
    check_profile_device(profile, dev)
    inputs = {**(inputs or {}), **sample_folder_inputs(o, ckpt)}
    opts = options()  # a sample folder's steps, seed and sampler where the command line gave none
    if require_fd and resolve_for(ckpt, opts).inputs().fd.ref is None:
        raise InputError(
            "--ref is required for this model (an image folder, .npz of images, stats .npz, "
            "or a torch-fidelity dataset)"
        )
    con = console(o.json)
    report = run_with_progress(
        con, run_audit, ckpt, options=opts, run=dict(inputs=inputs, skipped_line=f"not part of `flatcheck {name}`")
    )
    verdict = report.verdict(name)
    if verdict.status in ("error", "skipped"):
        raise RunError(f"{name}: {verdict.line}")
    out = getattr(o, "out", None)
    extra = files(report, out) if files is not None and out is not None else []
    return write_measure_outputs(report, name, con, json=o.json, out=out, extra_files=extra)


def show_table_document(con, doc: dict, renderable, markdown_text: str, markdown: Optional[Path], json_dest) -> None:
    """The end of compare and rank: print the table, write its Markdown (also to the CI step
    summary) and the JSON document."""
    from ..report.markdown import write_step_summary
    from ..report.writers import write_text
    from ..results import write_json

    con.print(renderable)
    write_step_summary(markdown_text)
    if markdown is not None:
        write_text(markdown, markdown_text)
    if json_dest:
        write_json(doc, json_dest)
