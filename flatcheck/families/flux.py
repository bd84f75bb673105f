"""FLUX.1 (dev, schnell): a rectified-flow transformer on 2 x 2 packed, shifted latent tokens.

The network takes tokens: x_t [B, C, H, W] is packed into [B, (H/2)(W/2), 4C] with position ids per token
(img_ids) and unpacked after the call; it is given t / 1000. Prompts: the pipeline's `encode_prompt`
(T5 states, CLIP pooled, txt_ids). Guidance is embedded (guidance_embeds: a network input, one pass, no
null prompt); schnell has no guidance input and runs at 1. Sampling: the pipeline's sigmas
linspace(1, 1/steps, steps), with dynamic shifting mu from the packed token count. Default image: 1024 px.
"""

from __future__ import annotations

from typing import Mapping

from .base import ORIGINAL_PREFIX, Family, Guidance, OriginalLayout, PromptTables, TensorNames, flow_shift_mu


class Flux(Family):
    name = "flux"
    title = "FLUX.1 dev / schnell"
    denoisers = ("FluxTransformer2DModel",)
    pipelines = ("FluxPipeline",)
    input_name = "hidden_states"
    conditioning = "text"
    timestep_scale = 1e-3
    blocks = {"time_text_embed": "embed", "single_transformer_blocks": "blocks"}

    def original_layout(self, names: TensorNames) -> OriginalLayout | None:
        for p in (ORIGINAL_PREFIX, ""):
            if not names.has(p + "double_blocks.0.img_attn.norm.key_norm.scale"):
                continue
            if names.has(p + "distilled_guidance_layer.in_proj.bias") or names.has(
                p + "single_stream_modulation.lin.weight"
            ):
                return None  # Chroma, FLUX.2: other networks behind the same block names
            known = None
            full = names.has(p + "double_blocks.18.img_attn.qkv.weight") and names.has(
                p + "single_blocks.37.linear2.weight"
            )
            if (
                full and names.has(p + "img_in.weight") and names.shape(p + "img_in.weight") == (3072, 64)
            ):  # not Fill/Depth
                known = "flux-dev" if names.has(p + "guidance_in.in_layer.bias") else "flux-schnell"
            return OriginalLayout("flux", self.denoisers[0], p, known)
        return None

    def latent_channels(self, config: Mapping) -> int:
        return int(config.get("in_channels", 0) or 0) // 4  # in_channels counts the 2 x 2 packed channels

    def output_channels(self, config: Mapping) -> int:
        return int(config.get("out_channels") or config.get("in_channels", 0) or 0) // 4

    def default_sample_size(self, config: Mapping) -> int | None:
        return None if config.get("sample_size") else 128  # FluxPipeline.default_sample_size: 1024 px images

    def call_kwargs(self, net, x_t, t, conditions: dict) -> dict:
        kwargs = super().call_kwargs(net, pack_latents(x_t), t, {})
        kwargs["img_ids"] = image_ids(x_t.shape[-2] // 2, x_t.shape[-1] // 2, x_t.device, x_t.dtype)
        kwargs.update(conditions)
        return kwargs

    def output(self, out, x_t):
        return unpack_latents(out, *x_t.shape[-2:])

    def encode_prompts(self, pipe, pipeline_class, prompts, device, ckpt) -> PromptTables:
        import torch

        length = self.max_sequence_length(pipeline_class, 512)
        pe, pp, txt_ids = pipe.encode_prompt(
            prompt=prompts, prompt_2=None, device=device, num_images_per_prompt=1, max_sequence_length=length
        )
        # No null row is ever read (no CFG pass); a zero row keeps the table's layout uniform.
        return PromptTables(
            {
                "encoder_hidden_states": torch.cat([pe, torch.zeros_like(pe[:1])]),
                "pooled_projections": torch.cat([pp, torch.zeros_like(pp[:1])]),
            },
            static={"txt_ids": txt_ids.detach()},
        )

    def guidance(self, pipeline_class, config, given, default) -> Guidance:
        if not config.get("guidance_embeds"):  # FLUX.1-schnell: no guidance input, and no CFG pass either
            return Guidance(1.0, "none: the transformer has no guidance embedding")
        g = super().guidance(pipeline_class, config, given, default)
        return Guidance(g.scale, g.source, embedded=True)

    def set_timesteps(self, scheduler, steps: int, sample_shape: tuple[int, ...], config: Mapping) -> None:
        import numpy as np

        _, h, w = sample_shape
        sigmas = np.linspace(1.0, 1 / steps, steps)
        cfg = scheduler.config
        if cfg.get("use_dynamic_shifting"):
            scheduler.set_timesteps(sigmas=sigmas, mu=flow_shift_mu((h // 2) * (w // 2), cfg))
        else:
            scheduler.set_timesteps(sigmas=sigmas)


def pack_latents(x):
    """[B, C, H, W] -> [B, (H/2)(W/2), 4C]: 2 x 2 patches as tokens, in (c, dy, dx) order."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(x, h: int, w: int):
    """The inverse of pack_latents."""
    b, _, d = x.shape
    x = x.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, h, w)


def image_ids(h: int, w: int, device, dtype):
    """[h*w, 3] position ids of the packed tokens: (0, row, column)."""
    import torch

    ids = torch.zeros(h, w, 3)
    ids[..., 1] = torch.arange(h)[:, None]
    ids[..., 2] = torch.arange(w)[None, :]
    return ids.reshape(h * w, 3).to(device, dtype)


FAMILY = Flux()
