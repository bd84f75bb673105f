"""The plan of a command's run, printed instead of running it: `flatcheck plan` and every `--dry-run`.

No weights are loaded for the plan itself: the checkpoint's modules are built on the meta device from
their configs (text encoders too: the conditions' shapes come from the pipeline's own encode_prompt),
so an SDXL or Flux plan is made on any machine. Only the time estimate loads the real denoiser, to
time one forward and one forward + backward, and only when its weights fit.
"""

from __future__ import annotations

import dataclasses


def plan_device(name: str, memory: str | None):
    """The device to plan for: any device this machine has; a CUDA device it has not, with --memory."""
    import torch

    from ..core.runtime import resolve_device
    from ..errors import InputError

    try:
        return resolve_device(name), True
    except InputError:
        if memory is not None and (name or "").strip().lower().startswith("cuda"):
            return torch.device("cuda"), False  # planned for a GPU elsewhere: no timing, its memory as given
        raise


def plan_command(
    model,
    o,
    *,
    only: str | None = None,
    memory: str | None = None,
    timing: bool = True,
    config: dict | None = None,
    given: dict | None = None,
    audit_options=None,
    profile: str = "default",
) -> int:
    """Plan the audit (or one measure: `only`, with its command's config and shared options), print it,
    write --json; exit 0 when it fits, 1 when it does not. audit_options(device) -> AuditOptions: the
    audit's options from the command line (flatcheck plan, audit --dry-run); a measure command's
    --dry-run gives its `config`, shared options (`given`) and `profile` instead."""
    from rich.console import Console

    from ..auditing import AREAS, options_for, resolve_for
    from ..core.checkpoint import load
    from ..core.denoiser import Denoiser
    from ..core.option_values import parse_timesteps
    from ..core.runtime import resolve_dtype
    from ..core.threads import set_threads
    from ..errors import InputError, OptionError
    from ..plan import available_memory, calibrate, parse_size, plan_run
    from ..report.plan_view import plan_renderable
    from ..results import document, write_json

    set_threads(o.threads)
    device, here = plan_device(o.device, memory)
    dtype = resolve_dtype(o.dtype)
    from ..core.checkpoint import load_keywords

    meta = load(model, dtype=dtype, device="meta", **load_keywords(o))
    lora = getattr(o, "lora", None)
    if lora is not None:  # the plan counts the adapter on its layers (core.lora.adapter_parameters), unfused
        from ..core.lora import planned_targets

        meta.denoiser.flatcheck_lora_targets = tuple(planned_targets(meta, lora, o.allow_pickle))
    if only is not None and only not in AREAS:
        raise InputError(f"--only {only}: no such measure (use {', '.join(AREAS)})")
    if given is not None:  # a measure command's --dry-run: its own config and shared options
        try:
            opts = options_for(profile, skip=tuple(a for a in AREAS if a != only), **given, **{only: config or {}})
        except OptionError as exc:
            raise exc.flag() from None
    else:  # flatcheck plan / audit --dry-run: the audit's options (--only: the others skipped)
        opts = audit_options(device)
        if only is not None:
            opts = dataclasses.replace(opts, skip=tuple(a for a in AREAS if a != only))
    opts = resolve_for(meta, opts)
    den = Denoiser.from_checkpoint(meta, opts.conditions())
    parse_timesteps(opts.timesteps, den.num_train_timesteps)  # a config table's range too, against the schedule
    available = (parse_size(memory), "--memory") if memory is not None else available_memory(device)
    fd = opts.inputs().fd.ref is not None

    def make(calibration=None):
        return plan_run(
            den, opts, device=device, available=available, fd=fd, model=meta.source, calibration=calibration
        )

    plan = make()
    if timing and here and plan.baseline_bytes + plan.weights_bytes < available[0]:
        real = load(model, dtype=dtype, device=device, **load_keywords(o))
        if lora is not None:  # --params lora timed on the adapted layers' weights, as the plan counts them
            real.denoiser.flatcheck_lora_targets = meta.denoiser.flatcheck_lora_targets
        timed = Denoiser(real.denoiser, real.scheduler, real.vae, den.conditioning, sample_size=den.sample_shape[-1])
        from ..core.params import measured_parameters

        sharp = opts.configs.get("sharpness", {}).get("params")
        params = [p for _, p in measured_parameters(real.denoiser, sharp)] or None
        plan = make(calibrate(timed, opts.batch_size, params))
        del real, timed
    con = Console(stderr=o.json == "-", highlight=False)
    if o.json:
        write_json(document("plan", plan), o.json)
    if o.json != "-":
        con.print(plan_renderable(plan))
    return 0 if plan.fits else 1
