"""The run's conditions for a loaded checkpoint: class labels for class models, encoded prompts for
text models (core.prompts), none for unconditional ones. Every option is checked against the model
(a label out of range, prompts for a class model, guidance without a null class: one line each)."""

from __future__ import annotations

from ..errors import InputError, OptionError
from .conditioning import DEFAULT_PROMPTS, Conditioning, ConditionOptions, parse_labels, pipeline_default, read_prompts


def build_conditioning(ckpt, info, options: ConditionOptions) -> Conditioning | None:
    """The run's Conditioning for a loaded checkpoint (None for unconditional models)."""
    options.check()
    if info.conditioning == "none":
        for name in ("labels", "prompts"):
            if getattr(options, name) is not None:
                raise OptionError(name, f"{ckpt.denoiser_class} is unconditional: it takes no {name}")
        return None
    if info.conditioning == "class":
        return _class_conditioning(ckpt, info, options)
    if options.labels is not None:
        raise OptionError("labels", f"{ckpt.denoiser_class} is text-conditioned: give --prompts, not --labels")
    from .prompts import encode_prompts

    return encode_prompts(
        ckpt, read_prompts(options.prompts) if options.prompts else DEFAULT_PROMPTS, options.guidance_scale
    )


def _class_conditioning(ckpt, info, options: ConditionOptions) -> Conditioning:
    if options.prompts is not None:
        raise OptionError("prompts", f"{ckpt.denoiser_class} is class-conditional: give --labels, not --prompts")
    k = info.num_classes
    names: tuple[str, ...] = ()
    id2label = ckpt.index.get("id2label")
    if k and isinstance(id2label, dict) and 0 < len(id2label) <= k:  # DiT names its classes: draw among those
        try:
            names = tuple(str(id2label[key]) for key in sorted(id2label, key=int))
            k = len(names)
        except (TypeError, ValueError):
            names = ()
    if not k:
        raise InputError(
            f"{ckpt.denoiser_class} is class-conditional through '{ckpt.denoiser.config.get('class_embed_type')}', "
            "which takes no integer labels: not supported yet"
        )
    given = parse_labels(options.labels) if options.labels is not None else None
    bad = [v for v in given or () if not 0 <= v < k]
    if bad:
        raise OptionError("labels", f"label {bad[0]} is out of range: the model has classes 0..{k - 1}")
    scale, source = _class_guidance(ckpt, info, options.guidance_scale)
    return Conditioning(
        "class", k, scale, null_label=info.null_label, given=given, names=names, guidance_default=source
    )


def _class_guidance(ckpt, info, given: float | None) -> tuple[float, str]:
    if given is not None:
        if given != 1.0 and info.null_label is None:
            raise OptionError(
                "guidance_scale",
                f"{ckpt.denoiser_class} has no null class, so classifier-free guidance is impossible (use 1)",
            )
        return float(given), "--guidance-scale"
    default = pipeline_default(ckpt.pipeline_class, "guidance_scale") if info.null_label is not None else None
    if default is None:
        return (
            1.0,
            "none: the model has no null class" if info.null_label is None else "none: the pipeline has no default",
        )
    return float(default), f"{ckpt.pipeline_class}'s default"
