"""PixArt-alpha and PixArt-sigma: a DiT-style transformer with T5 prompts and a learned variance, on KL latents.

Serves PixArtTransformer2DModel, and the older Transformer2DModel layout when it is not a class model (no
ada_norm_zero). Prompts: the pipeline's `encode_prompt` with its attention mask (null row: the empty
prompt); at 1024 px (sample_size 128) PixArt-alpha adds resolution and aspect-ratio micro-conditions,
below it the pipeline passes None for both.
"""

from __future__ import annotations

from typing import Mapping

from .base import Family, PromptTables


class PixArt(Family):
    name = "pixart"
    title = "PixArt-alpha, PixArt-sigma"
    denoisers = ("PixArtTransformer2DModel", "Transformer2DModel")
    pipelines = ("PixArtAlphaPipeline", "PixArtSigmaPipeline")
    input_name = "hidden_states"
    conditioning = "text"
    blocks = {"adaln_single": "embed"}

    def serves(self, class_name: str, config: Mapping) -> bool:
        if class_name == "Transformer2DModel":
            return config.get("norm_type") != "ada_norm_zero"
        return class_name in self.denoisers

    def conditions(self, config: Mapping) -> str:
        return "text" if config.get("cross_attention_dim") else "none"

    def encode_prompts(self, pipe, pipeline_class, prompts, device, ckpt) -> PromptTables:
        import torch

        from .sd import image_size

        length = self.max_sequence_length(pipeline_class, 120)
        if device.type == "meta":  # a plan: transformers' T5 reads its attention mask's values, which meta has not
            enc = pipe.text_encoder
            pe = ne = torch.zeros(len(prompts), length, enc.config.d_model, dtype=enc.dtype, device="meta")
            pm = nm = torch.zeros(len(prompts), length, dtype=torch.long, device="meta")
        else:
            pe, pm, ne, nm = pipe.encode_prompt(
                prompts,
                do_classifier_free_guidance=True,
                negative_prompt="",
                num_images_per_prompt=1,
                device=device,
                clean_caption=False,
                max_sequence_length=length,
            )
        tables = {"encoder_hidden_states": torch.cat([pe, ne[:1]]), "encoder_attention_mask": torch.cat([pm, nm[:1]])}
        if ckpt.denoiser.config.get("sample_size") == 128:  # PixArt-alpha 1024 px: resolution micro-conditions
            h, w = image_size(ckpt)
            tables["resolution"] = torch.tensor([[h, w]], dtype=pe.dtype).repeat(len(prompts) + 1, 1)
            tables["aspect_ratio"] = torch.tensor([[h / w]], dtype=pe.dtype).repeat(len(prompts) + 1, 1)
            return PromptTables(tables, added=("resolution", "aspect_ratio"))
        return PromptTables(tables, static={"added_cond_kwargs": {"resolution": None, "aspect_ratio": None}})


FAMILY = PixArt()
