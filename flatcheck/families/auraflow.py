"""AuraFlow: an MMDiT + single-DiT rectified-flow transformer (AuraFlowTransformer2DModel) on 4-channel KL latents.

The network takes x_t [B, C, H, W] itself (it patchifies inside, with a learned, centre-cropped position table:
no ids, no RoPE) and hands back [B, C, H, W]: the velocity eps - x0, no sign flip, no variance channels. It is
given sigma = t / 1000 (the pipeline divides, the model's sinusoidal embedding multiplies by 1000 again).
Prompts: the pipeline's `encode_prompt`, UMT5 states padded to 256 tokens with the padded rows zeroed; the
transformer takes no attention mask (all 256 positions, behind 8 learned register tokens, are attended to).
Guidance: real classifier-free guidance, default 3.5, null row = the encoded empty prompt (the pipeline's
negative prompt), no renormalisation. Sampling: set_timesteps(steps) with the scheduler's static shift and no
mu (the pipeline passes none). Latents: vae.decode(z / scaling_factor), no shift factor.
"""

from __future__ import annotations

from typing import Mapping

from ..errors import InputError
from .base import Family, PromptTables


class AuraFlow(Family):
    name = "auraflow"
    title = "AuraFlow"
    denoisers = ("AuraFlowTransformer2DModel",)
    pipelines = ("AuraFlowPipeline",)
    input_name = "hidden_states"
    conditioning = "text"
    timestep_scale = 1e-3  # documentation only: call_kwargs divides by 1000, as the pipeline does
    # pos_embed (the patch embedding and its learned table), norm_out and proj_out are io already.
    blocks = {
        "time_step_proj": "embed",
        "context_embedder": "embed",
        "register_tokens": "embed",
        "joint_transformer_blocks": "blocks",
        "single_transformer_blocks": "blocks",
    }

    def default_sample_size(self, config: Mapping) -> int | None:
        # AuraFlowPipeline.__call__ renders 1024 px (128 latents at the VAE's factor 8) whatever the checkpoint;
        # a config with sample_size is read as the pipeline's own fallback for height=None (sample_size x factor).
        return None if config.get("sample_size") else 128

    def call_kwargs(self, net, x_t, t, conditions: dict) -> dict:
        # The pipeline: torch.tensor([t / 1000]).expand(B).to(latents.dtype): a division, not x 1e-3 (bit-equal
        # times), in x_t's dtype (a bfloat16 run embeds a bfloat16 time, as the pipeline's does).
        return {self.input_name: x_t, "timestep": (t.float() / 1000).to(x_t.dtype), **conditions}

    def encode_prompts(self, pipe, pipeline_class, prompts, device, ckpt) -> PromptTables:
        import torch

        length = self.max_sequence_length(pipeline_class, 256)
        if device.type == "meta":  # a plan: transformers' T5 reads its attention mask's values, which meta has not
            enc = pipe.text_encoder
            pe = ne = torch.zeros(len(prompts), length, enc.config.d_model, dtype=enc.dtype, device="meta")
        else:
            # negative_prompt None -> "" (encode_prompt's `negative_prompt or ""`): what __call__ guides against.
            pe, _, ne, _ = pipe.encode_prompt(
                prompt=prompts,
                negative_prompt=None,
                do_classifier_free_guidance=True,
                num_images_per_prompt=1,
                device=device,
                max_sequence_length=length,
            )
        # No mask table: the transformer takes none (the masks encode_prompt returns are [B, 256 x D], unused).
        return PromptTables({"encoder_hidden_states": torch.cat([pe, ne[:1]])})

    def set_timesteps(self, scheduler, steps: int, sample_shape: tuple[int, ...], config: Mapping) -> None:
        # retrieve_timesteps(scheduler, steps, sigmas=None): the static shift only, no resolution shift.
        if scheduler.config.get("use_dynamic_shifting"):
            raise InputError(
                f"{type(scheduler).__name__} has use_dynamic_shifting, but the AuraFlow pipeline passes no mu: "
                "its own __call__ cannot sample with this scheduler either"
            )
        scheduler.set_timesteps(steps)

    def latent_scale_shift(self, vae_config: Mapping) -> tuple[float, float]:
        # The pipeline decodes latents / scaling_factor: no shift_factor, even where the VAE config has one.
        return float(vae_config.get("scaling_factor", 1.0) or 1.0), 0.0


FAMILY = AuraFlow()
