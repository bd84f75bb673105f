"""LoRA adapters (--lora): a tiny LoRA made with peft on the tiny SD UNet and saved as diffusers saves one gives the
numbers of the same LoRA fused into the weights by hand; --params lora measures the adapter alone; the base weights
come back bit for bit; a file that is not a LoRA for this model is refused in one line (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from . import families

RANK, ALPHA = 4, 8.0
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1"]  # attention projections and resnet convs: Linear and Conv2d
TINY = ["--probes", "4", "--samples", "2", "--steps", "2", "--batch-size", "2", "--seed", "3", "--threads", "1"]
SHARP = [*TINY, "--measures", "avg", "--radii", "0.05", "--draws", "1"]


def make_lora(sd_dir: Path, root: Path) -> tuple[Path, Path]:
    """(LoRA file, fused pipeline folder): a peft LoRA on the tiny SD UNet, saved by diffusers' save_lora_weights
    with its adapter metadata; and a copy of the pipeline whose UNet holds W + alpha/r * B A, fused by hand."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = families.load_pipeline(sd_dir, "sd")
    unet = pipe.unet
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, init_lora_weights="gaussian")
    unet.add_adapter(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:  # B starts at zero: a LoRA that changes nothing would prove nothing
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    state = get_peft_model_state_dict(unet)
    StableDiffusionPipeline.save_lora_weights(
        root / "lora", unet_lora_layers=state, unet_lora_adapter_metadata=config.to_dict()
    )
    fused = root / "fused"
    shutil.copytree(sd_dir, fused)
    base = families.load_pipeline(sd_dir, "sd").unet
    modules = dict(base.named_modules())
    with torch.no_grad():
        for key, a in state.items():
            if ".lora_A." not in key:
                continue
            name = key.split(".lora_A.")[0]
            b = state[key.replace("lora_A", "lora_B")]
            w = modules[name].weight
            delta = (b.flatten(1) @ a.flatten(1)).reshape(w.shape[0], *a.shape[1:])  # conv: B is 1x1
            w.add_(delta * (ALPHA / RANK))
    base.save_pretrained(fused / "unet")
    return root / "lora" / "pytorch_lora_weights.safetensors", fused
