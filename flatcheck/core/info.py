"""`flatcheck info`: what a checkpoint is, read from its configs and the headers of its weight files.

One description (`describe`) of one set of facts (`CheckpointFacts`), which come two ways:
  - `read_facts(MODEL)`: from the files alone (core.checkpoint.locate). Parameter counts and dtypes come
    from the safetensors headers, never from tensor data; configs get their classes' defaults the way
    `from_config` fills them in (core.class_facts). torch is not imported: a Flux-dev folder
    (11.9 B parameters, 24-48 GB to instantiate) is described in about a second.
  - `facts_of(ckpt)`: from a loaded checkpoint, for the audit's report: the modules' own configs, and
    their parameters counted and typed as loaded (--dtype).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Iterable, Mapping

from ..errors import InputError
from ..families import Family, NetCall, family_of

if TYPE_CHECKING:
    from .checkpoint import Checkpoint, Part, TensorEntry, WeightFile


@dataclass
class WeightFileInfo:
    component: str
    path: str
    format: str
    bytes: int


@dataclass
class CheckpointInfo:
    source: str
    form: str
    path: str
    pipeline_class: str | None
    denoiser_class: str
    parameters: int  # the denoiser's parameters (persistent buffers stored beside them are not counted)
    # of those parameters: as stored (info) or as loaded (a loaded checkpoint); "mixed: a, b" when several, most first
    dtype: str
    sample_shape: list[int]
    space: str
    conditioning: str
    num_classes: int | None
    scheduler_class: str
    num_train_timesteps: int
    beta_schedule: str | None
    prediction_type: str
    scheduler_origin: str
    vae_class: str | None
    image_shape: list[int]  # (C, H, W) of the images it makes (latent models: after decoding)
    text_encoders: list[str]  # text encoder classes of a text-to-image pipeline
    null_label: int | None  # class models: the null class of classifier-free guidance (None: none)
    guidance_scale: float | None  # the pipeline's default guidance (None: no guidance)
    learned_variance: bool  # out_channels = 2 x in_channels: the network also predicts the variance
    supported: str  # "yes", or why flatcheck's measures cannot run it yet
    weight_files: list[WeightFileInfo] = field(default_factory=list)  # the files read (the variant's)
    variant: str | None = None  # the weight-file variant read (--variant, or the only one a folder holds); None: plain
    configs: str | None = None  # a single file: where its configs came from (--model-config DIR, or bundled)


@dataclass(frozen=True)
class ModelConfig:
    """A component as its class name and config (as an instance of the class holds it: defaults filled in)."""

    class_name: str
    config: Mapping


@dataclass
class CheckpointFacts:
    """What a description is computed from: no modules, only names, configs and counts."""

    source: str
    form: str
    root: Path
    pipeline_class: str | None
    denoiser: ModelConfig
    own_call: NetCall | None  # a network built in Python may declare its call (flatcheck.families.NetCall)
    parameters: int
    dtype: str
    vae: ModelConfig | None
    scheduler: ModelConfig
    has_alphas_cumprod: bool  # a DDPM-family schedule (what flatcheck noises with, besides flow matching)
    scheduler_origin: str
    text_components: dict[str, str]
    weight_files: list[WeightFile]
    variant: str | None = None
    configs: str | None = None  # a single file's config origin


def describe(f: CheckpointFacts) -> CheckpointInfo:
    from .class_facts import call_default

    name, cfg = f.denoiser.class_name, f.denoiser.config
    sched = f.scheduler.config
    try:
        family = family_of(name, cfg, f.own_call)
    except InputError as exc:
        family, size, supported = Family(), None, f"no: {exc}"  # described as a plain network, from its config
    else:
        size = family.default_sample_size(cfg)
        supported = (
            "yes"
            if family.prediction(f.scheduler.class_name, sched) == "flow" or f.has_alphas_cumprod
            else f"no: {f.scheduler.class_name} is neither a DDPM-family nor a flow-matching noise schedule"
        )
    prediction = family.prediction(f.scheduler.class_name, sched)
    model = family.describe(cfg, f.vae is not None, size)
    if model.conditioning == "text" or model.null_label is not None:
        guidance = call_default(f.pipeline_class, "guidance_scale")
    else:
        guidance = None
    c, h, w = model.sample_shape
    if f.vae is not None:
        factor = family.vae_factor(f.vae.config)
        image = [f.vae.config.get("in_channels", 3), h * factor, w * factor]
    else:
        image = [c, h, w]
    return CheckpointInfo(
        source=f.source,
        form=f.form,
        path=str(f.root),
        pipeline_class=f.pipeline_class,
        denoiser_class=name,
        parameters=f.parameters,
        dtype=f.dtype,
        sample_shape=list(model.sample_shape),
        space=model.space,
        conditioning=model.conditioning,
        num_classes=model.num_classes,
        scheduler_class=f.scheduler.class_name,
        num_train_timesteps=int(sched["num_train_timesteps"]),
        beta_schedule=sched.get("beta_schedule"),
        prediction_type=prediction,
        scheduler_origin=f.scheduler_origin,
        vae_class=f.vae.class_name if f.vae is not None else None,
        image_shape=image,
        text_encoders=[v for k, v in f.text_components.items() if k.startswith("text_encoder")],
        null_label=model.null_label,
        guidance_scale=guidance,
        learned_variance=model.learned_variance,
        supported=supported,
        variant=f.variant,
        configs=f.configs,
        weight_files=[
            WeightFileInfo(
                w.component,
                w.path.name
                if w.path == f.root
                else str(w.path.relative_to(f.root))
                if w.path.is_relative_to(f.root)
                else str(w.path),
                w.format,
                w.bytes,
            )
            for w in f.weight_files
        ],
    )


def dtype_label(elements: Mapping[str, int]) -> str:
    """dtype name -> number of elements  ->  'float32', or 'mixed: bfloat16, float32' (most elements first)."""
    if not elements:
        return "none"
    names = sorted(elements, key=lambda k: (-elements[k], k))
    return names[0] if len(names) == 1 else "mixed: " + ", ".join(names)


# ----------------------------------------------------------------------------- a loaded checkpoint


def facts_of(ckpt: Checkpoint) -> CheckpointFacts:
    """The facts of a loaded checkpoint: its modules' configs; its parameters counted and typed as loaded."""
    from .checkpoint import text_components

    net = ckpt.denoiser
    elements: Counter = Counter()
    for p in net.parameters():
        elements[str(p.dtype).removeprefix("torch.")] += p.numel()
    vae = ckpt.vae
    return CheckpointFacts(
        source=ckpt.source,
        form=ckpt.form,
        root=ckpt.root,
        pipeline_class=ckpt.pipeline_class,
        denoiser=ModelConfig(type(net).__name__, net.config),
        own_call=getattr(net, "flatcheck_call", None),
        parameters=ckpt.num_parameters,
        dtype=dtype_label(elements),
        vae=ModelConfig(type(vae).__name__, vae.config) if vae is not None else None,
        scheduler=ModelConfig(type(ckpt.scheduler).__name__, ckpt.scheduler.config),
        has_alphas_cumprod=hasattr(ckpt.scheduler, "alphas_cumprod"),
        scheduler_origin=ckpt.scheduler_origin,
        text_components=text_components(ckpt.index),
        weight_files=list(ckpt.weight_files),
        variant=ckpt.denoiser_variant,
        configs=getattr(ckpt, "config_origin", None),
    )


