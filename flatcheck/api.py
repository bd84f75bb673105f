"""The Python API: what the command line runs, on a path or on a pipeline held in memory.

    import flatcheck
    report = flatcheck.audit(pipe, profile="quick", prompts="prompts.txt")   # a DiffusionPipeline, or a path
    report.verdicts, report.results["sharpness"], report.to_json()

Stable names (re-exported by `flatcheck`): load, describe, audit, sharpness, exposure, quantize, fid, every_n_steps,
AuditReport, AuditOptions, InputError (bad input: raised before any work), FlatcheckError. Anything else is internal
and may move.

An in-memory model is measured where it is (its device and dtype); for the run its modules are in eval mode with
no gradients asked, and afterwards their train/eval modes, their parameters' requires_grad flags and their
weights are what they were (the measures restore perturbed weights bit for bit). Nothing is written to disk
unless an option asks for it (sample folders, `out`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .errors import FlatcheckError, InputError  # noqa: F401 - part of the API: what bad input raises

if TYPE_CHECKING:  # the API module stays torch-free until a model is run (describe reads configs only)
    from .auditing import AuditOptions, AuditReport

# The components a diffusers pipeline names its denoiser and autoencoder (as model_index.json does).
_DENOISERS = ("unet", "transformer")
_AUTOENCODERS = ("vae", "vqvae")


def load(
    model: Any = None,
    *,
    scheduler=None,
    dtype=None,
    device: str = "cpu",
    allow_pickle: bool = False,
    variant=None,
    model_config=None,
    lora=None,
    lora_scale: float = 1.0,
):
    """A Checkpoint (core.checkpoint) from a path, a Hub id or bundled name (as the command line reads MODEL), an
    in-memory `DiffusionPipeline`, or a Checkpoint as is. Paths are loaded under the command line's rules
    (safetensors only unless allow_pickle, diffusers classes only, no remote code). lora: a LoRA file put on the
    denoiser, fused, at lora_scale (`--lora`); `ckpt.lora.unload()` takes it off again, the base weights bit for
    bit (audit and the measure functions do that themselves)."""
    from .core.checkpoint import Checkpoint
    from .core.checkpoint import load as load_path

    if lora is not None:
        from .core.lora import check_file

        check_file(lora, allow_pickle)  # before any weight is read
    if isinstance(model, Checkpoint):
        ckpt = model
    elif model is None or isinstance(model, (str, Path)):
        ckpt = load_path(
            None if model is None else str(model),
            scheduler=scheduler,
            dtype=dtype,
            device=device,
            allow_pickle=allow_pickle,
            variant=variant,
            model_config=model_config,
        )
    elif hasattr(model, "components") and hasattr(model, "scheduler"):
        ckpt = from_pipeline(model)
    else:
        raise InputError(f"cannot audit a {type(model).__name__}: give a path, a DiffusionPipeline or a Checkpoint")
    if lora is not None:
        from .core.lora import attach

        ckpt.lora = attach(ckpt, lora, lora_scale, allow_pickle=allow_pickle)
    return ckpt


def from_pipeline(pipe):
    """A Checkpoint around the modules of a pipeline held in memory (nothing copied, nothing written)."""
    from .core.checkpoint import Checkpoint

    parts = {k: v for k, v in pipe.components.items() if v is not None}
    name = next((k for k in _DENOISERS if k in parts), None)
    if name is None:
        raise InputError(f"{type(pipe).__name__} has no denoiser component (unet or transformer)")
    vae = next((parts[k] for k in _AUTOENCODERS if k in parts), None)
    # model_index.json's view of the parts: component -> [library, class] (what reports and text encoding read)
    index = {"_class_name": type(pipe).__name__}
    index.update(
        {k: [type(v).__module__.split(".")[0], type(v).__name__] for k, v in parts.items() if k != "scheduler"}
    )
    text = {k: v for k, v in parts.items() if k.startswith(("text_encoder", "tokenizer"))}
    return Checkpoint(
        source=f"<in-memory {type(pipe).__name__}>",
        form="memory",
        root=Path("<in-memory>"),
        pipeline_class=type(pipe).__name__,
        denoiser_component=name,
        denoiser=parts[name],
        scheduler=pipe.scheduler,
        scheduler_origin="the pipeline's scheduler (in memory)",
        vae=vae,
        index=index,
        text_modules=text,
    )


def describe(model: Any = None, **load_options):
    """What a checkpoint is (core.info.CheckpointInfo, what `flatcheck info` prints): from a path's configs and
    weight-file headers without loading anything, or from a loaded or in-memory model."""
    from .core.info import describe_checkpoint, describe_files

    if model is None or isinstance(model, (str, Path)):
        keep = {k: v for k, v in load_options.items() if k in ("scheduler", "allow_pickle", "variant", "model_config")}
        return describe_files(None if model is None else str(model), **keep)
    return describe_checkpoint(load(model, **load_options))


def audit(
    model: Any = None,
    *,
    profile: str = "default",
    skip=(),
    progress=None,
    load_options: dict | None = None,
    options: AuditOptions | None = None,
    run: dict | None = None,
    lora=None,
    lora_scale: float = 1.0,
    **given,
) -> AuditReport:
    """Every measure (those not in `skip`) on one shared probe bank and one sample set: `flatcheck audit` (the
    command line runs this function).

    given: AuditOptions' fields (probes, samples, steps, batch_size, seed, data, prompts, labels, guidance_scale,
    sample_size, ref, ...) and per-measure tables by measure name, e.g. sharpness={"measures": ["hessian"]}, as a
    flatcheck.toml's [audit] and [audit.<measure>] give them; or `options`, an AuditOptions made already. Bad
    options raise InputError before any work. run: audit_checkpoint's keywords (sample folders, ...).
    lora, lora_scale: a LoRA file put on the denoiser for this run (`--lora`), taken off after it."""
    from .auditing import audit_checkpoint, options_for

    opts = options if options is not None else options_for(profile, skip=tuple(skip), **given)  # before any loading
    _check_data_files(opts)
    load_options = dict(load_options or {})
    if lora is not None:
        load_options.update(lora=lora, lora_scale=lora_scale)
    ckpt = load(model, **load_options)
    try:
        with _measured(ckpt):
            return audit_checkpoint(ckpt, opts, progress, **(run or {}))
    finally:
        if load_options.get("lora") is not None:  # put on by this call: taken off, the weights as they were
            ckpt.lora.unload()
            ckpt.lora = None


def _check_data_files(opts: AuditOptions) -> None:
    """The data and reference files and folders the run reads, checked as the command line checks them (their
    content: NaN, shape, range, a damaged archive) before the model loads: InputError, not a LinAlgError after
    the whole run."""
    from .core.paths import check_data, check_reference

    check_data(opts.data)
    if "fid" not in opts.skip:
        check_reference(opts.ref)


def _one(name: str) -> Callable[..., AuditReport]:
    def run(
        model: Any = None,
        *,
        profile: str = "default",
        progress=None,
        load_options: dict | None = None,
        lora=None,
        lora_scale: float = 1.0,
        **options,
    ) -> AuditReport:
        from .auditing import AREAS, AuditOptions

        config = {k: options.pop(k) for k in list(options) if k not in AuditOptions.__dataclass_fields__}
        return audit(
            model,
            profile=profile,
            skip=tuple(a for a in AREAS if a != name),
            progress=progress,
            load_options=load_options,
            lora=lora,
            lora_scale=lora_scale,
            **options,
            **({name: config} if config else {}),
        )

    run.__name__ = run.__qualname__ = name
    run.__doc__ = (
        f"`flatcheck {name}`: the audit with {name} alone (one run path). Shared options as audit's; "
        f"the {name} config's fields may be given directly (e.g. those of flatcheck.toml's [audit.{name}])."
    )
    return run


sharpness = _one("sharpness")
exposure = _one("exposure")
quantize = _one("quantize")
fid = _one("fid")


def every_n_steps(n: int, on_report: Callable[[int, AuditReport], Any] | None = None, **audit_options):
    """A training-loop callback: `check = flatcheck.every_n_steps(500, profile="quick", skip=["fid"])`, then
    `check(step, pipe)` in the loop audits the in-memory pipeline at every n-th step (returning its report; None
    at the others) and hands it to `on_report(step, report)`. The model is left as it was (modes, flags, weights).
    """
    from .auditing import options_for
    from .errors import require_at_least

    require_at_least("n", n, 1)
    options_for(
        audit_options.get("profile", "default"),
        **{k: v for k, v in audit_options.items() if k not in ("profile", "progress", "load_options")},
    )

    def check(step: int, pipe) -> AuditReport | None:
        if step % n:
            return None
        report = audit(pipe, **audit_options)
        if on_report is not None:
            on_report(step, report)
        return report

    return check


@contextlib.contextmanager
def _measured(ckpt) -> Iterator[None]:
    """The checkpoint's modules in eval mode without gradients for the run; their modes and flags restored after
    (a model held by a training loop goes back to training as it was)."""
    import torch

    modules = [
        m
        for m in (ckpt.denoiser, ckpt.vae, *(getattr(ckpt, "text_modules", None) or {}).values())
        if isinstance(m, torch.nn.Module)
    ]
    modes = [[(sub, sub.training) for sub in m.modules()] for m in modules]
    flags = [[(p, p.requires_grad) for p in m.parameters()] for m in modules]
    try:
        for m in modules:
            m.eval().requires_grad_(False)
        yield
    finally:
        for saved in modes:
            for sub, training in saved:
                sub.training = training
        for saved in flags:
            for p, flag in saved:
                p.requires_grad_(flag)
