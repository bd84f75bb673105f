"""Chroma (Chroma1-HD and its kin): a pruned, de-distilled FLUX.1-schnell with real classifier-free guidance.

Serves ChromaTransformer2DModel in a ChromaPipeline. Like Flux, the network takes 2 x 2 packed latent tokens
[B, (H/2)(W/2), 4C] with image position ids (0, row, column) and zero text ids, is given t / 1000 (it multiplies
by 1000 again inside), predicts the velocity (no sign flip) and its output is unpacked. Unlike Flux: one T5
encoder and no pooled projection; no guidance input (the embedding's guidance slot is hard-wired to 0); the
default guidance 5.0 is real CFG, the null row being the empty negative prompt "" encoded by T5. Prompts come
with an attention mask that keeps the real tokens plus ONE padding token; the pipeline appends 1s for the image
tokens and hands it over as a float 0/1 tensor, which reaches attention as an ADDITIVE mask (kept pairs +1,
others +0): it must stay float, a bool mask gives other outputs. Sampling: sigmas linspace(1, 1/steps, steps)
and mu from the packed token count, as the pipeline passes them. Default image: 1024 px (128 latents, factor 8).
"""

from __future__ import annotations

from typing import Mapping

from .base import Family, PromptTables, flow_shift_mu
from .flux import image_ids, pack_latents, unpack_latents


class Chroma(Family):
    name = "chroma"
    title = "Chroma"
    denoisers = ("ChromaTransformer2DModel",)
    pipelines = ("ChromaPipeline",)
    input_name = "hidden_states"
    conditioning = "text"
    # time_text_embed holds no parameters (sinusoids and a fixed mod_proj table, not saved); the approximator
    # MLP turns it into every block's modulation. context_embedder projects T5 states; x_embedder is the stem.
    blocks = {
        "time_text_embed": "embed",
        "distilled_guidance_layer": "embed",
        "context_embedder": "embed",
        "x_embedder": "io",
        "single_transformer_blocks": "blocks",
    }

    def latent_channels(self, config: Mapping) -> int:
        return int(config.get("in_channels", 0) or 0) // 4  # in_channels counts the 2 x 2 packed channels

    def output_channels(self, config: Mapping) -> int:
        return int(config.get("out_channels") or config.get("in_channels", 0) or 0) // 4

    def default_sample_size(self, config: Mapping) -> int | None:
        # ChromaPipeline.default_sample_size is a hard-coded 128 (1024 px at factor 8): it never reads the config.
        return 128

    def call_kwargs(self, net, x_t, t, conditions: dict) -> dict:
        import torch

        h, w = x_t.shape[-2] // 2, x_t.shape[-1] // 2
        kwargs = dict(conditions)
        mask = kwargs.pop("attention_mask", None)
        if mask is not None:  # _prepare_attention_mask: + 1s for the image tokens, cat'ed as bool into the float mask
            mask = torch.cat([mask, torch.ones(mask.shape[0], h * w, dtype=torch.bool, device=mask.device)], dim=1)
        # The pipeline's timestep: t in the latents' dtype, / 1000 (the transformer multiplies it by 1000 again).
        return {
            "hidden_states": pack_latents(x_t),
            "timestep": t.to(x_t.dtype) / 1000,
            "img_ids": image_ids(h, w, x_t.device, x_t.dtype),
            "attention_mask": mask,
            **kwargs,
        }

    def output(self, out, x_t):
        return unpack_latents(out, *x_t.shape[-2:])  # the velocity eps - x0, as FlowMatchEuler steps with it

    def encode_prompts(self, pipe, pipeline_class, prompts, device, ckpt) -> PromptTables:
        import torch

        length = self.max_sequence_length(pipeline_class, 512)
        if device.type == "meta":  # a plan: transformers' T5 reads its attention mask's values, which meta has not
            enc = pipe.text_encoder
            pe = ne = torch.zeros(len(prompts), length, enc.config.d_model, dtype=enc.dtype, device="meta")
            pm = nm = torch.zeros(len(prompts), length, dtype=enc.dtype, device="meta")
            txt_ids = torch.zeros(length, 3, dtype=enc.dtype, device="meta")
        else:  # the null row: negative_prompt None is "" encoded by T5 (with its kept pad token), not zeros
            pe, txt_ids, pm, ne, _, nm = pipe.encode_prompt(
                prompt=prompts,
                negative_prompt=None,
                device=device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=True,
                max_sequence_length=length,
            )
        # The masks are tables (float 0/1, one per prompt); the text ids are zeros shared by every row.
        return PromptTables(
            {"encoder_hidden_states": torch.cat([pe, ne[:1]]), "attention_mask": torch.cat([pm, nm[:1]])},
            static={"txt_ids": txt_ids.detach()},
        )

    def set_timesteps(self, scheduler, steps: int, sample_shape: tuple[int, ...], config: Mapping) -> None:
        import inspect

        import numpy as np

        _, h, w = sample_shape
        params = inspect.signature(scheduler.set_timesteps).parameters
        if "sigmas" not in params:  # a sampler that takes no sigmas (FlowMatchHeun): its own schedule
            scheduler.set_timesteps(steps)
            return
        # As the pipeline: its sigmas, and mu always (the scheduler uses it only with use_dynamic_shifting).
        sigmas = np.linspace(1.0, 1 / steps, steps)
        mu = flow_shift_mu((h // 2) * (w // 2), scheduler.config)
        scheduler.set_timesteps(sigmas=sigmas, **({"mu": mu} if "mu" in params else {}))


FAMILY = Chroma()
