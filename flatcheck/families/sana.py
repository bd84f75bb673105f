"""Sana: a linear-attention DiT (SanaTransformer2DModel) on 32x-compressed DC-AE latents, flow matching, Gemma2.

Serves SanaTransformer2DModel; prompts through SanaPipeline (Sana-Sprint's guidance-embedded transformers and
the PAG / ControlNet pipelines are not served: their prompts are refused in one line). The network is called
as the pipeline does: x_t [B, C, H, W] as hidden_states (no packing: it patchifies itself, no position ids,
no image mask), timestep = the scheduler's t (1000 sigma) x the config's timestep_scale, the Gemma2 states
and their 0/1 attention mask; it predicts the velocity eps - x0 (no sign flip, out_channels = in_channels).
Prompts: the pipeline's own `encode_prompt` with __call__'s defaults, its "complex human instruction"
prepended to each prompt (300 tokens: <bos> and the last 299); the null row is the negative prompt "",
encoded without the instruction. Guidance: real CFG at __call__'s 4.5. Sampling: set_timesteps(steps), no
mu, no sigmas (the base call). Latents: AutoencoderDC (scaling factor, no shift); its spatial factor is
counted from the blocks that resample. Default input: the config's sample_size (the pipeline's resolution
bin for it: 32 -> 1024 px).
"""

from __future__ import annotations

from typing import Mapping

from .base import Family, PromptTables


class Sana(Family):
    name = "sana"
    title = "Sana (linear DiT, DC-AE)"
    denoisers = ("SanaTransformer2DModel",)
    pipelines = ("SanaPipeline",)
    input_name = "hidden_states"
    conditioning = "text"
    # time_embed: AdaLayerNormSingle (t -> the blocks' modulation); caption_*: the Gemma2 states' MLP and norm;
    # scale_shift_table modulates the output norm, like proj_out's input (patch_embed, proj_out: io already).
    blocks = {"time_embed": "embed", "caption_projection": "embed", "caption_norm": "embed", "scale_shift_table": "io"}

    def default_sample_size(self, config: Mapping) -> int | None:
        # SanaPipeline.__call__ makes 1024 px (height=width=1024, not from the config); with its default resolution
        # binning the denoiser runs at the bin of its sample_size (16/32/64/128: 512-4096 px), i.e. at sample_size
        # latents for a square image. Only a config without one falls back to 1024 px / DC-AE's 32.
        return None if config.get("sample_size") else 32

    def call_kwargs(self, net, x_t, t, conditions: dict) -> dict:
        # pipeline_sana: timestep = t.expand(B) * transformer.config.timestep_scale (an integer t, DPM-Solver's,
        # becomes float as there); encoder_hidden_states and encoder_attention_mask come from the tables.
        t = t * float(net.config.get("timestep_scale", 1.0) or 1.0)
        return {self.input_name: x_t, "timestep": t, **conditions}

    def encode_prompts(self, pipe, pipeline_class, prompts, device, ckpt) -> PromptTables:
        import torch

        from ..core.conditioning import pipeline_default

        length = self.max_sequence_length(pipeline_class, 300)
        # __call__ prepends this instruction to every prompt (encode_prompt's own default is None).
        instruction = pipeline_default(pipeline_class, "complex_human_instruction")
        negative = pipeline_default(pipeline_class, "negative_prompt") or ""
        # Also on the meta device (a plan): Gemma2's eager attention reads no value of its mask, unlike T5 in
        # transformers (PixArt's meta branch), so the plan traces the pipeline's own shapes (tests/test_family_sana.py).
        pe, pm, ne, nm = pipe.encode_prompt(
            prompts,
            do_classifier_free_guidance=True,
            negative_prompt=negative,
            num_images_per_prompt=1,
            device=device,
            clean_caption=False,
            max_sequence_length=length,
            complex_human_instruction=instruction,
        )
        # The mask (<bos> + tokens, 0 for padding) becomes the cross-attention bias inside the transformer.
        return PromptTables(
            {"encoder_hidden_states": torch.cat([pe, ne[:1]]), "encoder_attention_mask": torch.cat([pm, nm[:1]])}
        )

    def vae_factor(self, vae_config: Mapping) -> int:
        return dc_ae_factor(vae_config)


def dc_ae_factor(vae_config: Mapping) -> int:
    """Pixels per latent of an AutoencoderDC's decoder: a block resamples by 2 when it is not the last and has
    layers, and the stem (conv_out) does when the first block has none (f32c32: 5 of 6). The config's nominal
    2 ** (blocks - 1) (the pipeline's vae_scale_factor) is wrong for a block with no layers."""
    layers = vae_config.get("decoder_layers_per_block")
    if not layers:  # not a DC-AE config: the usual count
        return 2 ** (len(vae_config.get("block_out_channels", (0,))) - 1)
    n = len(layers)
    return 2 ** (sum(1 for i in range(n - 1) if layers[i] > 0) + (1 if layers[0] == 0 else 0))


FAMILY = Sana()