def describe_checkpoint(ckpt: Checkpoint) -> CheckpointInfo:
    return describe(facts_of(ckpt))


# ----------------------------------------------------------------------------- from the files alone


def read_facts(
    model: str | None = None,
    *,
    scheduler: str | Path | None = None,
    allow_pickle: bool = False,
    variant: str | None = None,
    model_config: str | Path | None = None,
) -> CheckpointFacts:
    """The facts of MODEL read from its files: configs and safetensors headers, no tensor data."""
    from .checkpoint import locate, text_components
    from .class_facts import config_with_defaults, has_alphas_cumprod

    found = locate(model, scheduler=scheduler, allow_pickle=allow_pickle, variant=variant, model_config=model_config)
    part = found.denoiser
    config = config_with_defaults(part.class_name, part.config)
    parameters, elements = count_parameters(stored_tensors(part), stored_buffers(part.class_name, config))
    vae = found.vae
    sched = config_with_defaults(found.scheduler_class, found.scheduler_config)
    return CheckpointFacts(
        source=found.source,
        form=found.form,
        root=found.root,
        pipeline_class=found.pipeline_class,
        denoiser=ModelConfig(part.class_name, config),
        own_call=None,
        parameters=parameters,
        dtype=dtype_label(elements),
        vae=ModelConfig(vae.class_name, config_with_defaults(vae.class_name, vae.config)) if vae is not None else None,
        scheduler=ModelConfig(found.scheduler_class, sched),
        has_alphas_cumprod=has_alphas_cumprod(found.scheduler_class, sched),
        scheduler_origin=found.scheduler_origin,
        text_components=text_components(found.index),
        weight_files=found.weight_files,
        variant=found.denoiser.variant,
        configs=found.single_file.configs.origin if found.single_file is not None else None,
    )


