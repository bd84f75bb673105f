"""Prompts -> the text conditions of a text-to-image denoiser, through the pipeline's own encoders.

The pipeline's text encoders and tokenizers are loaded from the checkpoint folder under the same
rules as every other weight (safetensors only unless --allow-pickle, classes of `transformers` only,
no remote code), the prompts and the null prompt are encoded once with the pipeline's own
`encode_prompt` (so SDXL's zeroed null prompt, CLIP skip defaults, T5 masks... are exactly the
pipeline's), and the encoders are released: they are not part of what flatcheck measures.

Supported pipelines and what their denoiser takes besides x_t and t:
  StableDiffusionPipeline (1.x/2.x)  encoder_hidden_states
  StableDiffusionXLPipeline          encoder_hidden_states, added_cond_kwargs {text_embeds, time_ids}
  PixArtAlphaPipeline / PixArtSigma  encoder_hidden_states, encoder_attention_mask,
                                     added_cond_kwargs {resolution, aspect_ratio} (None below 1024 px)
  StableDiffusion3Pipeline           encoder_hidden_states (CLIP x2 [+ T5]), pooled_projections
  FluxPipeline                       encoder_hidden_states (T5), pooled_projections (CLIP), txt_ids, and
                                     the guidance scale as an input (guidance-distilled: no CFG pass)
"""

from __future__ import annotations

import inspect

import torch

from ..errors import InputError
from .conditioning import Conditioning, pipeline_default

PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "PixArtAlphaPipeline", "PixArtSigmaPipeline",
             "StableDiffusion3Pipeline", "FluxPipeline")


def load_text_components(ckpt) -> dict:
    """component name -> loaded tokenizer or text encoder (float32, the checkpoint's device)."""
    import transformers

    from .checkpoint import _read_json, weight_files

    from transformers.utils import logging as tf_logging

    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()  # "Loading weights" bars are not flatcheck's output
    try:
        return _load_text(ckpt, transformers, _read_json, weight_files)
    finally:
        if bars:
            tf_logging.enable_progress_bar()


def _load_text(ckpt, transformers, _read_json, weight_files) -> dict:
    out = {}
    for name, cls_name in ckpt.text_components.items():
        library = ckpt.index[name][0]
        folder = ckpt.root / name
        if library != "transformers":
            raise InputError(f"{ckpt.root / 'model_index.json'}: {name} comes from '{library}', not transformers: never loaded")
        cls = getattr(transformers, str(cls_name), None)
        is_model = cls is not None and isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)
        is_tok = cls is not None and isinstance(cls, type) and issubclass(cls, transformers.PreTrainedTokenizerBase)
        if not (is_model or is_tok):
            raise InputError(f"{ckpt.root / 'model_index.json'} names '{cls_name}' for {name}: not a transformers model or tokenizer")
        if not folder.is_dir():
            raise InputError(f"the pipeline lists {name} but '{folder}' does not exist")
        try:
            if is_model:
                files = weight_files(folder, name, ckpt.allow_pickle)
                config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
                if config.get("auto_map"):
                    raise InputError(f"'{folder / 'config.json'}' asks for remote code (auto_map): never run")
                if _on_meta(ckpt):  # a memory plan: the encoder's shapes, no weights read
                    import torch

                    conf = cls.config_class.from_pretrained(folder, local_files_only=True)
                    with torch.device("meta"):
                        obj = cls(conf)
                else:
                    obj = cls.from_pretrained(folder, local_files_only=True, use_safetensors=files[0].format == "safetensors")
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


