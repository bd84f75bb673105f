"""DiT: a class-conditional transformer on KL latents (ImageNet labels), with a learned variance.

Serves DiTTransformer2DModel and the older Transformer2DModel layout with ada_norm_zero. The label table
has one extra row, the null class of classifier-free guidance (num_embeds_ada_norm: 1000 for ImageNet).
"""

from __future__ import annotations

from typing import Mapping

from .base import Family


class DiT(Family):
    name = "dit"
    title = "DiT (class-conditional)"
    denoisers = ("DiTTransformer2DModel", "Transformer2DModel")
    pipelines = ("DiTPipeline",)
    input_name = "hidden_states"
    conditioning = "class"

    def serves(self, class_name: str, config: Mapping) -> bool:
        if class_name == "Transformer2DModel":
            return config.get("norm_type") == "ada_norm_zero"
        return class_name in self.denoisers

    def num_classes(self, config: Mapping) -> tuple[int | None, int | None]:
        n = config.get("num_embeds_ada_norm")
        return n, n


FAMILY = DiT()
