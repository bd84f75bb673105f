"""Stable Diffusion 3 / 3.5: an MMDiT transformer on 16-channel shifted latents, rectified flow.

Prompts: the pipeline's `encode_prompt` (two CLIPs, and T5 when present: zero rows after CLIP's 77 without
it) gives per-token states and pooled projections; the null row is the empty prompt, encoded (not zeros).
Sampling: the pipeline's FlowMatchEulerDiscreteScheduler with its static shift, or, with dynamic shifting,
mu from the token count of the transformer's patches. The position-embedding table is a stored buffer.
"""

from __future__ import annotations

from typing import Mapping

from .base import ORIGINAL_PREFIX, Family, OriginalLayout, PromptTables, TensorNames, flow_shift_mu


class SD3(Family):
    name = "sd3"
    title = "Stable Diffusion 3 / 3.5"
    denoisers = ("SD3Transformer2DModel",)
    pipelines = ("StableDiffusion3Pipeline",)
    input_name = "hidden_states"
    conditioning = "text"
    blocks = {"time_text_embed": "embed"}
    stored_buffers = ("pos_embed.pos_embed",)  # saved when pos_embed_max_size is set (56.6 M numbers in SD3-medium)

    def original_layout(self, names: TensorNames) -> OriginalLayout | None:
        for p in (ORIGINAL_PREFIX, ""):
            if not names.has(p + "joint_blocks.0.context_block.adaLN_modulation.1.bias"):
                continue
            pos = p + "pos_embed"
            medium = (
                names.has(pos)
                and names.shape(pos)[1:2] == (36864,)
                and names.has(p + "joint_blocks.23.x_block.mlp.fc1.weight")
                and not names.has(p + "joint_blocks.24.x_block.mlp.fc1.weight")
            )
            return OriginalLayout("sd3", self.denoisers[0], p, "sd3-medium" if medium else None)
        return None

    def encode_prompts(self, pipe, pipeline_class, prompts, device, ckpt) -> PromptTables:
        import torch

        length = self.max_sequence_length(pipeline_class, 256)
        pe, ne, pp, npp = pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=None,
            max_sequence_length=length,
        )
        return PromptTables(
            {"encoder_hidden_states": torch.cat([pe, ne[:1]]), "pooled_projections": torch.cat([pp, npp[:1]])}
        )

    def set_timesteps(self, scheduler, steps: int, sample_shape: tuple[int, ...], config: Mapping) -> None:
        _, h, w = sample_shape
        p = config.get("patch_size", 1) or 1
        cfg = scheduler.config
        if cfg.get("use_dynamic_shifting"):
            scheduler.set_timesteps(steps, mu=flow_shift_mu((h // p) * (w // p), cfg))
        else:
            scheduler.set_timesteps(steps)


FAMILY = SD3()
