"""Lumina-Image 2.0: a flow-matching transformer on unpacked latents with Gemma2 captions and normalised CFG.

Serves Lumina2Transformer2DModel in a Lumina2Pipeline. The network patchifies x_t [B, C, H, W] itself and
computes its own rope position ids, so x_t goes in as it is; what differs from SD3's convention is time and
sign: Lumina's time runs from noise (0) to image (1), so the network is given 1 - sigma = 1 - t / 1000 (not
scaled), and it predicts x0 - eps, the negative of flatcheck's velocity (the pipeline steps with -out).
Prompts: the pipeline's `encode_prompt` (its system prompt + " <Prompt Start> " before each prompt, Gemma2's
penultimate hidden states, right-padded to 256 tokens with an attention mask the network reads: it keeps only
the first mask.sum() caption tokens of each row); the null row is the pipeline's negative prompt "", encoded
without the system prompt. Guidance: real CFG, two passes, default 4, then rescaled to the conditional
prediction's norm along the last (width) axis (cfg_normalization). Sampling: the pipeline's sigmas
linspace(1, 1/steps, steps) with the scheduler's static shift (mu, which only dynamic shifting reads, is the
pipeline's, from the latent channel count). Latents: the FLUX.1 VAE's, scaled and shifted.
"""

from __future__ import annotations

from typing import Mapping

from .base import Family, PromptTables, flow_shift_mu

# Lumina2Pipeline maps the scheduler's t = T sigma to 1 - t / T with T = scheduler.config.num_train_timesteps;
# a family call does not see the scheduler, and every flow-matching scheduler config has T = 1000.
NUM_TRAIN_TIMESTEPS = 1000


class Lumina2(Family):
    name = "lumina2"
    title = "Lumina-Image 2.0"
    denoisers = ("Lumina2Transformer2DModel",)
    pipelines = ("Lumina2Pipeline",)
    input_name = "hidden_states"
    conditioning = "text"
    # The refiners are Lumina2TransformerBlocks like `layers`: noise_refiner on the image tokens, context_refiner
    # on the caption tokens (unmodulated), before the joint layers. rope_embedder has no parameters.
    blocks = {
        "time_caption_embed": "embed",
        "x_embedder": "io",
        "noise_refiner": "blocks",
        "context_refiner": "blocks",
        "layers": "blocks",
    }

    def default_sample_size(self, config: Mapping) -> int | None:
        # Lumina2Pipeline: 8 x transformer sample_size pixels at its fixed factor 8, i.e. latents of side sample_size.
        return None if config.get("sample_size") else 128

    def call_kwargs(self, net, x_t, t, conditions: dict) -> dict:
        if not t.is_floating_point():
            t = t.float()
        mask = conditions.get("encoder_attention_mask")
        if mask is not None and mask.is_meta:
            count_every_caption_token(net)
        return {
            self.input_name: x_t,
            "timestep": 1 - t / NUM_TRAIN_TIMESTEPS,
            **conditions,
        }  # as the pipeline: 1 - t / T

    def output(self, out, x_t):
        return -out  # the network predicts x0 - eps (d x / d(1 - sigma)); flatcheck's velocity is eps - x0

    def combine_guidance(self, on, off, scale: float):
        import torch

        # Lumina2Pipeline's cfg_normalization (default True, at every step: cfg_trunc_ratio 1): the guided
        # prediction rescaled to the conditional one's norm along the last axis. The pipeline guides the network's
        # own outputs and negates after; on and off are negated here, which changes no bit (norms ignore the sign).
        pred = off + scale * (on - off)
        return pred * (torch.norm(on, dim=-1, keepdim=True) / torch.norm(pred, dim=-1, keepdim=True))

    def encode_prompts(self, pipe, pipeline_class, prompts, device, ckpt) -> PromptTables:
        import torch

        length = self.max_sequence_length(pipeline_class, 256)
        # A plan: the shapes come from Gemma2's config. (The pipeline's own call would compare token ids on the meta
        # device, torch.equal, for any prompt that fills max_sequence_length: it has no meta kernel.)
        if device.type == "meta":
            enc = pipe.text_encoder
            pe = ne = torch.zeros(len(prompts), length, enc.config.hidden_size, dtype=enc.dtype, device="meta")
            pm = nm = torch.zeros(len(prompts), length, dtype=torch.long, device="meta")
        else:
            pe, pm, ne, nm = pipe.encode_prompt(
                prompts,
                do_classifier_free_guidance=True,
                negative_prompt=None,
                num_images_per_prompt=1,
                device=device,
                system_prompt=None,
                max_sequence_length=length,
            )
        return PromptTables(
            {"encoder_hidden_states": torch.cat([pe, ne[:1]]), "encoder_attention_mask": torch.cat([pm, nm[:1]])}
        )

    def set_timesteps(self, scheduler, steps: int, sample_shape: tuple[int, ...], config: Mapping) -> None:
        import inspect

        import numpy as np

        if "sigmas" not in inspect.signature(scheduler.set_timesteps).parameters:  # --sampler heun: no custom sigmas
            scheduler.set_timesteps(steps)
            return
        # Lumina2Pipeline: mu = calculate_shift(latents.shape[1]) of its unpacked [B, C, H, W] latents, i.e. of the
        # channel count (read only under use_dynamic_shifting, which Lumina-Image 2.0's scheduler does not use).
        sigmas = np.linspace(1.0, 1 / steps, steps)
        scheduler.set_timesteps(sigmas=sigmas, mu=flow_shift_mu(sample_shape[0], scheduler.config))


def count_every_caption_token(net) -> None:
    """A plan (the network on the meta device): Lumina2's rope embedder reads each row's caption length from the
    attention mask's values (mask.sum(1).tolist()), which meta has not. Its mask is then a CPU one of all ones:
    every padded token counted, the longest joint sequence (an upper bound of the memory); the refiner's
    attention keeps the meta mask (shapes only). Installed once per network (a throwaway meta copy)."""
    import torch

    rope = getattr(net, "rope_embedder", None)
    if rope is None or getattr(rope, "_flatcheck_full_captions", False):
        return
    rope.register_forward_pre_hook(
        lambda module, args: (args[0], torch.ones(args[1].shape, dtype=torch.long), *args[2:])
    )
    rope._flatcheck_full_captions = True


FAMILY = Lumina2()
