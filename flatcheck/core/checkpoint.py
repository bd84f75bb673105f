"""Find, check and load a diffusers checkpoint - safely.

MODEL may be
  (a) a diffusers pipeline folder (model_index.json),
  (b) a bare model folder (config.json + weights), with an optional scheduler folder,
  (c) a Hugging Face Hub repo id (needs the network),
  (d) the short name of a bundled example model (see `bundled_models`),
  (e) a single-file checkpoint in the original layout (SD 1.x/2.x/XL, SD3, Flux: core.single_file), its configs
      from --model-config DIR or bundled.
A local path wins over a name.

Safety: only safetensors are read by default. Pickle files (.bin, .ckpt, .pt, .pth)
can run arbitrary code when loaded, so they are refused unless `allow_pickle`.
Only classes that ship with diffusers are instantiated: no remote or custom code.
Files on disk are only ever read.

Two steps: `locate` finds and checks the files (configs, classes named, weight files and their
safetensors headers) without loading anything and without torch, which is all `flatcheck info`
needs; `load` then instantiates the denoiser, its autoencoder and its schedule.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ..errors import InputError
from .class_facts import check_class, diffusers_class
from .files import (  # noqa: F401 - names callers read from here
    PICKLE_SUFFIXES,
    SAFETENSORS_DTYPES,
    TensorEntry,
    check_component_sources,
    check_safetensors,
    read_json,
)

if TYPE_CHECKING:  # torch is imported where weights are loaded: locating a checkpoint needs none of it
    import torch

    from .single_file import SingleFile

DENOISER_COMPONENTS = ("unet", "transformer")
AUTOENCODER_COMPONENTS = ("vae", "vqvae")
DEFAULT_BUNDLED = "digits-base"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What diffusers' ModelMixin.from_pretrained reads from a model folder, per format: the sharded index if there
# is one, else the single file. A variant (variant="fp16") inserts its name: diffusion_pytorch_model.fp16.safetensors,
# diffusion_pytorch_model.safetensors.index.fp16.json (loaded_names); the other variants' files are not loaded.
LOADED_NAMES = {
    "safetensors": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json"),
    "pickle": ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json"),
}
SHARD = re.compile(r"-\d{5}-of-\d{5}$")


def loaded_names(fmt: str, variant: str | None) -> tuple[str, str]:
    """(single file, sharded index) that from_pretrained reads for a format and variant."""
    single, index = LOADED_NAMES[fmt]
    if variant is None:
        return single, index
    stem, ext = single.rsplit(".", 1)
    return f"{stem}.{variant}.{ext}", f"{index.removesuffix('.json')}.{variant}.json"


def variant_of(path: Path) -> str | None:
    """The variant a weight file belongs to, as diffusers and transformers name them: 'fp16' for
    diffusion_pytorch_model.fp16.safetensors, model.fp16-00001-of-00002.safetensors; None for the plain files."""
    parts = path.name.split(".")
    return SHARD.sub("", parts[1]) or None if len(parts) == 3 else None


@dataclass(frozen=True)
class WeightFile:
    component: str
    path: Path
    format: str  # "safetensors" or "pickle"
    bytes: int
    # safetensors: tensor name -> entry, from the header that files.check_safetensors parsed; None for pickle
    tensors: Mapping[str, TensorEntry] | None = field(default=None, compare=False, repr=False)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the denoiser, its noise schedule, and where they came from."""

    source: str  # MODEL as the user gave it
    form: str  # "pipeline", "model", "hub", "bundled", "single-file" or "memory"
    root: Path  # local folder that was read (a single file: the file)
    pipeline_class: str | None
    denoiser_component: str  # "unet", "transformer", or "." for a bare model
    denoiser: torch.nn.Module
    scheduler: object  # a diffusers SchedulerMixin
    scheduler_origin: str  # where the schedule came from, stated in every report
    vae: torch.nn.Module | None = None
    weight_files: list[WeightFile] = field(default_factory=list)
    index: dict = field(default_factory=dict)  # model_index.json of a pipeline folder ({} for a bare model)
    allow_pickle: bool = False  # what the user allowed: text components load under the same rule
    # A pipeline held in memory (flatcheck.api): its tokenizers and text encoders as they are, never read from disk
    text_modules: dict | None = None
    variant: str | None = None  # --variant as asked (text encoders are read under the same rule as the denoiser)
    single_file: SingleFile | None = None  # a single-file checkpoint: its layout and configs (text encoders from it)
    lora: object | None = None  # core.lora.AttachedLora: a LoRA put on the denoiser (--lora), fused

    @property
    def config_origin(self) -> str | None:
        return self.single_file.configs.origin if self.single_file is not None else None

    @property
    def text_components(self) -> dict[str, str]:
        """The pipeline's text encoders and tokenizers: component name -> class (none loaded)."""
        return text_components(self.index)

    @property
    def denoiser_class(self) -> str:
        return type(self.denoiser).__name__

    @property
    def denoiser_variant(self) -> str | None:
        """The variant of the denoiser's weight files that were read (None: the plain ones, or in memory)."""
        return next(
            (
                variant_of(w.path)
                for w in self.weight_files
                if w.component == self.denoiser_component or self.denoiser_component == "."
            ),
            None,
        )

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.denoiser.parameters())


