"""The families wing: one file per model family, and this registry.

A family (base.Family) says in one place what flatcheck must know about one kind of diffusers model:
the classes it serves, how its network is called, how its conditions are encoded, its loss target and
sampler set-up, its latent space and block names. `family_of` finds the family of a denoiser class.

To add a family: one file here (a Family subclass and `FAMILY = ...`), one line in FAMILIES, one tiny
fixture in tests/fixtures/ (README, Development).
"""

from __future__ import annotations

from typing import Mapping

from ..errors import InputError
from . import auraflow, chroma, dit, flux, lumina2, pixart, sana, sd, sd3, unet
from .base import (
    FLOW,
    PREDICTION_TYPES,
    Declared,
    Family,
    Guidance,
    ModelInfo,
    NetCall,
    PromptTables,
    is_flow_scheduler,
)

FAMILIES: tuple[Family, ...] = (
    unet.FAMILY,
    sd.FAMILY,
    pixart.FAMILY,
    dit.FAMILY,
    sd3.FAMILY,
    flux.FAMILY,
    chroma.FAMILY,
    auraflow.FAMILY,
    sana.FAMILY,
    lumina2.FAMILY,
)

# Denoisers with an extra latent axis, which no family runs yet: refused in one line naming the class. A video
# family is one more file: latents [B, C, F, H, W] (frames as an extra axis), its pipeline's frame-aware
# sampler set-up and decoder (README, "Families").
VIDEO_OR_AUDIO = {
    "3-D": "a video denoiser (3-D latents: frames are an extra axis)",
    "1-D": "an audio denoiser (1-D latents over time)",
}


def family_of(class_name: str, config: Mapping, own: NetCall | None = None) -> Family:
    """The family that serves a denoiser of this class and config; InputError naming the class if none does.
    A module built in Python may declare its own call (`flatcheck_call = NetCall(...)`)."""
    if isinstance(own, NetCall):
        return Declared(own, class_name)
    for family in FAMILIES:
        if family.serves(class_name, config):
            return family
    kind = _dimension_of(class_name)
    if kind is not None:
        raise InputError(
            f"{class_name} is {VIDEO_OR_AUDIO[kind]}, which no flatcheck family runs yet: image denoisers only"
        )
    raise InputError(
        f"{class_name} is not supported yet: no family serves it (supported: {', '.join(supported_classes())})"
    )


def family_of_network(net) -> Family:
    return family_of(type(net).__name__, net.config, getattr(net, "flatcheck_call", None))


def supported_classes() -> list[str]:
    return list(dict.fromkeys(c for f in FAMILIES for c in f.denoisers))


def _dimension_of(class_name: str) -> str | None:
    """'3-D' for diffusers' video denoisers, '1-D' for its audio ones, from the class name's conventions
    (UNet3DConditionModel, *TransformerTemporalModel, WanTransformer3DModel, StableAudioDiTModel, UNet1DModel)."""
    name = class_name.lower()
    if "3d" in name or "temporal" in name or "video" in name or "motion" in name:
        return "3-D"
    if "1d" in name or "audio" in name:
        return "1-D"
    return None


__all__ = [
    "FAMILIES",
    "FLOW",
    "PREDICTION_TYPES",
    "Declared",
    "Family",
    "Guidance",
    "ModelInfo",
    "NetCall",
    "PromptTables",
    "family_of",
    "family_of_network",
    "is_flow_scheduler",
    "supported_classes",
]
