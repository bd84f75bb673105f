"""UNet2DModel: pixel and latent (LDM) UNets, unconditional, class-conditional or with a learned variance.

Served pipelines: DDPMPipeline, DDIMPipeline, LDMPipeline (none encodes prompts). The schedule is the
checkpoint's DDPM-family scheduler; learned variance is out_channels = 2 x in_channels (the first half is
the mean prediction). Class conditioning: num_class_embeds integer labels; no null class, so no guidance.
"""

from __future__ import annotations

from typing import Mapping

from .base import Family


class UNet(Family):
    name = "unet"
    title = "UNet (pixel or latent, unconditional or class-conditional)"
    denoisers = ("UNet2DModel",)
    input_name = "sample"

    def conditions(self, config: Mapping) -> str:
        return "class" if config.get("num_class_embeds") or config.get("class_embed_type") else "none"

    def num_classes(self, config: Mapping) -> tuple[int | None, int | None]:
        return config.get("num_class_embeds"), None


FAMILY = UNet()