def text_components(index: dict) -> dict[str, str]:
    """A model_index.json's text encoders and tokenizers: component name -> class."""
    return {
        k: v[1]
        for k, v in index.items()
        if not k.startswith("_")
        and isinstance(v, list)
        and len(v) == 2
        and v[1]
        and k.startswith(("text_encoder", "tokenizer"))
    }


# ----------------------------------------------------------------------------- resolving MODEL


def bundled_root() -> Path:
    return Path(str(resources.files("flatcheck") / "models"))


def bundled_models() -> list[str]:
    root = bundled_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "model_index.json").is_file())


def resolve(model: str | None, allow_pickle: bool = False) -> tuple[Path, str]:
    """MODEL -> (local folder, form). Raises InputError with one clear line."""
    found = _resolve_local(model)
    if found is not None:
        return found
    return _download_from_hub(model, allow_pickle), "hub"


def _resolve_local(model: str | None) -> tuple[Path, str] | None:
    """A local or bundled MODEL -> (folder, form); None for a Hub repo id; InputError for anything else."""
    if model is None or model == "":
        model = DEFAULT_BUNDLED
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            from .single_file import SUFFIXES

            if path.suffix in SUFFIXES:
                return path, "single-file"
            raise InputError(
                f"'{model}' is a file but not a single-file checkpoint ({', '.join(SUFFIXES)}); give the "
                "checkpoint's folder (a diffusers pipeline or model folder)"
            )
        return path, _folder_form(path)
    if model in bundled_models():
        return bundled_root() / model, "bundled"
    looks_like_path = model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 1)[-1]
    if HUB_ID.match(model) and not looks_like_path:
        return None
    names = ", ".join(bundled_models()) or "none installed"
    raise InputError(f"no such file or folder: '{model}' (and no bundled model of that name; bundled: {names})")


def check(
    model: str | None,
    *,
    scheduler: str | Path | None = None,
    allow_pickle: bool = False,
    variant: str | None = None,
    model_config: str | Path | None = None,
) -> CheckpointFiles | None:
    """What `load` refuses before any weight is read, checked without torch: a bad path, config, weight file or
    --scheduler, or a denoiser no family serves, fails here in a fraction of a second instead of after the
    seconds that importing torch and diffusers take. A Hub repo id is left to `load` (locating it downloads it):
    None; else the files found."""
    if _resolve_local(model) is None:
        if model_config is not None:
            raise InputError("--model-config is for a single-file checkpoint (one .safetensors file), not a Hub id")
        return None
    found = locate(model, scheduler=scheduler, allow_pickle=allow_pickle, variant=variant, model_config=model_config)
    from ..families import family_of
    from .class_facts import config_with_defaults

    family_of(found.denoiser.class_name, config_with_defaults(found.denoiser.class_name, found.denoiser.config))
    if found.single_file is not None:
        from .single_file import check_components

        check_components(found.single_file)
    return found


def _folder_form(path: Path) -> str:
    if not any(path.iterdir()):
        raise InputError(f"'{path}' is an empty folder, not a checkpoint")
    if (path / "model_index.json").is_file():
        return "pipeline"
    if (path / "config.json").is_file():
        return "model"
    raise InputError(
        f"'{path}' holds no diffusers config (neither model_index.json nor config.json): not a diffusers checkpoint"
    )


