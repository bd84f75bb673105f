"""`flatcheck info`: what a checkpoint is, read from its configs and weights."""

from __future__ import annotations

from dataclasses import dataclass, field

from .checkpoint import Checkpoint
from .denoiser import default_sample_size, describe_network, is_flow_matching, net_call
from .runtime import dtype_name


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
    parameters: int
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
    weight_files: list[WeightFileInfo] = field(default_factory=list)


def describe_checkpoint(ckpt: Checkpoint) -> CheckpointInfo:
    from ..errors import InputError
    from .conditioning import pipeline_default

    net = ckpt.denoiser
    try:
        net_call(net)
        size = default_sample_size(ckpt)
        flow = is_flow_matching(ckpt.scheduler)
        supported = "yes" if flow or hasattr(ckpt.scheduler, "alphas_cumprod") else \
            f"no: {type(ckpt.scheduler).__name__} is neither a DDPM-family nor a flow-matching noise schedule"
    except InputError as exc:
        size, flow, supported = None, is_flow_matching(ckpt.scheduler), f"no: {exc}"
    model = describe_network(net, ckpt.vae is not None, size)
    sched = ckpt.scheduler.config
    if model.conditioning == "text" or model.null_label is not None:
        guidance = pipeline_default(ckpt.pipeline_class, "guidance_scale")
    else:
        guidance = None
    c, h, w = model.sample_shape
    if ckpt.vae is not None:
        f = 2 ** (len(ckpt.vae.config.get("block_out_channels", (0,))) - 1)
        image = [ckpt.vae.config.get("in_channels", 3), h * f, w * f]
    else:
        image = [c, h, w]
    return CheckpointInfo(
        source=ckpt.source,
        form=ckpt.form,
        path=str(ckpt.root),
        pipeline_class=ckpt.pipeline_class,
        denoiser_class=type(net).__name__,
        parameters=ckpt.num_parameters,
        dtype=dtype_name(next(net.parameters()).dtype),
        sample_shape=list(model.sample_shape),
        space=model.space,
        conditioning=model.conditioning,
        num_classes=model.num_classes,
        scheduler_class=type(ckpt.scheduler).__name__,
        num_train_timesteps=int(sched.num_train_timesteps),
        beta_schedule=sched.get("beta_schedule"),
        prediction_type="flow" if flow else sched.get("prediction_type", "epsilon"),
        scheduler_origin=ckpt.scheduler_origin,
        vae_class=type(ckpt.vae).__name__ if ckpt.vae is not None else None,
        image_shape=image,
        text_encoders=[v for k, v in ckpt.text_components.items() if k.startswith("text_encoder")],
        null_label=model.null_label,
        guidance_scale=guidance,
        learned_variance=model.learned_variance,
        supported=supported,
        weight_files=[
            WeightFileInfo(w.component, str(w.path.relative_to(ckpt.root)) if w.path.is_relative_to(ckpt.root) else str(w.path), w.format, w.bytes)
            for w in ckpt.weight_files
        ],
    )
