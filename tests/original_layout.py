"""diffusers state dicts -> the original (CompVis/Stability) single-file layout, for tests.

diffusers converts single files to its layout (loaders/single_file_utils.py) but ships no way back for the
UNet and VAE, so this inverts its renaming rules: each diffusers name gets the original name that
diffusers' own converter maps back to it (a test checks the round trip through that converter). Written
for SD 1.x-shaped UNets (UNet2DConditionModel), the KL autoencoder and a CLIP text encoder.
"""

from __future__ import annotations

RESNET = (  # diffusers resnet part -> original ResBlock part (update_unet_resnet_ldm_to_diffusers, inverted)
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
UNET_LAYERS = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
}


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return dict(RESNET)[head] + "." + tail


def unet_to_original(state: dict, layers_per_block: int, prefix: str = "model.diffusion_model.") -> dict:
    """A UNet2DConditionModel's state dict in the original openaimodel layout (input/middle/output_blocks)."""
    n = layers_per_block + 1  # modules per down block in input_blocks (resnets + the downsampler)
    up_attention = {int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        layer = ".".join(parts[:-1])
        if layer in UNET_LAYERS:
            new = f"{UNET_LAYERS[layer]}.{parts[-1]}"
        elif parts[0] == "down_blocks":
            b, kind, i, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                new = f"input_blocks.{1 + b * n + i}.0.{_resnet(rest)}"
            elif kind == "attentions":
                new = f"input_blocks.{1 + b * n + i}.1.{rest}"
            else:  # downsamplers.0.conv.weight
                new = f"input_blocks.{(b + 1) * n}.0.op.{parts[-1]}"
        elif parts[0] == "mid_block":
            kind, i, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            new = f"middle_block.{2 * i}.{_resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
        elif parts[0] == "up_blocks":
            b, kind, i, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                new = f"output_blocks.{b * n + i}.0.{_resnet(rest)}"
            elif kind == "attentions":
                new = f"output_blocks.{b * n + i}.1.{rest}"
            else:  # upsamplers.0.conv.weight: after the block's attention, if it has one
                new = f"output_blocks.{b * n + layers_per_block}.{2 if b in up_attention else 1}.conv.{parts[-1]}"
        else:
            raise KeyError(key)
        out[prefix + new] = value
    return out


VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_original(state: dict, num_blocks: int, prefix: str = "first_stage_model.") -> dict:
    """An AutoencoderKL's state dict in the original layout (encoder.down.i.block.j, mid.attn_1 as 1x1 convs)."""
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = new.replace(".resnets.", ".block.")
        parts = new.split(".")
        if parts[1] == "down_blocks":
            new = new.replace("down_blocks.", "down.").replace("downsamplers.0", "downsample")
        elif parts[1] == "up_blocks":  # the decoder's up blocks count from the bottom in the original
            parts[2] = str(num_blocks - 1 - int(parts[2]))
            new = ".".join(parts).replace("up_blocks.", "up.").replace("upsamplers.0", "upsample")
        elif parts[1] == "mid_block":
            if parts[2] == "block":
                new = f"{parts[0]}.mid.block_{int(parts[3]) + 1}." + ".".join(parts[4:])
            else:  # attentions.0.<layer>.<param>
                layer = ".".join(parts[4:-1])
                new = f"{parts[0]}.mid.attn_1.{VAE_ATTENTION[layer]}.{parts[-1]}"
                if value.ndim == 2:  # linear in diffusers, 1x1 conv in the original
                    value = value[:, :, None, None]
        out[prefix + new] = value
    return out


def clip_to_original(state: dict, prefix: str = "cond_stage_model.transformer.") -> dict:
    """A CLIPTextModel's state dict under the original SD 1 prefix (text_model.* as transformers < 5.6 named it)."""
    return {prefix + (k if k.startswith("text_model.") else "text_model." + k): v for k, v in state.items()}


OPEN_CLIP_LAYER = (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"))
OPEN_CLIP_TOP = {
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}


def open_clip_to_original(state: dict, prefix: str = "conditioner.embedders.1.model.") -> dict:
    """A CLIPTextModelWithProjection's state dict in OpenCLIP's layout (SDXL's second encoder): q, k, v fused
    into in_proj, the projection transposed."""
    out, qkv = {}, {}
    for key, value in state.items():
        if key in OPEN_CLIP_TOP:
            out[prefix + OPEN_CLIP_TOP[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T
        else:
            rest = key.removeprefix("text_model.encoder.layers.")
            i, _, part = rest.partition(".")
            if part.startswith("self_attn.") and part.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                kind = part.split(".")[-1]  # weight or bias
                qkv.setdefault((i, kind), {})[part.split(".")[1]] = value
                continue
            for new, old in OPEN_CLIP_LAYER:
                part = part.replace(new, old)
            out[f"{prefix}transformer.resblocks.{i}.{part.replace('self_attn.', 'attn.')}"] = value
    for (i, kind), parts in qkv.items():
        fused = [parts[n] for n in ("q_proj", "k_proj", "v_proj")]
        out[f"{prefix}transformer.resblocks.{i}.attn.in_proj_{kind}"] = __import__("torch").cat(fused)
    return out


SD3_TOP = {  # diffusers SD3Transformer2DModel layer -> the original MMDiT's (convert_sd3_transformer_..., inverted)
    "pos_embed.proj": "x_embedder.proj",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "context_embedder": "context_embedder",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
}
SD3_BLOCK = {  # transformer_blocks.i.<layer> -> joint_blocks.i.<layer>
    "attn.to_out.0": "x_block.attn.proj",
    "attn.to_add_out": "context_block.attn.proj",
    "attn.norm_q": "x_block.attn.ln_q",
    "attn.norm_k": "x_block.attn.ln_k",
    "attn.norm_added_q": "context_block.attn.ln_q",
    "attn.norm_added_k": "context_block.attn.ln_k",
    "attn2.to_out.0": "x_block.attn2.proj",
    "attn2.norm_q": "x_block.attn2.ln_q",
    "attn2.norm_k": "x_block.attn2.ln_k",
    "norm1.linear": "x_block.adaLN_modulation.1",
    "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1",
    "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1",
    "ff_context.net.2": "context_block.mlp.fc2",
}
SD3_QKV = {  # the three diffusers projections fused (q, k, v stacked on dim 0) into one original qkv
    "attn.to_": "x_block.attn.qkv",
    "attn.add_": "context_block.attn.qkv",
    "attn2.to_": "x_block.attn2.qkv",
}


def _swap_halves(t):
    """Original adaLN (shift, scale) <-> diffusers' (scale, shift): its own inverse."""
    a, b = t.chunk(2, dim=0)
    return __import__("torch").cat([b, a])


def sd3_to_original(state: dict, num_layers: int, prefix: str = "model.diffusion_model.") -> dict:
    """An SD3Transformer2DModel's state dict in the original MMDiT layout (joint_blocks.i.x_block/context_block,
    fused qkv). diffusers swaps the (shift, scale) halves of the final adaLN and of the last block's context adaLN:
    swapped back here."""
    import torch

    out, qkv = {}, {}
    for key, value in state.items():
        layer, _, param = key.rpartition(".")
        if key == "pos_embed.pos_embed":
            out[prefix + "pos_embed"] = value
            continue
        if layer in SD3_TOP:
            if layer == "norm_out.linear":
                value = _swap_halves(value)
            out[f"{prefix}{SD3_TOP[layer]}.{param}"] = value
            continue
        _, i, rest = layer.split(".", 2)  # transformer_blocks.<i>.<rest>
        if rest in SD3_BLOCK:
            if rest == "norm1_context.linear" and int(i) == num_layers - 1:
                value = _swap_halves(value)
            out[f"{prefix}joint_blocks.{i}.{SD3_BLOCK[rest]}.{param}"] = value
            continue
        for start, original in SD3_QKV.items():
            name = rest.removeprefix(start).removesuffix("_proj")
            if rest.startswith(start) and name in ("q", "k", "v"):
                qkv.setdefault((f"{prefix}joint_blocks.{i}.{original}.{param}"), {})[name] = value
                break
        else:
            raise KeyError(key)
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out