def _download_from_hub(repo_id: str, allow_pickle: bool) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt"] + (["*" + s for s in PICKLE_SUFFIXES] if allow_pickle else [])
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:  # no network, unknown repo, gated repo ...
        if offline:
            raise InputError(
                f"'{repo_id}' is not a local path or bundled model, and HF_HUB_OFFLINE is set: "
                "it cannot be fetched from the Hugging Face Hub (download it elsewhere and pass its folder)"
            ) from exc
        raise InputError(
            f"could not fetch '{repo_id}' from the Hugging Face Hub ({type(exc).__name__}); "
            "if this machine is offline, set HF_HUB_OFFLINE=1 and pass a local folder"
        ) from exc


# ----------------------------------------------------------------------------- configs and classes


# ----------------------------------------------------------------------------- weight files


def choose_variant(folder: Path, variant: str | None) -> str | None:
    """The variant whose weight files a folder is read from: the one asked for (InputError naming those there
    are if it has none); else the plain files; else, when the folder holds only one variant (a folder of fp16
    files alone), that one; several and no plain files: InputError asking to choose."""
    weights = [p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", *PICKLE_SUFFIXES)]
    found = sorted({variant_of(p) or "" for p in weights})
    if variant is not None:
        if variant not in found:
            there = ", ".join(v or "(none)" for v in found) or "no weight files"
            raise InputError(f"--variant {variant}: '{folder}' has no {variant} weight files (variants there: {there})")
        return variant
    if "" in found or not found:
        return None
    if len(found) > 1:
        raise InputError(f"'{folder}' holds only variant weight files ({', '.join(found)}): choose one with --variant")
    return found[0]


def weight_files(folder: Path, component: str, allow_pickle: bool, variant: str | None = None) -> list[WeightFile]:
    """The weight files diffusers would load from `folder` (those of `variant`: choose_variant's); safetensors
    preferred, pickle gated."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and (variant_of(p) or None) == variant)
    safe = [p for p in files if p.suffix == ".safetensors"]
    pickled = [p for p in files if p.suffix in PICKLE_SUFFIXES]
    if safe:
        return [WeightFile(component, p, "safetensors", p.stat().st_size, check_safetensors(p)) for p in safe]
    if pickled:
        if not allow_pickle:
            raise InputError(
                f"'{pickled[0]}' is a pickle file: loading a pickle can run arbitrary code, so it is refused; "
                "convert it to safetensors, or pass --allow-pickle if you trust its source"
            )
        return [WeightFile(component, p, "pickle", p.stat().st_size) for p in pickled]
    raise InputError(f"no weight files (.safetensors) in '{folder}'")


# ----------------------------------------------------------------------------- locating (no loading)


@dataclass
class Part:
    """One model folder of a checkpoint (the denoiser or its autoencoder), checked but not loaded."""

    component: str  # "unet", "transformer", "vae", "vqvae"; "model" for a bare model folder
    folder: Path
    class_name: str  # config.json's _class_name: a diffusers ModelMixin class
    config: dict  # config.json as written
    files: list[WeightFile]
    variant: str | None = None  # the weight-file variant read (fp16, ...): asked for, or the only one there
    single_file: SingleFile | None = None  # built from a single file's tensors (files: that file), config in folder

    def loaded_weights(self) -> list[WeightFile]:
        """The files diffusers' from_pretrained reads (weight_files lists all there are): the sharded
        index's shards, else the single file (LOADED_NAMES)."""
        if self.single_file is not None:
            return self.files
        single, index_name = loaded_names(self.files[0].format, self.variant)
        by_name = {w.path.name: w for w in self.files}
        index = self.folder / index_name
        if index.is_file():
            weight_map = read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise InputError(f"'{index}' has no weight_map: not a sharded {self.files[0].format} index")
            missing = sorted({str(f) for f in weight_map.values()} - set(by_name))
            if missing:
                raise InputError(
                    f"'{index}' names shard '{missing[0]}', which is not a {self.files[0].format} file in "
                    f"'{self.folder}'"
                )
            return [by_name[f] for f in sorted(set(weight_map.values()))]
        if single not in by_name:
            raise InputError(
                f"cannot load {self.component} from '{self.folder}': no {single} (nor its sharded index "
                f"{index_name}), which is what diffusers reads"
            )
        return [by_name[single]]


@dataclass
class CheckpointFiles:
    """A checkpoint found and checked without loading anything: what `load` instantiates, and all that
    `flatcheck info` reads (configs and safetensors headers)."""

    source: str
    form: str
    root: Path
    pipeline_class: str | None
    denoiser_component: str  # "unet", "transformer", or "." for a bare model
    denoiser: Part
    vae: Part | None
    scheduler_class: str
    scheduler_config: dict  # as written (or the default schedule's)
    scheduler_origin: str
    index: dict = field(default_factory=dict)
    single_file: SingleFile | None = None

    @property
    def weight_files(self) -> list[WeightFile]:
        return self.denoiser.files + (self.vae.files if self.vae is not None else [])


def _part(folder: Path, component: str, allow_pickle: bool, variant: str | None = None) -> Part:
    if not (folder / "config.json").is_file():
        raise InputError(f"'{folder}' has no config.json for its {component}")
    config = read_json(folder / "config.json")
    check_class(config.get("_class_name"), "ModelMixin", folder / "config.json")
    chosen = choose_variant(folder, variant)
    files = weight_files(folder, component, allow_pickle, chosen)
    return Part(component, folder, config["_class_name"], config, files, chosen)


# The schedule of a checkpoint that ships none (stated in every report as DEFAULT_SCHEDULER_NOTE).
DEFAULT_SCHEDULER = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.02,
}
DEFAULT_SCHEDULER_NOTE = "default DDPMScheduler (linear betas 1e-4..0.02, T=1000, epsilon): the checkpoint ships none"


