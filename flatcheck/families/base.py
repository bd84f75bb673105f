"""The family contract: everything flatcheck must know about one kind of diffusers model, in one place.

A family is one file in this package and one line in its registry (`flatcheck.families.FAMILIES`). It says:
  which denoiser classes and pipelines it serves       denoisers, pipelines, serves()
  what a network of its kind is, from its config       describe(), default_sample_size(), stored_buffers
  how the network is called                            call_kwargs(), output(), combine_guidance()
  how conditions are encoded                           encode_prompts(), guidance()
  the loss target and the noising                      prediction() (epsilon, v_prediction, sample or flow)
  the sampler set-up                                   set_timesteps()
  the latent space                                     latent_from_encoder(), latent_to_decoder(), vae_factor()
  its block names for the per-block breakdown          blocks
  its single files in a trainer's original layout      original_layout()
The engine (flatcheck.core) and the measures ask the family; nothing outside this package names a
denoiser or pipeline class (tests/test_layout.py).

Everything a description needs (`flatcheck info`) is answered from class names and configs alone, without
torch: module-level imports here are torch-free, and the methods that compute import torch themselves.

Shapes: x_t is [B, C, H, W] (a family whose network takes tokens packs and unpacks them in inputs/output);
t is [B], long or float, in the training timestep scale [0, T) (flow matching: t = T sigma).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

FLOW = "flow"  # flow matching: x_t = (1 - sigma) x0 + sigma eps, the network predicts v = eps - x0
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
FLOW_SCHEDULER_PREFIX = "FlowMatch"  # diffusers' flow-matching schedulers: FlowMatchEulerDiscreteScheduler, ...


@dataclass(frozen=True)
class ModelInfo:
    sample_shape: tuple[int, ...]  # (C, H, W) of what the denoiser sees
    space: str  # "pixel" or "latent"
    conditioning: str  # "none", "class" or "text"
    num_classes: int | None
    learned_variance: bool = False  # the network also predicts the variance (out_channels = 2 C)
    null_label: int | None = None  # class models: the null class of classifier-free guidance, if any


@dataclass
class PromptTables:
    """Encoded prompts as a family hands them to core.conditioning: per-argument tables whose row k is
    prompt k and whose last row is the null (negative) prompt; `added` names the tables that go into
    added_cond_kwargs; `static` holds fixed keyword arguments (the same for every row)."""

    tables: dict[str, Any]
    added: tuple[str, ...] = ()
    static: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Guidance:
    scale: float
    source: str  # where the scale came from, for reports
    embedded: bool = False  # an input of the network (guidance distillation), not classifier-free guidance


def is_flow_scheduler(scheduler_class: str, config: Mapping | None = None) -> bool:
    """diffusers' flow-matching schedules: the FlowMatch* schedulers, or a multistep solver run on flow sigmas
    with a flow prediction (Sana's DPMSolverMultistepScheduler: prediction_type 'flow_prediction')."""
    return (
        scheduler_class.startswith(FLOW_SCHEDULER_PREFIX) or (config or {}).get("prediction_type") == "flow_prediction"
    )


# The prefix of the denoiser's tensors in the original trainers' single files (SD's ldm code, SGM, SD3, Flux).
ORIGINAL_PREFIX = "model.diffusion_model."


@dataclass(frozen=True)
class OriginalLayout:
    """A single file in an original trainer's layout, as the family serving it recognises it by tensor names."""

    kind: str  # "ldm-unet" (SD 1.x/2.x/XL), "sd3", "flux"
    denoiser_class: str
    prefix: str  # of the denoiser's tensors; "" when the file holds the bare network
    known: str | None = None  # the well-known model whose bundled configs fit (flatcheck/configs/<known>), or None


class TensorNames:
    """A single file's tensor names and shapes, as its header lists them (no weight is read)."""

    def __init__(self, tensors: Mapping):
        self._tensors = tensors

    def has(self, name: str) -> bool:
        return name in self._tensors

    def shape(self, name: str) -> tuple:
        return tuple(self._tensors[name].shape)

    def last_dims(self, prefix: str, suffix: str) -> set[int]:
        """The last dimension of every tensor named prefix...suffix."""
        return {tuple(v.shape)[-1] for k, v in self._tensors.items() if k.startswith(prefix) and k.endswith(suffix)}


class Family:
    """The defaults every family starts from: a network called as net(x_t, timestep, **conditions) on
    [B, C, H, W], a DDPM or flow schedule read from the scheduler, an autoencoder with a scaling (and shift)
    factor. A family overrides what differs, and nothing else."""

    name: str = ""
    title: str = ""  # what it is, in a few words (README, errors)
    denoisers: tuple[str, ...] = ()  # denoiser classes it serves
    pipelines: tuple[str, ...] = ()  # pipeline classes whose prompts it encodes (text families)
    input_name: str = "sample"  # keyword of x_t: "sample" for UNets, "hidden_states" for transformers
    conditioning: str = "none"  # "none", "class" or "text" (a family may read it from the config: conditions())
    timestep_scale: float = 1.0  # what the network is given: t x this (Flux takes t / 1000)
    # Persistent buffers the class saves beside its parameters (state-dict names): a safetensors header lists
    # them like weights, so counting parameters from headers leaves them out (tests/test_info_headers.py).
    stored_buffers: tuple[str, ...] = ()
    # First component of a parameter name -> block group (measures/sharpness/blocks adds these to its own).
    blocks: Mapping[str, str] = {}

    # -- what it serves
    def serves(self, class_name: str, config: Mapping) -> bool:
        return class_name in self.denoisers

    def original_layout(self, names: TensorNames) -> OriginalLayout | None:
        """A single file of this family in its original layout, told by its tensor names and a few shapes; None
        when it is not one (the default: the family has no single files)."""
        return None

    # -- what a network is, from its config (torch-free)
    def conditions(self, config: Mapping) -> str:
        return self.conditioning

    def latent_channels(self, config: Mapping) -> int:
        """The channels of x_t ([B, C, H, W]) for a network with this config."""
        return int(config.get("in_channels", 0) or 0)

    def output_channels(self, config: Mapping) -> int:
        return int(config.get("out_channels") or config.get("in_channels", 0) or 0)

    def num_classes(self, config: Mapping) -> tuple[int | None, int | None]:
        """(number of classes, null class) of a class-conditional network."""
        return None, None

    def default_sample_size(self, config: Mapping) -> int | None:
        """The input side when the config has no sample_size: the pipeline's default (None: the config's)."""
        return None

    def describe(self, config: Mapping, has_vae: bool, sample_size: int | None = None) -> ModelInfo:
        size = sample_size or config.get("sample_size") or 0
        hw = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        channels = self.latent_channels(config)
        kind = self.conditions(config)
        classes, null = self.num_classes(config) if kind == "class" else (None, None)
        out = self.output_channels(config)
        return ModelInfo(
            (channels, *hw),
            "latent" if has_vae else "pixel",
            kind,
            classes,
            learned_variance=bool(channels) and out == 2 * channels,
            null_label=null,
        )

    # -- the loss target and the noising
    def prediction(self, scheduler_class: str, config: Mapping) -> str:
        """What the network predicts under this schedule: FLOW (velocity eps - x0 at x_t = (1 - sigma) x0 + sigma
        eps), or the DDPM parametrisation the scheduler config names (epsilon, v_prediction, sample)."""
        if is_flow_scheduler(scheduler_class, config):
            return FLOW
        return config.get("prediction_type", "epsilon")

    # -- the call
    def call_kwargs(self, net, x_t: "torch.Tensor", t: "torch.Tensor", conditions: dict) -> dict:
        """The network's keyword arguments for x_t, t and the batch's conditions (core.conditioning's
        keyword arguments for these rows; {} for an unconditional model)."""
        if self.timestep_scale != 1.0:
            t = t.float() * self.timestep_scale
        return {self.input_name: x_t, "timestep": t, **conditions}

    def output(self, out: "torch.Tensor", x_t: "torch.Tensor") -> "torch.Tensor":
        """The network's first output as a [B, C', H, W] prediction in flatcheck's parametrisation (flow: the
        velocity eps - x0; a family whose network predicts its negative flips it here)."""
        return out

    def combine_guidance(self, on: "torch.Tensor", off: "torch.Tensor", scale: float) -> "torch.Tensor":
        """Classifier-free guidance of the mean prediction, as the family's pipeline combines the conditional
        and null passes."""
        return off + scale * (on - off)

    # -- conditions
    def encode_prompts(self, pipe, pipeline_class: str, prompts: list[str], device, ckpt) -> PromptTables:
        raise InputError(f"{self.title or self.name} takes no prompts")

    def guidance(self, pipeline_class: str | None, config: Mapping, given: float | None, default) -> Guidance:
        """The run's guidance scale: the one given, else the pipeline __call__'s default (`default`)."""
        if given is not None:
            return Guidance(float(given), "--guidance-scale")
        if default is not None:
            return Guidance(float(default), f"{pipeline_class}'s default")
        return Guidance(1.0, "none: the pipeline has no default")

    def max_sequence_length(self, pipeline_class: str, default: int) -> int:
        """The prompt length the pipeline's __call__ encodes to by default."""
        from ..core.conditioning import pipeline_default

        return pipeline_default(pipeline_class, "max_sequence_length") or default

    # -- the sampler set-up
    def set_timesteps(self, scheduler, steps: int, sample_shape: tuple[int, ...], config: Mapping) -> None:
        """scheduler.set_timesteps as the family's pipeline calls it."""
        scheduler.set_timesteps(steps)

    # -- the latent space
    def vae_factor(self, vae_config: Mapping) -> int:
        """Pixels per latent along a side."""
        return 2 ** (len(vae_config.get("block_out_channels", (0,))) - 1)

    def latent_scale_shift(self, vae_config: Mapping) -> tuple[float, float]:
        """(scale, shift) with latent = (encoder mean - shift) x scale."""
        return float(vae_config.get("scaling_factor", 1.0) or 1.0), float(vae_config.get("shift_factor", 0.0) or 0.0)

    def latent_from_encoder(self, vae, images: "torch.Tensor") -> "torch.Tensor":
        """Images in [-1, 1] -> the denoiser's latents (the encoder's mean, scaled and shifted)."""
        enc = vae.encode(images.to(vae.dtype))
        lat = (
            enc.latent_dist.mean
            if hasattr(enc, "latent_dist")
            else enc.latents
            if hasattr(enc, "latents")
            else enc.latent
        )
        scale, shift = self.latent_scale_shift(vae.config)
        return (lat - shift) * scale

    def latent_to_decoder(self, vae, z: "torch.Tensor") -> "torch.Tensor":
        """Latents -> images (the decoder's output, [-1, 1] nominal)."""
        scale, shift = self.latent_scale_shift(vae.config)
        return vae.decode(z.to(vae.dtype) / scale + shift).sample


@dataclass(frozen=True)
class NetCall:
    """A network built in Python (a test double, a wrapper) may say how it is called, as a `flatcheck_call`
    attribute: the keyword of its input and what it is conditioned on ("none" or "class")."""

    sample: str
    conditioning: str
    timestep_scale: float = 1.0


class Declared(Family):
    """The family of a module that declares its own call (NetCall)."""

    def __init__(self, call: NetCall, class_name: str):
        self.name, self.title = "declared", f"{class_name} (declares its call)"
        self.denoisers = (class_name,)
        self.input_name, self.conditioning, self.timestep_scale = call.sample, call.conditioning, call.timestep_scale

    def num_classes(self, config: Mapping) -> tuple[int | None, int | None]:
        return config.get("num_class_embeds"), None


def flow_shift_mu(seq_len: int, cfg: Mapping) -> float:
    """The pipelines' calculate_shift: mu linear in the image's token count between two anchors."""
    base_len, max_len = cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096)
    base_shift, max_shift = cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15)
    m = (max_shift - base_shift) / (max_len - base_len)
    return seq_len * m + (base_shift - m * base_len)
