"""Random-weight diffusers pipeline folders at real size, built offline from the published configs.

    .venv/bin/python benchmarks/realsize_build.py sd15 /tmp/realsize              # -> /tmp/realsize/sd15, with weights
    .venv/bin/python benchmarks/realsize_build.py sdxl /tmp/realsize              # header-only
    .venv/bin/python benchmarks/realsize_build.py flux-dev /tmp/realsize          # header-only
    .venv/bin/python benchmarks/realsize_build.py sd15 /tmp/realsize --header-only

Nothing is downloaded: every component is built from its published config (the denoisers and autoencoders
of gpu_families.FAMILIES; the text encoders' configs below), tokenizers from the handmade vocabularies of
tests/families.py (every token id below the vocabulary size).

- With weights (sd15 only): every component is random (seeded per component) and saved as safetensors,
  one at a time so that only one is in memory (StableDiffusionPipeline: about 3.5 GB on disk, ~40 s,
  ~4.6 GB peak RSS). safety_checker and feature_extractor are None, as SD 1.5 pipelines are often saved.
- Header-only (sdxl, flux-dev; sd15 on request): each component is built on the meta device (no memory
  for weights) and written as safetensors files whose headers list the real names, shapes and dtypes
  (sharded like the published repositories where those are), each file a sparse file of the real length:
  no disk is used and no data can be read (it reads back as zeros). Good for `flatcheck info` and for
  planning memory, never for running. SDXL and Flux are never built with weights (10-34 GB).

Dtypes are the published files': SD 1.5 and SDXL in float32, FLUX.1-dev in bfloat16.
`build(name, root, weights)` is the entry point for other scripts (a memory planner imports it).
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: benchmarks.gpu_families and tests.families live beside it
    sys.path.insert(0, str(ROOT))

from benchmarks.gpu_families import FAMILIES  # noqa: E402

NAMES = ("sd15", "sdxl", "flux-dev")
WITH_WEIGHTS = ("sd15",)  # the only one that fits this machine's budget with real tensors (3.5 GB)

# The text encoders' published configs (transformers' config.json of the reference checkpoints).
CLIP_L = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
    layer_norm_eps=1e-5,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)  # SD 1.5, SDXL text_encoder, FLUX.1 text_encoder
CLIP_BIG_G = dict(
    CLIP_L,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    hidden_act="gelu",
    projection_dim=1280,
)  # SDXL text_encoder_2 (CLIPTextModelWithProjection)
T5_XXL = dict(
    vocab_size=32128,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
    dropout_rate=0.1,
    is_encoder_decoder=True,
    tie_word_embeddings=False,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)

# Schedulers as the reference pipelines ship them (scheduler/scheduler_config.json).
SCHEDULERS = {
    "sd15": (
        "PNDMScheduler",
        dict(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            num_train_timesteps=1000,
            set_alpha_to_one=False,
            skip_prk_steps=True,
            steps_offset=1,
            trained_betas=None,
        ),
    ),
    "sdxl": (
        "EulerDiscreteScheduler",
        dict(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            num_train_timesteps=1000,
            interpolation_type="linear",
            prediction_type="epsilon",
            steps_offset=1,
            timestep_spacing="leading",
            trained_betas=None,
            use_karras_sigmas=False,
        ),
    ),
    "flux-dev": FAMILIES["flux-dev"]["scheduler"],
}

# name -> (pipeline class, denoiser component, stored dtype, denoiser shard size in bytes or None)
PIPELINES = {
    "sd15": ("StableDiffusionPipeline", "unet", "float32", None),
    "sdxl": ("StableDiffusionXLPipeline", "unet", "float32", None),
    "flux-dev": ("FluxPipeline", "transformer", "bfloat16", 10 * 10**9),  # 3 shards, as FLUX.1-dev's transformer/
}

SAFETENSORS_CODES = {
    "float32": ("F32", 4),
    "float16": ("F16", 2),
    "bfloat16": ("BF16", 2),
    "int64": ("I64", 8),
    "float64": ("F64", 8),
}


# ---------------------------------------------------------------------------------------------- components
def _text_encoders(name: str) -> dict:
    """component -> (factory of the text encoder, its stored dtype); factories build from the configs above."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    dtype = PIPELINES[name][2]
    clip_l = lambda: CLIPTextModel(CLIPTextConfig(**CLIP_L))  # noqa: E731
    if name == "sd15":
        return {"text_encoder": (clip_l, dtype)}
    if name == "sdxl":
        return {
            "text_encoder": (clip_l, dtype),
            "text_encoder_2": (lambda: CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIG_G)), dtype),
        }
    return {"text_encoder": (clip_l, dtype), "text_encoder_2": (lambda: T5EncoderModel(T5Config(**T5_XXL)), dtype)}


def _tokenizers(name: str) -> dict:
    from tests.families import make_clip_tokenizer, make_t5_tokenizer

    if name == "sd15":
        return {"tokenizer": make_clip_tokenizer()}
    if name == "sdxl":
        return {"tokenizer": make_clip_tokenizer(), "tokenizer_2": make_clip_tokenizer()}
    return {"tokenizer": make_clip_tokenizer(), "tokenizer_2": make_t5_tokenizer()}


def _diffusers_parts(name: str) -> dict:
    """component -> factory, for the denoiser and the autoencoder (gpu_families' published configs)."""
    import diffusers

    spec = FAMILIES[name]
    component = PIPELINES[name][1]
    return {
        component: lambda: getattr(diffusers, spec["cls"])(**spec["config"]),
        "vae": lambda: diffusers.AutoencoderKL(**spec["vae"]),
    }


