"""Retrain the bundled example models from scratch on a CPU.

    python examples/train_digits.py            # all three, into flatcheck/models/
    python examples/train_digits.py --steps 300 --out /tmp/models   # a quick try

One AdamW run gives `digits-base` (raw weights) and `digits-ema` (its EMA
weights); a second run with the same recipe, seed, batches and noise, but with
SAM (Foret et al. 2021), gives `digits-sam`. SAM's radius is chosen by
measurement on the trained base model (see `choose_rho`), because diffusion
losses are flat: the classification default rho=0.05 barely moves the loss.
The recipes, seeds, final losses and timings go to examples/training.json and a
sample grid per model to examples/samples-<name>.png.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel

from flatcheck.core.datasets import digits_images
from flatcheck.core.images import save_grid

ROOT = Path(__file__).resolve().parent.parent
UNET_CONFIG = dict(
    sample_size=16,
    in_channels=1,
    out_channels=1,
    layers_per_block=1,
    block_out_channels=(32, 64),
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
    attention_head_dim=32,
)
RHO_GRID = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
RHO_TARGET_INCREASE = 0.05  # SAM should raise the batch loss by >= 5% to do anything


def make_scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


def batch_loss(unet, scheduler, x0, t, noise):
    x_t = scheduler.add_noise(x0, noise, t)
    return torch.nn.functional.mse_loss(unet(x_t, t).sample, noise)


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train(steps: int, batch: int, lr: float, seed: int, rho: float | None, ema_decay: float, device: str = "cpu"):
    """One training run. Returns (unet, ema_unet, losses)."""
    torch.manual_seed(seed)
    data = digits_images()
    unet = UNet2DModel(**UNET_CONFIG).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    sched = make_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed + 1)  # batches and noise: identical for every run
    params = [p for p in unet.parameters()]
    losses = []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup=100)
        idx = torch.randint(0, len(data), (batch,), generator=gen)
        x0 = data[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=gen)
        # Batches and noise are drawn on the CPU so every device sees the same ones.
        x0, noise, t = x0.to(device), noise.to(device), t.to(device)
        loss = batch_loss(unet, sched, x0, t, noise)
        loss.backward()
        if rho:
            # SAM: climb to theta + rho * g/|g|, take the gradient there, step from theta.
            with torch.no_grad():
                gnorm = torch.sqrt(sum((p.grad**2).sum() for p in params))
                eps = [rho * p.grad / (gnorm + 1e-12) for p in params]
                for p, e in zip(params, eps):
                    p.add_(e)
            opt.zero_grad(set_to_none=True)
            batch_loss(unet, sched, x0, t, noise).backward()
            with torch.no_grad():
                for p, e in zip(params, eps):
                    p.sub_(e)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - ema_decay)
        losses.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}", flush=True)
    return unet, ema, losses


def eval_loss(unet, n: int = 1024, seed: int = 123) -> float:
    """Training loss on a fixed evaluation batch (same for every model)."""
    gen = torch.Generator().manual_seed(seed)
    data = digits_images()
    sched = make_scheduler()
    idx = torch.randint(0, len(data), (n,), generator=gen)
    x0, noise = data[idx], torch.randn((n, 1, 16, 16), generator=gen)
    t = torch.randint(0, 1000, (n,), generator=gen)
    dev = next(unet.parameters()).device
    with torch.no_grad():
        return batch_loss(unet, sched, x0.to(dev), t.to(dev), noise.to(dev)).item()


def choose_rho(unet) -> tuple[float, dict[str, float]]:
    """Relative loss increase of one SAM ascent step at each radius, on a fixed batch.

    Returns the smallest radius that raises the loss by RHO_TARGET_INCREASE.
    """
    gen = torch.Generator().manual_seed(7)
    data = digits_images()
    sched = make_scheduler()
    idx = torch.randint(0, len(data), (512,), generator=gen)
    x0, noise = data[idx], torch.randn((512, 1, 16, 16), generator=gen)
    t = torch.randint(0, 1000, (512,), generator=gen)
    dev = next(unet.parameters()).device
    x0, noise, t = x0.to(dev), noise.to(dev), t.to(dev)
    params = list(unet.parameters())
    unet.zero_grad(set_to_none=True)
    base = batch_loss(unet, sched, x0, t, noise)
    grads = torch.autograd.grad(base, params)
    gnorm = torch.sqrt(sum((g**2).sum() for g in grads))
    table = {}
    for rho in RHO_GRID:
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.add_(rho * g / gnorm)
            up = batch_loss(unet, sched, x0, t, noise).item()
            for p, g in zip(params, grads):
                p.sub_(rho * g / gnorm)
        table[str(rho)] = (up - base.item()) / base.item()
    chosen = next((r for r in RHO_GRID if table[str(r)] >= RHO_TARGET_INCREASE), RHO_GRID[-1])
    return chosen, table


def save(unet, out: Path, name: str, seed: int) -> Path:
    folder = out / name
    DDPMPipeline(unet=copy.deepcopy(unet).cpu(), scheduler=make_scheduler()).save_pretrained(
        folder, safe_serialization=True
    )
    # A DDIM-50 sample grid, fixed seed, so a reader can see what the model makes.
    sched = DDIMScheduler.from_config(make_scheduler().config)
    sched.set_timesteps(50)
    x = torch.randn((64, 1, 16, 16), generator=torch.Generator().manual_seed(seed)).to(next(unet.parameters()).device)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x).prev_sample
    save_grid(x, ROOT / "examples" / f"samples-{name}.png", nrow=8, scale=4)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ema-decay", type=float, default=0.995)
    ap.add_argument("--rho", type=float, default=None, help="SAM radius (default: chosen by measurement)")
    ap.add_argument("--out", type=Path, default=ROOT / "flatcheck" / "models")
    ap.add_argument("--log", type=Path, default=ROOT / "examples" / "training.json")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    recipe = dict(
        unet=UNET_CONFIG,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        schedule="100-step warmup, cosine",
        optimizer="AdamW(weight_decay=1e-4)",
        loss="eps MSE, DDPM linear betas 1e-4..0.02, T=1000",
        seed=args.seed,
        ema_decay=args.ema_decay,
        data="sklearn load_digits, 8x8 -> 16x16 bilinear, [-1, 1]",
    )
    log = {"recipe": recipe, "device": args.device, "torch": torch.__version__, "models": {}}

    t0 = time.time()
    unet, ema, losses = train(
        args.steps, args.batch, args.lr, args.seed, rho=None, ema_decay=args.ema_decay, device=args.device
    )
    base_time = time.time() - t0
    for name, model in (("digits-base", unet), ("digits-ema", ema)):
        save(model, args.out, name, args.seed)
        log["models"][name] = dict(
            run="AdamW",
            weights="raw" if name == "digits-base" else "EMA",
            final_train_loss_last100=sum(losses[-100:]) / len(losses[-100:]),
            eval_loss=eval_loss(model),
            train_seconds=round(base_time, 1),
        )

    rho, rho_table = (args.rho, {}) if args.rho else choose_rho(unet)
    log["rho_selection"] = dict(
        grid=list(RHO_GRID),
        relative_loss_increase=rho_table,
        chosen=rho,
        rule=f"smallest rho whose one-step SAM ascent raises the base model's loss by >= {RHO_TARGET_INCREASE:.0%}",
    )
    print(f"SAM rho = {rho} (relative increases: {rho_table})", flush=True)
    t0 = time.time()
    sam, _, sam_losses = train(
        args.steps, args.batch, args.lr, args.seed, rho=rho, ema_decay=args.ema_decay, device=args.device
    )
    save(sam, args.out, "digits-sam", args.seed)
    log["models"]["digits-sam"] = dict(
        run=f"AdamW + SAM(rho={rho})",
        weights="raw",
        final_train_loss_last100=sum(sam_losses[-100:]) / len(sam_losses[-100:]),
        eval_loss=eval_loss(sam),
        train_seconds=round(time.time() - t0, 1),
    )
    args.log.write_text(json.dumps(log, indent=2) + "\n")
    print(json.dumps(log["models"], indent=2))


if __name__ == "__main__":
    main()
