"""Prompts -> the text conditions of a text-to-image denoiser, through the pipeline's own encoders.

The pipeline's text encoders and tokenizers are loaded from the checkpoint folder under the same
rules as every other weight (safetensors only unless --allow-pickle, classes of `transformers` only,
no remote code), the prompts and the null prompt are encoded once with the pipeline's own
`encode_prompt` (so SDXL's zeroed null prompt, CLIP skip defaults, T5 masks... are exactly the
pipeline's), and the encoders are released: they are not part of what flatcheck measures.

Which pipelines encode prompts, and what their denoiser takes besides x_t and t, is each family's
(flatcheck.families: `Family.pipelines` and `Family.encode_prompts`).
"""

from __future__ import annotations

import inspect

import torch

from ..errors import InputError
from ..families import family_of_network
from .conditioning import Conditioning, pipeline_default


def load_text_components(ckpt) -> dict:
    """component name -> loaded tokenizer or text encoder (float32, the checkpoint's device); a pipeline held in
    memory hands its own (flatcheck.api)."""
    if ckpt.text_modules is not None:
        return dict(ckpt.text_modules)
    if getattr(ckpt, "single_file", None) is not None:
        from .single_file import load_text

        return load_text(ckpt)  # encoders from the file, tokenizers from --model-config (same rules)
    import transformers
    from transformers.utils import logging as tf_logging

    from .checkpoint import choose_variant, weight_files
    from .files import read_json

    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()  # "Loading weights" bars are not flatcheck's output
    try:
        return _load_text(ckpt, transformers, read_json, weight_files, choose_variant)
    finally:
        if bars:
            tf_logging.enable_progress_bar()


def _load_text(ckpt, transformers, read_json, weight_files, choose_variant) -> dict:
    out = {}
    for name, cls_name in ckpt.text_components.items():
        library = ckpt.index[name][0]
        folder = ckpt.root / name
        if library != "transformers":
            raise InputError(
                f"{ckpt.root / 'model_index.json'}: {name} comes from '{library}', not transformers: never loaded"
            )
        cls = getattr(transformers, str(cls_name), None)
        is_model = cls is not None and isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)
        is_tok = cls is not None and isinstance(cls, type) and issubclass(cls, transformers.PreTrainedTokenizerBase)
        if not (is_model or is_tok):
            raise InputError(
                f"{ckpt.root / 'model_index.json'} names '{cls_name}' for {name}: not a transformers model or tokenizer"
            )
        if not folder.is_dir():
            raise InputError(f"the pipeline lists {name} but '{folder}' does not exist")
        try:
            if is_model:
                variant = choose_variant(folder, ckpt.variant)
                files = weight_files(folder, name, ckpt.allow_pickle, variant)
                config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
                if config.get("auto_map"):
                    raise InputError(f"'{folder / 'config.json'}' asks for remote code (auto_map): never run")
                if _on_meta(ckpt):  # a memory plan: the encoder's shapes, no weights read
                    import torch

                    conf = cls.config_class.from_pretrained(folder, local_files_only=True)
                    with torch.device("meta"):
                        obj = cls(conf)
                else:
                    obj = cls.from_pretrained(
                        folder, local_files_only=True, use_safetensors=files[0].format == "safetensors", variant=variant
                    )
                obj = obj.to(ckpt.denoiser.device).eval().requires_grad_(False)
            else:
                obj = cls.from_pretrained(folder, local_files_only=True)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot load {name} from '{folder}': {str(exc).splitlines()[0][:300]}") from exc
        out[name] = obj
    return out


def _on_meta(ckpt) -> bool:
    return next(ckpt.denoiser.parameters()).device.type == "meta"


def _pipeline(ckpt, text: dict, pipelines: tuple[str, ...]):
    """The checkpoint's pipeline object around the already loaded parts (nothing else is loaded)."""
    import diffusers

    cls = getattr(diffusers, ckpt.pipeline_class or "", None)
    if ckpt.pipeline_class not in pipelines or cls is None:
        raise InputError(
            f"text conditioning of {ckpt.denoiser_class} in a {ckpt.pipeline_class or 'bare folder'} "
            "is not supported yet "
            f"(supported: {', '.join(pipelines)})"
        )
    params = inspect.signature(cls.__init__).parameters
    parts = {ckpt.denoiser_component: ckpt.denoiser, "scheduler": ckpt.scheduler, **text}
    if "vae" in params:
        parts["vae"] = ckpt.vae
    for name, p in params.items():
        if name != "self" and name not in parts and p.default is inspect.Parameter.empty:
            parts[name] = None  # safety checker, feature extractor, image encoder: not used here
    if "requires_safety_checker" in params:
        parts["requires_safety_checker"] = False
    return cls(**parts)


@torch.no_grad()
def encode_prompts(ckpt, prompts: tuple[str, ...], guidance_scale: float | None) -> Conditioning:
    """A text Conditioning: one table row per prompt plus the null prompt as the last row."""
    if ckpt.pipeline_class is None:
        raise InputError(
            f"'{ckpt.root}' is a bare {ckpt.denoiser_class} folder: a text-conditioned model needs its pipeline "
            "folder (model_index.json, text encoders, tokenizers) to encode prompts"
        )
    text = load_text_components(ckpt)
    if not any(k.startswith("text_encoder") and v is not None for k, v in text.items()):
        raise InputError(f"{ckpt.pipeline_class} in '{ckpt.root}' ships no text encoder: prompts cannot be encoded")
    family = family_of_network(ckpt.denoiser)
    pipe = _pipeline(ckpt, text, family.pipelines)
    name = ckpt.pipeline_class
    p = list(prompts)
    encoded = family.encode_prompts(pipe, name, p, ckpt.denoiser.device, ckpt)
    tables, added, static = encoded.tables, encoded.added, encoded.static
    default = pipeline_default(name, "guidance_scale") if guidance_scale is None else None
    guidance = family.guidance(name, ckpt.denoiser.config, guidance_scale, default)
    scale, source, embedded = guidance.scale, guidance.source, guidance.embedded
    encoders = tuple(type(v).__name__ for k, v in text.items() if k.startswith("text_encoder") and v is not None)
    # On the meta device (a memory plan) the tables keep their shapes as zeros: no value is ever read.
    tables = {k: torch.zeros(v.shape, dtype=v.dtype) if v.is_meta else v.detach().cpu() for k, v in tables.items()}
    static = {
        k: (torch.zeros(v.shape, dtype=v.dtype) if v.is_meta else v.detach().cpu()) if torch.is_tensor(v) else v
        for k, v in static.items()
    }
    del pipe, text  # the encoders are not measured: release them now
    return Conditioning(
        "text",
        len(p),
        scale,
        names=tuple(p),
        tables=tables,
        added=added,
        static=static,
        guidance_default=source,
        encoders=encoders,
        embedded_guidance=embedded,
    )
