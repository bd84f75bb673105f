"""Peak memory and time of `sharpness --quick` and `quantize --bits 4` per family, at real sizes.

    .venv/bin/python benchmarks/gpu_families.py [--families sd15,sdxl,pixart,dit-xl,sd3-medium,flux-dev]
        [--device cuda] [--dtype bfloat16] [--probes 16] [--samples 4] [--steps 4] [--params GLOBS] [--tiny]

Random-weight denoisers (and autoencoders) are built from the published configs written below (no
downloads: the numbers measure cost, not quality). Text encoders are not built: their outputs are
random tensors of the real shapes (77 x 768 CLIP states for SD 1.5, 333 x 4096 for SD3 ...), encoded
once per run exactly as flatcheck caches them. For each family the script prints the parameter count,
then for each measure the wall time and its own peak memory (flatcheck.core.memory.PeakMemory: CUDA max
allocated on a GPU, the process's peak RSS during the measure on a CPU). `--tiny` divides every width
and depth so that the whole script runs on a CPU in about a minute (it checks the script, not the
families' cost).

Sharpness runs the audit's quick profile (average and worst case, Hessian top eigenvalue and trace,
1-D landscape) on a bank of `--probes` latents; quantize runs W4A4 (simulated, every Conv2d/Linear)
on `--samples` samples of `--steps` steps, calibration included, the per-layer scan skipped.
"""

from __future__ import annotations

import argparse
import time

import torch

# ---------------------------------------------------------------------------------------------- configs
# The published configs of each family's denoiser (diffusers' config.json of the reference checkpoints).
SD_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    scaling_factor=0.18215,
)
SD3_VAE = dict(
    SD_VAE,
    latent_channels=16,
    scaling_factor=1.5305,
    shift_factor=0.0609,
    use_quant_conv=False,
    use_post_quant_conv=False,
)
FLUX_VAE = dict(SD3_VAE, scaling_factor=0.3611, shift_factor=0.1159)

FAMILIES = {
    "sd15": dict(
        cls="UNet2DConditionModel",
        vae=SD_VAE,
        config=dict(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768,
            attention_head_dim=8,
        ),
        text=dict(encoder_hidden_states=(77, 768)),
        scheduler=(
            "PNDMScheduler",
            dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, skip_prk_steps=True),
        ),
    ),
    "sdxl": dict(
        cls="UNet2DConditionModel",
        vae=dict(SD_VAE, scaling_factor=0.13025),
        config=dict(
            sample_size=128,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        ),
        text=dict(encoder_hidden_states=(77, 2048), text_embeds=(1280,), time_ids=(6,)),
        added=("text_embeds", "time_ids"),
        scheduler=("EulerDiscreteScheduler", dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    ),
    "pixart": dict(
        cls="PixArtTransformer2DModel",
        vae=SD_VAE,
        config=dict(
            sample_size=128,
            num_attention_heads=16,
            attention_head_dim=72,
            in_channels=4,
            out_channels=8,
            num_layers=28,
            cross_attention_dim=1152,
            norm_type="ada_norm_single",
            caption_channels=4096,
            patch_size=2,
            use_additional_conditions=False,
        ),
        text=dict(encoder_hidden_states=(120, 4096)),
        mask=120,
        scheduler=("DPMSolverMultistepScheduler", dict()),
    ),
    "dit-xl": dict(
        cls="DiTTransformer2DModel",
        vae=SD_VAE,
        config=dict(
            sample_size=32,
            num_attention_heads=16,
            attention_head_dim=72,
            in_channels=4,
            out_channels=8,
            num_layers=28,
            patch_size=2,
            num_embeds_ada_norm=1000,
        ),
        classes=1000,
        scheduler=("DDIMScheduler", dict()),
    ),
    "sd3-medium": dict(
        cls="SD3Transformer2DModel",
        vae=SD3_VAE,
        config=dict(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            num_layers=24,
            attention_head_dim=64,
            num_attention_heads=24,
            joint_attention_dim=4096,
            caption_projection_dim=1536,
            pooled_projection_dim=2048,
            out_channels=16,
            pos_embed_max_size=192,
        ),
        text=dict(encoder_hidden_states=(333, 4096), pooled_projections=(2048,)),
        scheduler=("FlowMatchEulerDiscreteScheduler", dict(shift=3.0)),
    ),
    "flux-dev": dict(
        cls="FluxTransformer2DModel",
        vae=FLUX_VAE,
        config=dict(
            patch_size=1,
            in_channels=64,
            num_layers=19,
            num_single_layers=38,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=4096,
            pooled_projection_dim=768,
            guidance_embeds=True,
            axes_dims_rope=(16, 56, 56),
        ),
        text=dict(encoder_hidden_states=(512, 4096), pooled_projections=(768,)),
        txt_ids=512,
        embedded_guidance=3.5,
        sample_size=128,
        scheduler=(
            "FlowMatchEulerDiscreteScheduler",
            dict(
                shift=3.0,
                use_dynamic_shifting=True,
                base_shift=0.5,
                max_shift=1.15,
                base_image_seq_len=256,
                max_image_seq_len=4096,
            ),
        ),
    ),
}