def _scheduler(name: str):
    import diffusers

    cls, kwargs = SCHEDULERS[name]
    return getattr(diffusers, cls)(**kwargs)


def _on_meta(factory):
    import torch

    with torch.device("meta"):
        return factory()


# ---------------------------------------------------------------------------------------------- header-only files
def stored_tensors(module, dtype: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """What save_pretrained would store: state-dict name -> (dtype, shape), tied tensors once (the first name)."""
    seen, out = set(), {}
    for key, t in module.state_dict(keep_vars=True).items():
        if id(t) in seen:
            continue
        seen.add(id(t))
        out[key] = (dtype if t.is_floating_point() else str(t.dtype).removeprefix("torch."), tuple(t.shape))
    return out


def write_header_only(path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> int:
    """A safetensors file listing `tensors` (name -> (dtype, shape)) with no data written: the header, then a
    sparse hole of the data's exact length (truncate). Returns the file's size."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key in sorted(tensors):
        dtype, shape = tensors[key]
        code, size = SAFETENSORS_CODES[dtype]
        n = math.prod(shape) * size
        header[key] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # safetensors aligns the data to 8 bytes, padding the header with spaces
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        fh.truncate(8 + len(blob) + offset)
    return 8 + len(blob) + offset


def write_sharded(folder: Path, tensors: dict, stem: str, shard_bytes: int | None) -> None:
    """One file (stem.safetensors), or shards stem-0000k-of-0000n.safetensors + stem.safetensors.index.json
    (the names diffusers and transformers write) of at most shard_bytes of data each."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {k: math.prod(shape) * SAFETENSORS_CODES[dt][1] for k, (dt, shape) in tensors.items()}
    if shard_bytes is None or sum(sizes.values()) <= shard_bytes:
        write_header_only(folder / f"{stem}.safetensors", tensors)
        return
    shards, current, filled = [], {}, 0
    for key in sorted(tensors):
        if current and filled + sizes[key] > shard_bytes:
            shards.append(current)
            current, filled = {}, 0
        current[key] = tensors[key]
        filled += sizes[key]
    shards.append(current)
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file = f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors"
        write_header_only(folder / file, shard)
        weight_map.update({k: file for k in shard})
    index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------- building
def build(name: str, root: Path, weights: bool) -> Path:
    """Build pipeline `name` under root / name and return that folder. weights=True (sd15 only) saves seeded
    random weights; weights=False writes header-only sparse safetensors files."""
    import diffusers
    import torch

    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; choose one of {', '.join(NAMES)}")
    if weights and name not in WITH_WEIGHTS:
        raise ValueError(
            f"{name} is built header-only (its weights would not fit this budget); weights=True is for "
            f"{', '.join(WITH_WEIGHTS)}"
        )
    folder = Path(root) / name
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"'{folder}' exists and is not empty: remove it first")
    pipeline_class, denoiser, dtype, shard_bytes = PIPELINES[name]
    tokenizers = _tokenizers(name)
    factories = {**_diffusers_parts(name), **{k: f for k, (f, _) in _text_encoders(name).items()}}
    scheduler = _scheduler(name)

    # model_index.json as diffusers writes it: the pipeline built from meta-device components (no memory).
    meta = {k: _on_meta(f) for k, f in factories.items()}
    extra = (
        {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False} if name == "sd15" else {}
    )
    pipe = getattr(diffusers, pipeline_class)(**meta, **tokenizers, scheduler=scheduler, **extra)
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_config(folder)
    scheduler.save_pretrained(folder / "scheduler")
    for k, tok in tokenizers.items():
        tok.save_pretrained(folder / k)
    del pipe

    for seed, (component, factory) in enumerate(sorted(factories.items())):
        module = meta.pop(component)
        is_diffusers = component in (denoiser, "vae")
        if weights:
            del module
            torch.manual_seed(seed)  # each component from its own seed: the same folder whatever is built before it
            module = factory().eval()
            if dtype != "float32":  # (a no-op .to() still makes diffusers warn about fp32 modules)
                module = module.to(getattr(torch, dtype))
            module.save_pretrained(folder / component, safe_serialization=True)
        else:
            tensors = stored_tensors(module, dtype)
            if is_diffusers:
                module.save_config(folder / component)
                write_sharded(
                    folder / component,
                    tensors,
                    "diffusion_pytorch_model",
                    shard_bytes if component == denoiser else None,
                )
            else:
                module.config.save_pretrained(folder / component)
                write_sharded(folder / component, tensors, "model", 5 * 10**9)  # transformers' default shard size
        del module
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("name", choices=NAMES)
    ap.add_argument("root", type=Path, help="the pipeline is written to ROOT/NAME (which must not exist or be empty)")
    ap.add_argument(
        "--header-only", action="store_true", help="sd15: header-only sparse files instead of random weights"
    )
    a = ap.parse_args(argv)
    weights = a.name in WITH_WEIGHTS and not a.header_only
    t0 = time.perf_counter()
    try:
        folder = build(a.name, a.root, weights)
    except (ValueError, FileExistsError) as exc:
        print(f"realsize_build: error: {exc}", file=sys.stderr)
        return 2
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"{folder}: {'random weights' if weights else 'header-only'}, built in {time.perf_counter() - t0:.1f} s, peak "
        f"RSS {peak:.2f} GiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
