"""What a denoiser network is, from its class name and config alone.

Nothing here needs the network's weights, or torch: `flatcheck info` describes a checkpoint from its
config.json and safetensors headers (a Flux-dev transformer would need 24-48 GB to instantiate), and a
loaded network is described by the same functions from `type(net).__name__` and `net.config`
(`describe_network`), so the two paths cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..errors import InputError

FLOW_SCHEDULER_PREFIX = "FlowMatch"  # diffusers' flow-matching schedulers: FlowMatchEulerDiscreteScheduler, ...


@dataclass(frozen=True)
class NetCall:
    """How one denoiser class is called: the keyword of its input, and what it is conditioned on."""

    sample: str  # keyword of x_t ("sample" for UNets, "hidden_states" for transformers)
    conditioning: str  # "none", "class", "text", or "config": read from the config (UNet2DModel, Transformer2DModel)
    timestep_scale: float = 1.0  # what the network is given: t x this (Flux takes t / 1000)
    packed: bool = False  # Flux: 2x2 patches packed into tokens, with image position ids
    # Persistent buffers the class saves beside its parameters (state-dict names): a safetensors header
    # lists them like weights, so counting parameters from headers leaves them out. SD3 stores its
    # position-embedding table when pos_embed_max_size is set (56.6 M numbers in SD3-medium).
    stored_buffers: tuple[str, ...] = ()


# Every denoiser class flatcheck runs, called by keyword (never by position); anything else is refused
# with a line naming the class. tests/test_info_headers.py checks `stored_buffers` against each class
# built on the meta device from the published configs.
NET_CALLS: dict[str, NetCall] = {
    "UNet2DModel": NetCall("sample", "config"),
    "UNet2DConditionModel": NetCall("sample", "text"),
    "DiTTransformer2DModel": NetCall("hidden_states", "class"),
    "Transformer2DModel": NetCall("hidden_states", "config"),
    "PixArtTransformer2DModel": NetCall("hidden_states", "text"),
    "SD3Transformer2DModel": NetCall("hidden_states", "text", stored_buffers=("pos_embed.pos_embed",)),
    "FluxTransformer2DModel": NetCall("hidden_states", "text", timestep_scale=1e-3, packed=True),
}


def call_of(class_name: str, own: NetCall | None = None) -> NetCall:
    """The class's entry of NET_CALLS, or `own`: a module built in Python (a test double, a wrapper) may
    declare its own as a `flatcheck_call` attribute."""
    if isinstance(own, NetCall):
        return own
    if class_name in NET_CALLS:
        return NET_CALLS[class_name]
    raise InputError(f"{class_name} is not supported yet: no adapter for its call signature (supported: {', '.join(NET_CALLS)})")


def net_call(net) -> NetCall:
    """call_of for a network object."""
    return call_of(type(net).__name__, getattr(net, "flatcheck_call", None))


@dataclass(frozen=True)
class ModelInfo:
    sample_shape: tuple[int, ...]  # (C, H, W) of what the denoiser sees
    space: str  # "pixel" or "latent"
    conditioning: str  # "none", "class" or "text"
    num_classes: int | None
    learned_variance: bool = False  # the network also predicts the variance (out_channels = 2 C)
    null_label: int | None = None  # class models: the null class of classifier-free guidance, if any


def describe_config(name: str, cfg: Mapping, has_vae: bool, sample_size: int | None = None,
                    own_call: NetCall | None = None) -> ModelInfo:
    """What a network of class `name` with config `cfg` is (cfg as the instantiated class holds it: the
    class's defaults filled in); sample_size: the side of its input for models whose config has none (Flux)."""
    size = sample_size or cfg.get("sample_size") or 0
    hw = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    call = own_call if isinstance(own_call, NetCall) else NET_CALLS.get(name)
    channels = cfg.get("in_channels", 0)
    if call is not None and call.packed:  # Flux: in_channels counts the 2x2 packed latent channels
        channels //= 4
    shape = (channels, *hw)
    kind = call.conditioning if call is not None else "none"
    num_classes = null = None
    if kind in ("config", "class"):
        if name == "UNet2DModel":
            num_classes = cfg.get("num_class_embeds")
            kind = "class" if num_classes or cfg.get("class_embed_type") else "none"
        else:  # DiT-style: ada-norm-zero label embedding with one extra row, the null class
            num_classes = cfg.get("num_embeds_ada_norm")
            if cfg.get("norm_type") == "ada_norm_zero" or name == "DiTTransformer2DModel":
                kind, null = "class", num_classes
            else:
                kind = "text" if cfg.get("cross_attention_dim") else "none"
    out = cfg.get("out_channels") or cfg.get("in_channels", 0)
    if call is not None and call.packed:
        out //= 4
    return ModelInfo(shape, "latent" if has_vae else "pixel", kind, num_classes if kind == "class" else None,
                     learned_variance=bool(channels) and out == 2 * channels, null_label=null)


def describe_network(net, has_vae: bool, sample_size: int | None = None) -> ModelInfo:
    """describe_config for a network object: it reads only `net.config` and its class name."""
    return describe_config(type(net).__name__, net.config, has_vae, sample_size, getattr(net, "flatcheck_call", None))


def default_sample_size_of(name: str, cfg: Mapping, own_call: NetCall | None = None) -> int | None:
    """The input side of a model whose config has no sample_size: the pipeline's default (Flux: 1024 px
    images, so 128 latents), else None (the config's own sample_size is used). InputError for a class
    flatcheck does not run."""
    if cfg.get("sample_size"):
        return None
    if call_of(name, own_call).packed:
        return 128  # FluxPipeline.default_sample_size
    return None


def is_flow_matching_class(scheduler_class: str) -> bool:
    """diffusers' flow-matching schedulers (FlowMatchEulerDiscreteScheduler, FlowMatchHeun...)."""
    return scheduler_class.startswith(FLOW_SCHEDULER_PREFIX)