def describe_files(
    model: str | None = None,
    *,
    scheduler: str | Path | None = None,
    allow_pickle: bool = False,
    variant: str | None = None,
    model_config: str | Path | None = None,
) -> CheckpointInfo:
    """`flatcheck info`: MODEL described from its configs and weight-file headers (nothing loaded)."""
    return describe(
        read_facts(model, scheduler=scheduler, allow_pickle=allow_pickle, variant=variant, model_config=model_config)
    )


def stored_tensors(part: Part) -> list[Mapping[str, TensorEntry]]:
    """Name -> dtype and shape of every tensor diffusers would load for the component, one table per file."""
    files = part.loaded_weights()
    if all(w.tensors is not None for w in files):  # safetensors headers; a single file's entries (pickle too)
        return [w.tensors for w in files]
    # A pickle has no header: its tensors are known only by unpickling it (--allow-pickle allowed that),
    # with diffusers' own reader (torch.load, weights_only, memory-mapped where the file allows).
    from diffusers.models.model_loading_utils import load_state_dict

    from .checkpoint import TensorEntry

    tables = []
    for w in files:
        try:
            state = load_state_dict(str(w.path))
        except Exception as exc:  # noqa: BLE001 - whatever unpickling raises, said in one line
            raise InputError(
                f"cannot read '{w.path}': {str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}"
            ) from exc
        tables.append({k: TensorEntry(str(t.dtype).removeprefix("torch."), tuple(t.shape)) for k, t in state.items()})
    return tables


def count_parameters(tables: Iterable[Mapping[str, TensorEntry]], buffers: Collection[str]) -> tuple[int, Counter]:
    """(number of parameters, dtype -> elements) of the stored tensors that are not buffers."""
    elements: Counter = Counter()
    for table in tables:
        for name, t in table.items():
            if name not in buffers:
                elements[t.dtype] += t.numel
    return sum(elements.values()), elements


def stored_buffers(class_name: str, config: Mapping) -> Collection[str]:
    """State-dict names of the persistent buffers a network of this class saves beside its parameters."""
    try:
        return family_of(class_name, config).stored_buffers
    except InputError:
        return meta_buffers(class_name, config)


def meta_buffers(class_name: str, config: Mapping) -> set[str]:
    """For a class flatcheck does not run, which of its saved tensors are buffers is known only to the
    class itself: built on the meta device (no memory for weights), it tells. This imports torch and
    diffusers, which is why the families flatcheck runs declare theirs (flatcheck.families: Family.stored_buffers)."""
    import torch

    from .class_facts import diffusers_class

    cls = diffusers_class(class_name, "ModelMixin", Path(class_name))
    try:
        with torch.device("meta"):
            module = cls.from_config(dict(config))
    except Exception:  # noqa: BLE001 - a class that cannot be built on the meta device: every stored tensor counts
        return set()
    return set(module.state_dict()) - {name for name, _ in module.named_parameters()}
