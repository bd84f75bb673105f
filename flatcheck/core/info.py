"""`flatcheck info`: what a checkpoint is, read from its configs and weights."""

from __future__ import annotations

from dataclasses import dataclass, field

from .checkpoint import Checkpoint
from .denoiser import describe_network
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
    weight_files: list[WeightFileInfo] = field(default_factory=list)


def describe_checkpoint(ckpt: Checkpoint) -> CheckpointInfo:
    net = ckpt.denoiser
    model = describe_network(net, ckpt.vae is not None)
    sched = ckpt.scheduler.config
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
        prediction_type=sched.get("prediction_type", "epsilon"),
        scheduler_origin=ckpt.scheduler_origin,
        vae_class=type(ckpt.vae).__name__ if ckpt.vae is not None else None,
        weight_files=[
            WeightFileInfo(w.component, str(w.path.relative_to(ckpt.root)) if w.path.is_relative_to(ckpt.root) else str(w.path), w.format, w.bytes)
            for w in ckpt.weight_files
        ],
    )