def scheduler_config(folder: Path) -> dict:
    """scheduler_config.json of a folder (or of a pipeline's scheduler/), its class checked."""
    folder = Path(folder).expanduser()
    for cand in (folder / "scheduler_config.json", folder / "scheduler" / "scheduler_config.json"):
        if cand.is_file():
            config = read_json(cand)
            check_class(config.get("_class_name"), "SchedulerMixin", cand)
            return config
    if not folder.exists():
        raise InputError(f"scheduler folder '{folder}' does not exist")
    raise InputError(f"'{folder}' holds no scheduler_config.json")


def load_keywords(o) -> dict:
    """The keywords of locate, load and check that say how MODEL is read, from an object holding them as
    attributes (the command line's options)."""
    return dict(
        scheduler=o.scheduler,
        allow_pickle=o.allow_pickle,
        variant=getattr(o, "variant", None),
        model_config=getattr(o, "model_config", None),
    )


def locate(
    model: str | None = None,
    *,
    scheduler: str | Path | None = None,
    allow_pickle: bool = False,
    variant: str | None = None,
    model_config: str | Path | None = None,
) -> CheckpointFiles:
    """Resolve MODEL and check everything that can be checked without loading weights: the configs, the
    classes they name, the weight files (pickle gated, safetensors headers and sizes; variant: diffusers'
    weight-file variant, e.g. fp16; a folder holding one variant only is read as that variant).
    model_config: the configs of a single-file checkpoint (core.single_file.config_source)."""
    root, form = resolve(model, allow_pickle)
    source = model or DEFAULT_BUNDLED
    if form == "single-file":
        if variant is not None:
            raise InputError(f"--variant reads a diffusers folder's weight files; '{root}' is a single file")
        return _locate_single_file(source, root, scheduler, allow_pickle, model_config)
    if model_config is not None:
        raise InputError(
            f"--model-config gives the configs of a single-file checkpoint; '{root}' is a {form} folder with its own"
        )
    vae = None
    pipeline_class = None
    index: dict = {}
    if (root / "model_index.json").is_file():
        index = read_json(root / "model_index.json")
        pipeline_class = index.get("_class_name")
        if isinstance(pipeline_class, list) or (pipeline_class and not str(pipeline_class).isidentifier()):
            raise InputError(f"{root / 'model_index.json'} asks for custom pipeline code {pipeline_class!r}: never run")
        check_class(pipeline_class, "DiffusionPipeline", root / "model_index.json")
        check_component_sources(index, root / "model_index.json")
        comp = next((c for c in DENOISER_COMPONENTS if c in index), None)
        if comp is None:
            raise InputError(f"{root / 'model_index.json'} lists no denoiser component (unet or transformer)")
        denoiser = _part(root / comp, comp, allow_pickle, variant)
        for ae in AUTOENCODER_COMPONENTS:
            if ae in index and (root / ae).is_dir():
                vae = _part(root / ae, ae, allow_pickle, variant)
                break
        shipped = root / "scheduler" if (root / "scheduler").is_dir() else None
    else:
        comp = "."
        denoiser = _part(root, "model", allow_pickle, variant)
        shipped = None
    if scheduler is not None:
        sched, origin = scheduler_config(Path(scheduler)), f"--scheduler {scheduler}"
    elif shipped is not None:
        sched, origin = scheduler_config(shipped), "checkpoint (scheduler/)"
    else:
        sched, origin = dict(DEFAULT_SCHEDULER), DEFAULT_SCHEDULER_NOTE
    from .config_checks import check_denoiser_config, check_schedule

    check_denoiser_config(denoiser.config, denoiser.folder / "config.json")
    if vae is not None:
        check_denoiser_config(vae.config, vae.folder / "config.json")
    check_schedule(sched, shipped if scheduler is None else Path(scheduler))
    if form == "pipeline" and source != str(root) and root.parent == bundled_root():
        form = "bundled"
    return CheckpointFiles(
        source=source,
        form=form,
        root=root,
        pipeline_class=pipeline_class,
        denoiser_component=comp,
        denoiser=denoiser,
        vae=vae,
        scheduler_class=sched["_class_name"],
        scheduler_config=sched,
        scheduler_origin=origin,
        index=index,
    )