def _pipeline(ckpt, text: dict):
    """The checkpoint's pipeline object around the already loaded parts (nothing else is loaded)."""
    import diffusers

    cls = getattr(diffusers, ckpt.pipeline_class or "", None)
    if ckpt.pipeline_class not in PIPELINES or cls is None:
        raise InputError(f"text conditioning of {ckpt.pipeline_class or 'a bare ' + ckpt.denoiser_class} is not supported yet "
                         f"(supported: {', '.join(PIPELINES)})")
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
        raise InputError(f"'{ckpt.root}' is a bare {ckpt.denoiser_class} folder: a text-conditioned model needs its pipeline "
                         "folder (model_index.json, text encoders, tokenizers) to encode prompts")
    text = load_text_components(ckpt)
    if not any(k.startswith("text_encoder") and v is not None for k, v in text.items()):
        raise InputError(f"{ckpt.pipeline_class} in '{ckpt.root}' ships no text encoder: prompts cannot be encoded")
    pipe = _pipeline(ckpt, text)
    dev = ckpt.denoiser.device
    name = ckpt.pipeline_class
    tables: dict[str, torch.Tensor] = {}
    added: tuple[str, ...] = ()
    static: dict = {}
    p = list(prompts)
    if name == "StableDiffusionPipeline":
        pe, ne = pipe.encode_prompt(p, dev, 1, True, negative_prompt=None)
        tables["encoder_hidden_states"] = torch.cat([pe, ne[:1]])
    elif name == "StableDiffusionXLPipeline":
        pe, ne, pp, npp = pipe.encode_prompt(prompt=p, device=dev, num_images_per_prompt=1, do_classifier_free_guidance=True)
        size = image_size(ckpt)
        proj = pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None else int(pp.shape[-1])
        ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=pe.dtype, text_encoder_projection_dim=proj)
        tables = {"encoder_hidden_states": torch.cat([pe, ne[:1]]), "text_embeds": torch.cat([pp, npp[:1]]),
                  "time_ids": ids.repeat(len(p) + 1, 1)}
        added = ("text_embeds", "time_ids")
    elif name == "StableDiffusion3Pipeline":
        length = pipeline_default(name, "max_sequence_length") or 256
        pe, ne, pp, npp = pipe.encode_prompt(prompt=p, prompt_2=None, prompt_3=None, device=dev, num_images_per_prompt=1,
                                             do_classifier_free_guidance=True, negative_prompt=None, max_sequence_length=length)
        tables = {"encoder_hidden_states": torch.cat([pe, ne[:1]]), "pooled_projections": torch.cat([pp, npp[:1]])}
    elif name == "FluxPipeline":
        length = pipeline_default(name, "max_sequence_length") or 512
        pe, pp, txt_ids = pipe.encode_prompt(prompt=p, prompt_2=None, device=dev, num_images_per_prompt=1, max_sequence_length=length)
        # No null row is ever read (no CFG pass); a zero row keeps the table's layout uniform.
        tables = {"encoder_hidden_states": torch.cat([pe, torch.zeros_like(pe[:1])]),
                  "pooled_projections": torch.cat([pp, torch.zeros_like(pp[:1])])}
        static = {"txt_ids": txt_ids.detach()}
    else:  # PixArt alpha / sigma: T5 with its attention mask
        length = pipeline_default(name, "max_sequence_length") or 120
        if dev.type == "meta":  # a plan: transformers' T5 reads its attention mask's values, which meta has not
            enc = pipe.text_encoder
            pe = ne = torch.zeros(len(p), length, enc.config.d_model, dtype=enc.dtype, device="meta")
            pm = nm = torch.zeros(len(p), length, dtype=torch.long, device="meta")
        else:
            pe, pm, ne, nm = pipe.encode_prompt(p, do_classifier_free_guidance=True, negative_prompt="", num_images_per_prompt=1,
                                                device=dev, clean_caption=False, max_sequence_length=length)
        tables = {"encoder_hidden_states": torch.cat([pe, ne[:1]]), "encoder_attention_mask": torch.cat([pm, nm[:1]])}
        if ckpt.denoiser.config.get("sample_size") == 128:  # PixArt-alpha 1024 px: resolution micro-conditions
            h, w = image_size(ckpt)
            tables["resolution"] = torch.tensor([[h, w]], dtype=pe.dtype).repeat(len(p) + 1, 1)
            tables["aspect_ratio"] = torch.tensor([[h / w]], dtype=pe.dtype).repeat(len(p) + 1, 1)
            added = ("resolution", "aspect_ratio")
        else:
            static = {"added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}
    if guidance_scale is None:
        default = pipeline_default(name, "guidance_scale")
        scale, source = (float(default), f"{name}'s default") if default is not None else (1.0, "none: the pipeline has no default")
    else:
        scale, source = float(guidance_scale), "--guidance-scale"
    embedded = name == "FluxPipeline" and bool(ckpt.denoiser.config.get("guidance_embeds"))
    if name == "FluxPipeline" and not embedded:  # FLUX.1-schnell: no guidance input, and no CFG pass either
        scale, source = 1.0, "none: the transformer has no guidance embedding"
    encoders = tuple(type(v).__name__ for k, v in text.items() if k.startswith("text_encoder") and v is not None)
    # On the meta device (a memory plan) the tables keep their shapes as zeros: no value is ever read.
    tables = {k: torch.zeros(v.shape, dtype=v.dtype) if v.is_meta else v.detach().cpu() for k, v in tables.items()}
    static = {k: (torch.zeros(v.shape, dtype=v.dtype) if v.is_meta else v.detach().cpu()) if torch.is_tensor(v) else v
              for k, v in static.items()}
    del pipe, text  # the encoders are not measured: release them now
    return Conditioning("text", len(p), scale, names=tuple(p), tables=tables, added=added, static=static,
                        guidance_default=source, encoders=encoders, embedded_guidance=embedded)


def image_size(ckpt) -> tuple[int, int]:
    """Pixel height and width of the pipeline's default image (latent size x the autoencoder's factor)."""
    size = ckpt.denoiser.config.get("sample_size") or 0
    h, w = (size, size) if not isinstance(size, (list, tuple)) else tuple(size)
    factor = 2 ** (len(ckpt.vae.config.block_out_channels) - 1) if ckpt.vae is not None else 1
    return int(h * factor), int(w * factor)
