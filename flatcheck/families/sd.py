"""Stable Diffusion 1.x/2.x and SDXL: UNet2DConditionModel with CLIP text encoders, on KL latents.

Prompts go through the pipeline's own `encode_prompt`: StableDiffusionPipeline gives
encoder_hidden_states (the null row: the empty prompt's embedding); StableDiffusionXLPipeline adds
added_cond_kwargs {text_embeds (pooled), time_ids (original size, crop, target size)} and, with
force_zeros_for_empty_prompt, a zero null row. Epsilon or v prediction, from the scheduler.
"""

from __future__ import annotations

from .base import ORIGINAL_PREFIX, Family, OriginalLayout, PromptTables, TensorNames

SD, SDXL = "StableDiffusionPipeline", "StableDiffusionXLPipeline"


class StableDiffusion(Family):
    name = "sd"
    title = "Stable Diffusion 1.x/2.x, SDXL"
    denoisers = ("UNet2DConditionModel",)
    pipelines = (SD, SDXL)
    input_name = "sample"
    conditioning = "text"

    def original_layout(self, names: TensorNames) -> OriginalLayout | None:
        p = ORIGINAL_PREFIX
        if not names.has(p + "input_blocks.0.0.weight"):
            return None
        known = None
        in_channels = names.shape(p + "input_blocks.0.0.weight")[1:2]
        context = names.last_dims(p, "attn2.to_k.weight")  # the cross-attention width: 768 SD 1, 1024 SD 2, 2048 XL
        if in_channels == (4,):
            if names.has(p + "label_emb.0.0.weight"):
                if names.shape(p + "label_emb.0.0.weight")[-1] == 2816 and context == {2048}:
                    known = "sdxl-base"
            elif context == {768}:
                known = "sd15"
            elif context == {1024}:
                known = "sd21"
        return OriginalLayout("ldm-unet", self.denoisers[0], p, known)

    def encode_prompts(self, pipe, pipeline_class, prompts, device, ckpt) -> PromptTables:
        import torch

        if pipeline_class == SD:
            pe, ne = pipe.encode_prompt(prompts, device, 1, True, negative_prompt=None)
            return PromptTables({"encoder_hidden_states": torch.cat([pe, ne[:1]])})
        pe, ne, pp, npp = pipe.encode_prompt(
            prompt=prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True
        )
        size = image_size(ckpt)
        proj = pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None else int(pp.shape[-1])
        ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=pe.dtype, text_encoder_projection_dim=proj)
        tables = {
            "encoder_hidden_states": torch.cat([pe, ne[:1]]),
            "text_embeds": torch.cat([pp, npp[:1]]),
            "time_ids": ids.repeat(len(prompts) + 1, 1),
        }
        return PromptTables(tables, added=("text_embeds", "time_ids"))


def image_size(ckpt) -> tuple[int, int]:
    """Pixel height and width of the pipeline's default image (latent size x the autoencoder's factor)."""
    size = ckpt.denoiser.config.get("sample_size") or 0
    h, w = (size, size) if not isinstance(size, (list, tuple)) else tuple(size)
    factor = 2 ** (len(ckpt.vae.config.block_out_channels) - 1) if ckpt.vae is not None else 1
    return int(h * factor), int(w * factor)


FAMILY = StableDiffusion()