def tiny(spec: dict) -> dict:
    """Every width / 16 and depth cut to 1-2, for a CPU check of the script itself."""
    spec = {
        **spec,
        "config": dict(spec["config"]),
        "vae": dict(
            spec["vae"],
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            norm_num_groups=8,
        ),
    }
    c = spec["config"]
    if "block_out_channels" in c:
        c["block_out_channels"] = tuple(max(16, b // 20) // 8 * 8 for b in c["block_out_channels"])
        c["layers_per_block"] = 1
        c["sample_size"] = 8
        c["norm_num_groups"] = 8
        if "transformer_layers_per_block" in c:
            c["transformer_layers_per_block"] = 1
            c["attention_head_dim"] = 2
            c["projection_class_embeddings_input_dim"] = 6 * 8 + 32
            c["addition_time_embed_dim"] = 8
        c["cross_attention_dim"] = 32
    else:
        c.update(num_attention_heads=2, attention_head_dim=16)
        for k in ("num_layers", "num_single_layers"):
            if k in c:
                c[k] = 1
        if "sample_size" in c:
            c["sample_size"] = 8
        for k in ("caption_channels", "joint_attention_dim"):
            if k in c:
                c[k] = 32
        if "cross_attention_dim" in c:
            c["cross_attention_dim"] = 32
        if "caption_projection_dim" in c:
            c["caption_projection_dim"] = 32
        if "pooled_projection_dim" in c:
            c["pooled_projection_dim"] = 32
        if "pos_embed_max_size" in c:
            c["pos_embed_max_size"] = 8
        if "axes_dims_rope" in c:
            c["axes_dims_rope"] = (4, 6, 6)
    if "sample_size" in spec:
        spec["sample_size"] = 8
    text = {}
    for k, shape in spec.get("text", {}).items():
        if k == "time_ids":
            text[k] = shape
        elif k == "text_embeds":
            text[k] = (32,)
        else:
            text[k] = shape[:-1] + (32,) if len(shape) == 2 else (32,)
    if text:
        spec["text"] = text
    return spec


# ---------------------------------------------------------------------------------------------- building
def build(name: str, spec: dict, device, dtype, seed: int = 0):
    import diffusers

    from flatcheck.core.conditioning import Conditioning
    from flatcheck.core.denoiser import Denoiser

    torch.manual_seed(seed)
    with torch.device(device):
        net = getattr(diffusers, spec["cls"])(**spec["config"]).to(dtype).eval().requires_grad_(False)
        vae = diffusers.AutoencoderKL(**spec["vae"]).to(dtype).eval().requires_grad_(False)
    sched_cls, sched_kw = spec["scheduler"]
    scheduler = getattr(diffusers, sched_cls)(**sched_kw)
    g = torch.Generator().manual_seed(seed)
    k = 4  # prompts in the table (plus the null row)
    if "classes" in spec:
        cond = Conditioning("class", spec["classes"], 4.0, null_label=spec["classes"], guidance_default="DiT's default")
    else:
        tables = {key: torch.randn(k + 1, *shape, generator=g).to(dtype) for key, shape in spec["text"].items()}
        if "mask" in spec:
            tables["encoder_attention_mask"] = torch.ones(k + 1, spec["mask"])
        static = {"txt_ids": torch.zeros(spec["txt_ids"], 3)} if "txt_ids" in spec else {}
        if spec["cls"] == "PixArtTransformer2DModel":
            static["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
        cond = Conditioning(
            "text",
            k,
            spec.get("embedded_guidance", 5.0),
            names=tuple(f"prompt {i}" for i in range(k)),
            tables=tables,
            added=spec.get("added", ()),
            static=static,
            embedded_guidance="embedded_guidance" in spec,
        )
    return Denoiser(net, scheduler, vae, cond, sample_size=spec.get("sample_size"))


# ---------------------------------------------------------------------------------------------- measuring
def run_family(name: str, spec: dict, args, device, dtype) -> dict:
    from flatcheck.core.memory import PeakMemory
    from flatcheck.core.probes import probe_bank
    from flatcheck.measures.quantize.config import QuantizeConfig
    from flatcheck.measures.quantize.measure import measure_quantization
    from flatcheck.measures.sharpness import PROFILES
    from flatcheck.measures.sharpness.config import SharpnessConfig
    from flatcheck.measures.sharpness.measure import measure_sharpness

    t0 = time.perf_counter()
    den = build(name, spec, device, dtype)
    row = {
        "family": name,
        "parameters": sum(p.numel() for p in den.net.parameters()),
        "build_s": time.perf_counter() - t0,
        "sample_shape": den.sample_shape,
    }
    g = torch.Generator().manual_seed(0)
    pool = torch.randn(args.probes, *den.sample_shape, generator=g)
    cond = den.conditioning.ids(0, range(args.probes))
    bank = probe_bank(
        pool,
        args.probes,
        0,
        (0, den.num_train_timesteps),
        "random latents (cost only)",
        cond,
        flow_shift=den.training_shift,
        num_train_timesteps=den.num_train_timesteps,
    )
    quick = dict(PROFILES["quick"], hessian_probes=min(16, args.probes), landscape_probes=min(32, args.probes))
    # Each measure's own peak (on a CPU, ru_maxrss would carry the build's and every earlier family's).
    t0 = time.perf_counter()
    with PeakMemory(device) as mem:
        measure_sharpness(
            den,
            bank,
            SharpnessConfig(
                **quick,
                batch_size=args.batch_size,
                params=args.params,
                gradient_checkpointing=args.gradient_checkpointing,
            ),
        )
    row.update(sharpness_s=time.perf_counter() - t0, sharpness_peak_gib=mem.peak_bytes / 2**30)
    t0 = time.perf_counter()
    sampler = "checkpoint" if den.flow else "ddim"
    with PeakMemory(device) as mem:
        measure_quantization(
            den,
            bank,
            QuantizeConfig(
                settings=["W4A4"],
                sampler=sampler,
                steps=args.steps,
                samples=args.samples,
                calib_samples=args.samples,
                sensitivity_samples=0,
                batch_size=args.batch_size,
            ),
        )
    row.update(quantize_s=time.perf_counter() - t0, quantize_peak_gib=mem.peak_bytes / 2**30)
    del den
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--probes", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--params", default=None, help="sharpness --params (e.g. 'transformer_blocks.0.*' for Flux)")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="shrink every family (a CPU check of this script)")
    ap.add_argument(
        "--count", action="store_true", help="only print each family's parameter count (built on the meta device)"
    )
    args = ap.parse_args()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # "modules that should be kept in float32": none here, say nothing
    if args.count:
        for name in args.families.split(","):
            spec = FAMILIES[name]
            with torch.device("meta"):
                net = getattr(diffusers, spec["cls"])(**spec["config"])
                vae = diffusers.AutoencoderKL(**spec["vae"])
            print(
                f"{name:<12} denoiser {sum(p.numel() for p in net.parameters()):>14,}  vae "
                f"{sum(p.numel() for p in vae.parameters()):>11,}"
            )
        return
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), dtype "
        f"{args.dtype}, probes {args.probes}, quantize {args.samples} samples x {args.steps} steps, torch "
        f"{torch.__version__}"
    )
    print(f"{'family':<12} {'params':>14} {'sharpness s':>12} {'peak GiB':>9} {'W4A4 s':>9} {'peak GiB':>9}")
    for name in args.families.split(","):
        spec = tiny(FAMILIES[name]) if args.tiny else FAMILIES[name]
        try:
            r = run_family(name, spec, args, device, dtype)
        except torch.cuda.OutOfMemoryError as exc:
            print(f"{name:<12} out of memory: {str(exc).splitlines()[0][:120]}")
            torch.cuda.empty_cache()
            continue
        print(
            f"{name:<12} {r['parameters']:>14,} {r['sharpness_s']:>12.1f} {r['sharpness_peak_gib']:>9.2f} "
            f"{r['quantize_s']:>9.1f} {r['quantize_peak_gib']:>9.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
