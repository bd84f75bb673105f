"""Single-file checkpoints: one .safetensors (or, behind --allow-pickle, .ckpt) in the original layout, as
model-sharing sites and training tools write them (SD 1.x/2.x/XL, SD3, Flux).

What the file is comes from its tensor names alone (`detect`, from the safetensors header, torch-free: what
diffusers' single_file_utils.infer_diffusers_model_type looks at). Its configs come from `--model-config DIR`
(a diffusers pipeline folder, or the denoiser's own config folder) or, for the well-known models, from the
configs bundled in flatcheck/configs (configs only, no weights). The modules are then built by diffusers'
own `from_single_file` (its key conversion), offline. Tokenizers are never inside a single file and are not
bundled (a CLIP vocabulary is 1.5 MB): a model that encodes prompts needs --model-config for them, and a
missing component is one line naming it, checked before any weight is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Mapping

from ..errors import InputError
from ..families.base import ORIGINAL_PREFIX
from .class_facts import check_class

SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
VAE_PREFIXES = ("first_stage_model.", "vae.")
# Text encoders as the original trainers stored them: prefix in the file -> the pipeline component it becomes.
# The marker is the tensor diffusers' single_file_utils checks for (CHECKPOINT_KEY_NAMES).
TEXT_PREFIXES = {
    "cond_stage_model.transformer.": ("text_encoder", "text_model.embeddings.position_embedding.weight"),  # SD 1
    "cond_stage_model.model.": ("text_encoder", "token_embedding.weight"),  # SD 2 (OpenCLIP)
    "conditioner.embedders.0.transformer.": ("text_encoder", "text_model.embeddings.position_embedding.weight"),
    "conditioner.embedders.1.model.": ("text_encoder_2", "positional_embedding"),  # SDXL (OpenCLIP bigG)
    "text_encoders.clip_l.transformer.": ("text_encoder", "text_model.embeddings.position_embedding.weight"),
    "text_encoders.clip_g.transformer.": ("text_encoder_2", "text_model.embeddings.position_embedding.weight"),
    "text_encoders.t5xxl.transformer.": ("text_encoder_3", "shared.weight"),  # SD3's T5 (Flux's is text_encoder_2)
}
# Tensors that belong to no component flatcheck reads (EMA copies, loss buffers of the training code).
OTHER_PREFIXES = ("model_ema.", "cond_stage_model.", "conditioner.", "text_encoders.", "model_ema")
# Bytes per element of safetensors' dtypes as core.checkpoint names them
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2}


@dataclass(frozen=True)
class Layout:
    """What the tensor names say: the kind of network, where each component's tensors are, and the well-known
    model whose bundled configs fit (None: the shapes are of no bundled model; --model-config is needed)."""

    kind: str  # "ldm-unet" (SD 1.x/2.x/XL), "sd3", "flux"
    denoiser_class: str
    denoiser_prefix: str  # "" when the file holds the bare network
    vae_prefix: str | None
    text: Mapping[str, str] = field(default_factory=dict)  # component -> prefix, for encoders inside the file
    known: str | None = None  # flatcheck/configs/<known>


KNOWN_TITLES = {
    "sd15": "SD 1.x",
    "sd21": "SD 2.x (768, v-prediction)",
    "sdxl-base": "SDXL base",
    "sd3-medium": "SD3 medium",
    "flux-dev": "FLUX.1-dev",
    "flux-schnell": "FLUX.1-schnell",
}


def is_single_file(path: Path) -> bool:
    return path.is_file() and path.suffix in SUFFIXES


def configs_root() -> Path:
    return Path(str(resources.files("flatcheck") / "configs"))


# ----------------------------------------------------------------------------- what the file is (no torch)


def detect(tensors: Mapping, where: Path) -> Layout:
    """The layout of a single file from its tensor names and a few shapes (entries with a .shape), as the family
    serving it recognises it (Family.original_layout); InputError naming what was looked for when none fits
    (diffusers would guess SD 1.x for any unknown file)."""
    from ..families import FAMILIES
    from ..families.base import TensorNames

    names = TensorNames(tensors)
    text = {}
    for prefix, (component, marker) in TEXT_PREFIXES.items():
        if names.has(prefix + marker):
            text[component] = prefix
    vae = next((p for p in VAE_PREFIXES if names.has(p + "decoder.conv_out.weight")), None)
    for family in FAMILIES:
        found = family.original_layout(names)
        if found is not None:
            return Layout(found.kind, found.denoiser_class, found.prefix, vae, text, found.known)
    raise InputError(
        f"'{where}': its tensor names are of no single-file layout flatcheck reads (SD 1.x/2.x/XL "
        f"'{ORIGINAL_PREFIX}input_blocks.*', SD3 'joint_blocks.*', Flux 'double_blocks.*'); a diffusers model is read "
        "from its folder"
    )


def component_tensors(tensors: Mapping, layout: Layout, component: str) -> dict:
    """The entries of one component ("denoiser", "vae", or a text encoder's name), keys as in the file."""
    if component == "denoiser":
        p = layout.denoiser_prefix
        if p:
            return {k: v for k, v in tensors.items() if k.startswith(p)}
        others = (*VAE_PREFIXES, *OTHER_PREFIXES)
        return {k: v for k, v in tensors.items() if not k.startswith(others)}
    p = layout.vae_prefix if component == "vae" else layout.text.get(component)
    return {k: v for k, v in tensors.items() if k.startswith(p)} if p else {}


def read_entries(path: Path, allow_pickle: bool) -> tuple[str, dict]:
    """(format, name -> TensorEntry) of a single file: the safetensors header (checked, no data read), or, behind
    --allow-pickle, the unpickled state dict's shapes (diffusers' reader: weights only)."""
    from .files import TensorEntry, check_safetensors

    if path.suffix == ".safetensors":
        return "safetensors", check_safetensors(path)
    if not allow_pickle:
        raise InputError(
            f"'{path}' is a pickle file: loading a pickle can run arbitrary code, so it is refused; "
            "convert it to safetensors, or pass --allow-pickle if you trust its source"
        )
    state = _pickle_state(path)
    return "pickle", {
        k: TensorEntry(str(v.dtype).removeprefix("torch."), tuple(v.shape))
        for k, v in state.items()
        if hasattr(v, "shape")
    }


def _pickle_state(path: Path) -> dict:
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    try:
        return load_single_file_checkpoint(str(path), local_files_only=True)
    except Exception as exc:
        raise InputError(f"cannot read '{path}': {str(exc).splitlines()[0][:300]}") from exc


# ----------------------------------------------------------------------------- where the configs come from


@dataclass
class ConfigSource:
    """The configs a single file is built with: component -> folder holding its config (and, for a --model-config
    pipeline folder, maybe its weights and tokenizer files), the pipeline's model_index.json, and where from."""

    folders: dict[str, Path]
    index: dict
    origin: str  # stated in info and every report

    @property
    def pipeline_class(self) -> str | None:
        return self.index.get("_class_name")


def config_source(model_config: Path | None, layout: Layout, path: Path) -> ConfigSource:
    """--model-config DIR (a diffusers pipeline folder, or the denoiser's config folder), else the bundled configs
    of the well-known model the tensor names show; InputError when neither applies."""
    from .files import check_component_sources, read_json

    if model_config is not None:
        folder = Path(model_config).expanduser()
        if (folder / "model_index.json").is_file():
            index = read_json(folder / "model_index.json")
            check_class(index.get("_class_name"), "DiffusionPipeline", folder / "model_index.json")
            check_component_sources(index, folder / "model_index.json")
            folders = {k: folder / k for k in index if not k.startswith("_") and (folder / k).is_dir()}
            return ConfigSource(folders, index, f"--model-config {model_config}")
        if (folder / "config.json").is_file():
            # The denoiser's own config; the rest (autoencoder, schedule, encoders) as the well-known model's
            known = _bundled(layout) if layout.known else ConfigSource({}, {}, "")
            denoiser = "unet" if layout.kind == "ldm-unet" else "transformer"
            folders = {**known.folders, denoiser: folder}
            origin = f"--model-config {model_config}" + (f" (the rest: {known.origin})" if known.origin else "")
            return ConfigSource(folders, known.index, origin)
        if not folder.exists():
            raise InputError(f"--model-config '{model_config}' does not exist")
        raise InputError(
            f"--model-config '{model_config}' holds neither model_index.json (a diffusers pipeline folder) nor "
            "config.json (the denoiser's config)"
        )
    if layout.known is None:
        raise InputError(
            f"'{path}' is a {layout.denoiser_class} single file of no size flatcheck has configs for "
            f"(bundled: {', '.join(KNOWN_TITLES.values())}): give its configs with --model-config DIR "
            "(a diffusers folder of the same model)"
        )
    return _bundled(layout)


def _bundled(layout: Layout) -> ConfigSource:
    from .files import read_json

    root = configs_root() / str(layout.known)
    index = read_json(root / "model_index.json")
    folders = {k: root / k for k in index if not k.startswith("_") and (root / k).is_dir()}
    return ConfigSource(folders, index, f"flatcheck's bundled {KNOWN_TITLES[str(layout.known)]} configs")


# ----------------------------------------------------------------------------- locating


@dataclass
class SingleFile:
    """A single-file checkpoint, checked but not loaded: the file, its layout, its configs."""

    path: Path
    format: str  # "safetensors" or "pickle"
    tensors: Mapping  # name -> TensorEntry, the whole file
    layout: Layout
    configs: ConfigSource

    def text_source(self, name: str) -> tuple[str, Path | str] | None:
        """Where a text component comes from: ("file", prefix) for an encoder inside the file (its config from
        the config folder), ("folder", DIR) for one in a --model-config pipeline folder; None: nowhere."""
        folder = self.configs.folders.get(name)
        if name.startswith("text_encoder") and name in self.layout.text and folder is not None:
            return "file", self.layout.text[name]
        if folder is not None and any(p.is_file() and p.name != "config.json" for p in folder.iterdir()):
            return "folder", folder
        return None

    def missing(self) -> list[str]:
        """One line per component a run needs that neither the file nor --model-config gives."""
        index, lines = self.configs.index, []
        needed = [k for k, v in index.items() if isinstance(v, list) and len(v) == 2 and v[1]]
        optional = {"text_encoder_3", "tokenizer_3"}  # SD3 runs without its T5 (diffusers pads zeros)
        for name in needed:
            if not name.startswith(("text_encoder", "tokenizer", "vae")) or name in optional:
                continue
            if name == "vae":
                if self.layout.vae_prefix is None and self.text_source_vae() is None:
                    lines.append("vae: not in the file; give --model-config DIR, a diffusers folder with vae/ weights")
                continue
            if self.text_source(name) is None:
                if name.startswith("tokenizer"):
                    how = f"single files hold no tokenizer; give --model-config DIR, a diffusers folder with {name}/"
                else:
                    how = f"not in the file; give --model-config DIR, a diffusers folder with {name}/ weights"
                lines.append(f"{name}: {how}")
        return lines

    def text_source_vae(self) -> Path | None:
        folder = self.configs.folders.get("vae")
        if folder is not None and any(p.suffix == ".safetensors" for p in folder.iterdir()):
            return folder
        return None


def check_components(sf: SingleFile) -> None:
    """InputError (one line) naming the first component a run needs and cannot have."""
    missing = sf.missing()
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"'{sf.path}' ({sf.configs.pipeline_class}) lacks {missing[0]}{more}")