def _locate_single_file(
    source: str, path: Path, scheduler: str | Path | None, allow_pickle: bool, model_config: str | Path | None
) -> CheckpointFiles:
    """A single file: its layout from the tensor names, configs from --model-config or bundled, checked."""
    from . import single_file as sfm

    sf = sfm.locate_file(path, None if model_config is None else Path(model_config), allow_pickle)
    name = "unet" if sf.layout.kind == "ldm-unet" else "transformer"
    folder = sf.configs.folders.get(name)
    if folder is None or not (folder / "config.json").is_file():
        raise InputError(f"the configs of {sf.configs.origin} have no {name}/config.json for '{path}'")
    config = read_json(folder / "config.json")
    check_class(config.get("_class_name"), "ModelMixin", folder / "config.json")
    if config["_class_name"] != sf.layout.denoiser_class:
        raise InputError(
            f"'{path}' holds a {sf.layout.denoiser_class}, but {folder / 'config.json'} is a {config['_class_name']}"
        )

    def part(component: str, where: str, cfg_folder: Path, cfg: dict) -> Part:
        entries = sfm.component_tensors(sf.tensors, sf.layout, where)
        files = [WeightFile(component, path, sf.format, sfm.bytes_of(entries), entries)]
        return Part(component, cfg_folder, cfg["_class_name"], cfg, files, None, sf)

    denoiser = part(name, "denoiser", folder, config)
    vae = None
    vae_folder = sf.configs.folders.get("vae")
    if vae_folder is not None and (vae_folder / "config.json").is_file():
        if sf.layout.vae_prefix is not None:
            vae_config = read_json(vae_folder / "config.json")
            check_class(vae_config.get("_class_name"), "ModelMixin", vae_folder / "config.json")
            vae = part("vae", "vae", vae_folder, vae_config)
        elif sf.text_source_vae() is not None:  # beside it, in a --model-config pipeline folder
            vae = _part(vae_folder, "vae", allow_pickle)
    if scheduler is not None:
        sched, origin = scheduler_config(Path(scheduler)), f"--scheduler {scheduler}"
    elif "scheduler" in sf.configs.folders:
        sched, origin = scheduler_config(sf.configs.folders["scheduler"]), f"{sf.configs.origin} (scheduler/)"
    else:
        sched, origin = dict(DEFAULT_SCHEDULER), DEFAULT_SCHEDULER_NOTE
    return CheckpointFiles(
        source=source,
        form="single-file",
        root=path,
        pipeline_class=sf.configs.pipeline_class,
        denoiser_component=name,
        denoiser=denoiser,
        vae=vae,
        scheduler_class=sched["_class_name"],
        scheduler_config=sched,
        scheduler_origin=origin,
        index=sf.configs.index,
        single_file=sf,
    )


# ----------------------------------------------------------------------------- loading


def _meta_module(part: Part, cls):
    """The part's model built from its config on the meta device (no memory for weights, none read)."""
    import torch

    try:
        with torch.device("meta"):
            return cls.from_config(part.config)
    except Exception as exc:  # noqa: BLE001 - a config diffusers cannot build from is the user's input
        raise InputError(
            f"cannot build {part.class_name} from '{part.folder / 'config.json'}': "
            f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
        ) from None