def locate_file(path: Path, model_config: Path | None, allow_pickle: bool) -> SingleFile:
    fmt, tensors = read_entries(path, allow_pickle)
    layout = detect(tensors, path)
    configs = config_source(model_config, layout, path)
    return SingleFile(path, fmt, tensors, layout, configs)


def bytes_of(entries: Mapping) -> int:
    return sum(e.numel * ITEMSIZE.get(e.dtype, 1) for e in entries.values())


# ----------------------------------------------------------------------------- loading (torch)


def state_dict(sf: SingleFile, names) -> dict:
    """The named tensors of the file, read from it (safetensors: only those; a pickle is unpickled whole)."""
    names = list(names)
    if sf.format == "safetensors":
        from safetensors import safe_open

        with safe_open(str(sf.path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in names}
    state = _pickle_state(sf.path)
    return {k: state[k] for k in names}


def load_module(cls, sf: SingleFile, component: str, config_folder: Path, dtype, where: str):
    """A diffusers model built by its own from_single_file from the file's tensors of `component` and the config
    in config_folder; InputError when the file does not fill every parameter the config asks for."""
    tensors = component_tensors(sf.tensors, sf.layout, component)
    if not tensors:
        raise InputError(f"'{sf.path}' holds no {where} tensors")
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    # Its cast to torch_dtype warns about "modules that should be kept in float32" even when there are none
    diffusers_logging.set_verbosity_error()
    try:
        module = cls.from_single_file(
            state_dict(sf, tensors), config=str(config_folder), torch_dtype=dtype, local_files_only=True
        )
    except Exception as exc:  # shape mismatch with the config, a conversion that found no tensors ...
        raise InputError(
            f"cannot build the {where} from '{sf.path}' with the configs of {sf.configs.origin}: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from exc
    finally:
        diffusers_logging.set_verbosity(level)
    check_filled(module, sf, where)
    return module


def check_filled(module, sf: SingleFile, where: str) -> None:
    """from_single_file leaves a parameter the file lacks on the meta device: refuse rather than run it."""
    empty = [n for n, p in module.named_parameters() if p.is_meta]
    if empty:
        raise InputError(
            f"'{sf.path}' lacks {len(empty)} tensor(s) of the {where} that the configs of {sf.configs.origin} ask "
            f"for (e.g. '{empty[0]}'): the file and the configs are of different models"
        )


def load_text(ckpt) -> dict:
    """Tokenizers and text encoders of a single-file checkpoint: encoders inside the file converted by diffusers
    (configs from the config folder), the rest from a --model-config pipeline folder."""
    import transformers

    sf: SingleFile = ckpt.single_file
    check_components(sf)
    out = {}
    meta = next(ckpt.denoiser.parameters()).device.type == "meta"
    for name, cls_name in ckpt.text_components.items():
        cls = getattr(transformers, str(cls_name), None)
        if not isinstance(cls, type):
            raise InputError(f"{sf.configs.origin} names '{cls_name}' for {name}: not a transformers class")
        source = sf.text_source(name)
        if source is None:  # optional (SD3's T5): the pipeline runs without it
            out[name] = None
            continue
        kind, where = source
        try:
            if name.startswith("tokenizer"):
                obj = cls.from_pretrained(str(where), local_files_only=True)
            elif meta:
                import torch

                with torch.device("meta"):
                    obj = cls(cls.config_class.from_pretrained(str(sf.configs.folders[name]), local_files_only=True))
            elif kind == "folder":
                obj = cls.from_pretrained(str(where), local_files_only=True, use_safetensors=True)
            else:
                obj = _text_from_file(cls, sf, name)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot load {name} for '{sf.path}': {str(exc).splitlines()[0][:300]}") from exc
        if not name.startswith("tokenizer"):
            obj = obj.to(ckpt.denoiser.device).eval().requires_grad_(False)
        out[name] = obj
    return out


def _text_from_file(cls, sf: SingleFile, name: str):
    from diffusers.loaders import single_file_utils as sfu

    tensors = component_tensors(sf.tensors, sf.layout, name)
    checkpoint = state_dict(sf, tensors)
    folder = str(sf.configs.folders[name])
    if name == "text_encoder_3" or sf.layout.text[name].startswith("text_encoders.t5xxl"):
        module = sfu.create_diffusers_t5_model_from_checkpoint(cls, checkpoint, config=folder, local_files_only=True)
    else:
        module = sfu.create_diffusers_clip_model_from_ldm(cls, checkpoint, config=folder, local_files_only=True)
    check_filled(module, sf, name)
    return module