def _load_component(part: Part, dtype, meta: bool = False):
    from .weight_names import check_weight_names, refuse_loading_info

    cls = diffusers_class(part.class_name, "ModelMixin", part.folder / "config.json")
    if meta:  # shapes only, for a memory plan: built from the config, no weights read
        module = _meta_module(part, cls)
        check_weight_names(part, module)
        return meta_to(module, dtype).eval().requires_grad_(False)
    if part.single_file is not None:
        from .single_file import load_module

        where = "denoiser" if part.component in DENOISER_COMPONENTS else part.component
        module = load_module(cls, part.single_file, where, part.folder, dtype, part.component)
        check_finite(module, part.component)
        return module.eval().requires_grad_(False)
    use_safetensors = part.files[0].format == "safetensors"
    if use_safetensors:  # the names, before any weight is read (a meta build costs no memory)
        check_weight_names(part, _meta_module(part, cls))
    try:
        module, info = cls.from_pretrained(
            part.folder,
            torch_dtype=dtype,
            use_safetensors=use_safetensors,
            local_files_only=True,
            variant=part.variant,
            output_loading_info=True,
        )
        refuse_loading_info(part, info)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"cannot load {part.component} from '{part.folder}': {str(exc).splitlines()[0][:300]}"
        ) from exc
    check_finite(module, part.component)
    return module.eval().requires_grad_(False)


def meta_to(module, dtype):
    """A meta-device module in `dtype`, without diffusers' warning about modules "that should be kept in
    float32" (it is about loading real weights; a meta module has none)."""
    import torch

    if dtype == torch.float32:
        return module
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        return module.to(dtype)
    finally:
        diffusers_logging.set_verbosity(level)


def check_finite(module: torch.nn.Module, component: str) -> None:
    import torch

    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if t.is_floating_point() and not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).sum().item()
            raise InputError(f"non-finite weights: tensor '{name}' of the {component} holds {bad} NaN/Inf value(s)")


def default_scheduler():
    return _scheduler(DEFAULT_SCHEDULER["_class_name"], DEFAULT_SCHEDULER, Path("(default)"))


def _scheduler(class_name: str, config: dict, where: Path):
    cls = diffusers_class(class_name, "SchedulerMixin", where)
    try:
        return cls.from_config(config)
    except Exception as exc:  # noqa: BLE001 - a config diffusers cannot build from is the user's input
        first = (str(exc).splitlines() or [""])[0][:300]
        raise InputError(f"cannot build {class_name} from '{where}': {type(exc).__name__}: {first}") from None


def load_scheduler(folder: Path):
    """A scheduler from a folder holding scheduler_config.json (or a pipeline's scheduler/)."""
    config = scheduler_config(folder)
    return _scheduler(config["_class_name"], config, Path(folder))


def load(
    model: str | None = None,
    *,
    scheduler: str | Path | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    allow_pickle: bool = False,
    runnable: bool = True,
    variant: str | None = None,
    model_config: str | Path | None = None,
) -> Checkpoint:
    """Resolve, check and load MODEL's denoiser (+ VAE) and noise schedule; dtype: float32 unless given.

    runnable: a denoiser that no family serves (flatcheck.families: a video or audio model, a class not
    supported yet) is refused in one line before any weight is read; False loads it anyway (to describe it).
    device "meta": the modules are built from their configs on the meta device and no weights are read
    (what a memory plan traces: flatcheck.plan)."""
    import torch

    from . import memory

    found = locate(model, scheduler=scheduler, allow_pickle=allow_pickle, variant=variant, model_config=model_config)
    if runnable:
        from ..families import family_of
        from .class_facts import config_with_defaults

        family_of(found.denoiser.class_name, config_with_defaults(found.denoiser.class_name, found.denoiser.config))
        if found.single_file is not None:
            from .single_file import check_components

            check_components(found.single_file)
    dtype = dtype or torch.float32
    meta = torch.device(device).type == "meta"
    if not meta:
        memory.mark_baseline()  # the process before these weights: a memory plan's baseline
    denoiser = _load_component(found.denoiser, dtype, meta)
    vae = _load_component(found.vae, dtype, meta) if found.vae is not None else None
    sched = _scheduler(found.scheduler_class, found.scheduler_config, found.root)
    if not meta:
        denoiser.to(device)
        if vae is not None:
            vae.to(device)
    return Checkpoint(
        source=found.source,
        form=found.form,
        root=found.root,
        pipeline_class=found.pipeline_class,
        denoiser_component=found.denoiser_component,
        denoiser=denoiser,
        scheduler=sched,
        scheduler_origin=found.scheduler_origin,
        vae=vae,
        weight_files=found.weight_files,
        index=found.index,
        allow_pickle=allow_pickle,
        variant=variant,
        single_file=found.single_file,
    )
