"""Train the checkpoint zoo: one architecture, one step budget, several optimizers.

    python examples/zoo/train_zoo.py                       # the digits zoo, into examples/zoo/models/
    python examples/zoo/train_zoo.py --dataset rgb         # the RGB-patch zoo (600 steps), into examples/zoo/models-rgb/
    python examples/zoo/train_zoo.py --only sam-0.05,asam  # some members
    python examples/zoo/train_zoo.py --steps 20 --out /tmp/zoo   # a smoke test

Digits members (architecture and data of examples/train_digits.py, the bundled models' UNet):

    adamw-s0, adamw-s1, adamw-s2   AdamW, seeds 0, 1, 2 (the seed sets the init AND the batch/noise stream)
    ema                            EMA of the adamw-s0 run (decay 0.995 with diffusers' warm-up)
    swa                            uniform average of adamw-s0's weights after each of its last 25% of steps
    sam-0.02 ... sam-0.5           SAM (Foret et al. 2021) at rho 0.02, 0.05, 0.1, 0.2, 0.5, seed 0
    asam                           adaptive SAM (Kwon et al. 2021), rho 0.5, eta 0.01, seed 0

Every member of a zoo has the same step budget, lr schedule and batch size; all seed-0
members see exactly the same batches, timesteps and noise (one CPU generator, seeded
seed + 1, drawn the same way in every run), and start from the same initial weights.
Members already built under --out (a model_index.json and their log) are skipped, so an
interrupted zoo resumes. Each run writes a JSON training log to examples/zoo/logs/ (or
logs-rgb/), each member a DDIM-50 sample grid to examples/zoo/samples/, and the zoo a
summary, examples/zoo/zoo.json (or zoo-rgb.json).
"""  # noqa: E501 - printed as the --help text (RawDescriptionHelpFormatter): kept as written

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMPipeline, UNet2DModel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/: reuse train_digits' recipe pieces
from train_digits import UNET_CONFIG, batch_loss, lr_at, make_scheduler  # noqa: E402

from flatcheck.core.images import save_grid  # noqa: E402

# The RGB-patch UNet: 32x32x3, three levels (16, 32, 64 channels), attention at 8x8: 687k parameters, a
# fwd+bwd as fast as the digits UNet (a (32, 64, 64) version cost 4x as much on this CPU).
RGB_UNET_CONFIG = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    layers_per_block=1,
    block_out_channels=(16, 32, 64),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
    attention_head_dim=32,
)

# member -> (run, weights). A run is one optimizer trajectory; it can give several members.
RUNS = {
    "digits": {
        "adamw-s0": dict(seed=0, opt="adamw"),
        "adamw-s1": dict(seed=1, opt="adamw"),
        "adamw-s2": dict(seed=2, opt="adamw"),
        "sam-0.02": dict(seed=0, opt="sam", rho=0.02),
        "sam-0.05": dict(seed=0, opt="sam", rho=0.05),
        "sam-0.1": dict(seed=0, opt="sam", rho=0.1),
        "sam-0.2": dict(seed=0, opt="sam", rho=0.2),
        "sam-0.5": dict(seed=0, opt="sam", rho=0.5),
        "asam": dict(seed=0, opt="asam", rho=0.5, eta=0.01),
    },
    "rgb": {
        "adamw": dict(seed=0, opt="adamw"),
        "sam-0.05": dict(seed=0, opt="sam", rho=0.05),
        "sam-0.1": dict(seed=0, opt="sam", rho=0.1),
        "sam-0.2": dict(seed=0, opt="sam", rho=0.2),
    },
}
MEMBERS = {
    "digits": {
        "adamw-s0": ("adamw-s0", "raw"),
        "ema": ("adamw-s0", "ema"),
        "swa": ("adamw-s0", "swa"),
        "adamw-s1": ("adamw-s1", "raw"),
        "adamw-s2": ("adamw-s2", "raw"),
        **{r: (r, "raw") for r in ("sam-0.02", "sam-0.05", "sam-0.1", "sam-0.2", "sam-0.5", "asam")},
    },
    "rgb": {
        "adamw": ("adamw", "raw"),
        "ema": ("adamw", "ema"),
        "swa": ("adamw", "swa"),
        **{r: (r, "raw") for r in ("sam-0.05", "sam-0.1", "sam-0.2")},
    },
}
DEFAULTS = {
    "digits": dict(steps=400, out=HERE / "models", logs=HERE / "logs", summary=HERE / "zoo.json"),
    "rgb": dict(steps=600, out=HERE / "models-rgb", logs=HERE / "logs-rgb", summary=HERE / "zoo-rgb.json"),
}
EMA_DECAY = 0.995


def ema_decay_at(step: int) -> float:
    """diffusers' EMAModel decay with its default warm-up, min(0.995, (1 + step) / (10 + step)).

    The bundled digits-ema uses a constant 0.995 over 1200 steps; over this zoo's 400 steps a
    constant 0.995 would leave e^-2 = 13.5% of the EMA's weight on the random initialisation
    (measured: eval loss 0.0429 vs 0.0325 raw, visibly noisy samples), so the zoo uses the
    warm-up that diffusers' training scripts use."""
    return min(EMA_DECAY, (1 + step) / (10 + step))


SWA_FRACTION = 0.25  # average the weights after each of the last 25% of steps


def dataset(name: str) -> tuple[torch.Tensor, dict, str]:
    """(training images [N, C, H, W] in [-1, 1], UNet config, description)."""
    if name == "digits":
        from flatcheck.core.datasets import digits_images

        return digits_images(), UNET_CONFIG, "sklearn load_digits, 8x8 -> 16x16 bilinear, [-1, 1] (all 1797)"
    from flatcheck.core.patches import TRAIN_SOURCES, rgb_patches

    return (
        rgb_patches("train"),
        RGB_UNET_CONFIG,
        f"32x32 RGB patches of {', '.join(TRAIN_SOURCES)} (flatcheck.core.patches, split 'train')",
    )


def sam_perturbation(params, rho: float, adaptive: bool, eta: float):
    """The ascent step e(w). SAM: rho g / |g|. ASAM (Kwon et al. 2021, with T_w = |w| + eta,
    elementwise, on every parameter tensor): rho T_w^2 g / |T_w g|."""
    with torch.no_grad():
        if adaptive:
            t = [p.abs() + eta for p in params]
            norm = torch.sqrt(sum(((tw * p.grad) ** 2).sum() for tw, p in zip(t, params)))
            return [rho * tw * tw * p.grad / (norm + 1e-12) for tw, p in zip(t, params)]
        gnorm = torch.sqrt(sum((p.grad**2).sum() for p in params))
        return [rho * p.grad / (gnorm + 1e-12) for p in params]


def train_run(
    data,
    unet_config,
    steps: int,
    batch: int,
    lr: float,
    warmup: int,
    seed: int,
    opt_name: str,
    rho: float = 0.0,
    eta: float = 0.0,
    device: str = "cpu",
    swa_start: int | None = None,
    log_every: int = 1,
):
    """One run. For opt 'adamw'/'sam' with warmup=100 the raw weights are examples/train_digits.py's
    train() step for step (same init, same generator calls; the EMA differs: see ema_decay_at).
    Returns (raw, ema, swa or None, log)."""
    torch.manual_seed(seed)
    unet = UNet2DModel(**unet_config).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    swa, swa_n = None, 0
    sched = make_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed + 1)
    params = list(unet.parameters())
    losses, times = [], []
    t0 = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup=warmup)
        idx = torch.randint(0, len(data), (batch,), generator=gen)
        x0 = data[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=gen)
        x0, noise, t = x0.to(device), noise.to(device), t.to(device)
        loss = batch_loss(unet, sched, x0, t, noise)
        loss.backward()
        if opt_name in ("sam", "asam"):
            eps = sam_perturbation(params, rho, adaptive=opt_name == "asam", eta=eta)
            with torch.no_grad():
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
            decay = ema_decay_at(step)
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
            if swa_start is not None and step >= swa_start:
                if swa is None:
                    swa = copy.deepcopy(unet).requires_grad_(False)
                else:
                    for ps, p in zip(swa.parameters(), unet.parameters()):
                        ps.mul_(swa_n / (swa_n + 1)).add_(p, alpha=1 / (swa_n + 1))
                swa_n += 1
        losses.append(loss.item())
        if step % log_every == 0 or step == steps - 1:
            times.append(round(time.time() - t0, 2))
        if step % 50 == 0 or step == steps - 1:
            print(f"  step {step:5d}  loss {loss.item():.4f}  {time.time() - t0:7.1f} s", flush=True)
    seconds = time.time() - t0
    log = dict(
        losses=[round(v, 6) for v in losses],
        loss_every=1,
        elapsed_seconds_every=log_every,
        elapsed_seconds=times,
        train_seconds=round(seconds, 1),
        seconds_per_step=round(seconds / steps, 4),
        swa_averaged_steps=swa_n,
    )
    return unet, ema, swa, log


def eval_loss(unet, data, n: int = 1024, seed: int = 123) -> float:
    """Training loss on a fixed evaluation draw (the same for every member; for digits the same
    draw as examples/train_digits.py's eval_loss)."""
    gen = torch.Generator().manual_seed(seed)
    sched = make_scheduler()
    idx = torch.randint(0, len(data), (n,), generator=gen)
    x0, noise = data[idx], torch.randn((n, *data.shape[1:]), generator=gen)
    t = torch.randint(0, 1000, (n,), generator=gen)
    dev = next(unet.parameters()).device
    total = 0.0
    with torch.no_grad():
        for s in range(0, n, 256):
            e = slice(s, s + 256)
            total += batch_loss(unet, sched, x0[e].to(dev), t[e].to(dev), noise[e].to(dev)).item() * len(x0[e])
    return total / n


def save_member(unet, folder: Path, grid_path: Path, seed: int = 0, grid_steps: int = 50) -> None:
    DDPMPipeline(unet=copy.deepcopy(unet).cpu(), scheduler=make_scheduler()).save_pretrained(
        folder, safe_serialization=True
    )
    sched = DDIMScheduler.from_config(make_scheduler().config)
    sched.set_timesteps(grid_steps)
    cfg = unet.config
    dev = next(unet.parameters()).device
    x = torch.randn(
        (64, cfg.in_channels, cfg.sample_size, cfg.sample_size), generator=torch.Generator().manual_seed(seed)
    ).to(dev)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x).prev_sample
    save_grid(x, grid_path, nrow=8, scale=4 if cfg.sample_size <= 16 else 2)


def built(out: Path, logs: Path, member: str) -> bool:
    return (out / member / "model_index.json").exists() and (
        out / member / "unet" / "diffusion_pytorch_model.safetensors"
    ).exists()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=("digits", "rgb"), default="digits")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="models folder (default examples/zoo/models, or models-rgb); with --out, logs, summary and "
        "samples default to OUT/logs, OUT/zoo.json, OUT/samples, so a trial run leaves the committed ones alone",
    )
    ap.add_argument(
        "--logs", type=Path, default=None, help="training logs folder (default examples/zoo/logs, or logs-rgb)"
    )
    ap.add_argument(
        "--summary", type=Path, default=None, help="zoo summary JSON (default examples/zoo/zoo.json, or zoo-rgb.json)"
    )
    ap.add_argument("--samples", type=Path, default=None, help="sample grids folder (default examples/zoo/samples)")
    ap.add_argument("--only", default=None, help="comma-separated members (default: all)")
    ap.add_argument(
        "--steps", type=int, default=None, help="step budget of every member (default: 400 digits, 600 rgb)"
    )
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument(
        "--warmup", type=int, default=None, help="warm-up steps (default steps // 12: the bundled recipe's 100 of 1200)"
    )
    ap.add_argument(
        "--grid-steps",
        type=int,
        default=50,
        help="DDIM steps of each member's sample grid (default 50; a trial run may take fewer)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = DEFAULTS[args.dataset]
    steps = args.steps or d["steps"]
    warmup = args.warmup if args.warmup is not None else max(1, steps // 12)
    if args.out is not None:
        out = args.out
        logs, summary, samples = (
            args.logs or out / "logs",
            args.summary or out / "zoo.json",
            args.samples or out / "samples",
        )
    else:
        out, logs, summary, samples = (
            d["out"],
            args.logs or d["logs"],
            args.summary or d["summary"],
            args.samples or HERE / "samples",
        )
    members = MEMBERS[args.dataset]
    wanted = list(members) if not args.only else [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in members]
    if unknown:
        ap.error(f"unknown member(s) {unknown}; the {args.dataset} zoo has {list(members)}")

    data, unet_config, data_desc = dataset(args.dataset)
    recipe = dict(
        dataset=args.dataset,
        data=data_desc,
        n_train_images=len(data),
        unet=unet_config,
        unet_parameters=sum(p.numel() for p in UNet2DModel(**unet_config).parameters()),
        steps=steps,
        batch=args.batch,
        lr=args.lr,
        schedule=f"{warmup}-step linear warm-up, then cosine decay to 0 at step {steps}",
        optimizer="AdamW(weight_decay=1e-4); SAM/ASAM wrap it (two forward-backward passes a step)",
        loss="eps MSE, DDPM linear betas 1e-4..0.02, T=1000",
        ema_decay=f"min({EMA_DECAY}, (1 + step) / (10 + step)) (diffusers EMAModel warm-up)",
        swa=f"uniform average of the raw weights after each optimizer step of the last {SWA_FRACTION:.0%} of steps "
        "(the lr keeps its cosine decay there, unlike classic SWA's constant or cyclic lr; GroupNorm only, "
        "so no BN update)",
        asam="Kwon et al. 2021: e = rho T^2 g / |T g|, T = |w| + eta elementwise on every parameter tensor (the "
        "official code leaves biases at T = 1)",
        batches="one CPU torch.Generator seeded seed + 1: indices, noise, timesteps drawn in that order each step",
        eval_loss="eps MSE on 1024 fixed (image, t, noise) draws, generator seed 123",
        samples=f"DDIM {args.grid_steps} steps, 64 images, noise seed 0",
    )
    summary_doc = json.loads(summary.read_text()) if summary.exists() else {}
    summary_doc.update(
        recipe=recipe,
        environment=dict(
            torch=torch.__version__,
            python=platform.python_version(),
            device=args.device,
            threads=torch.get_num_threads(),
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
        ),
    )
    summary_doc.setdefault("members", {})
    logs.mkdir(parents=True, exist_ok=True)
    prefix = "" if args.dataset == "digits" else "rgb-"

    for run_name, spec in RUNS[args.dataset].items():
        todo = [m for m in wanted if members[m][0] == run_name and not built(out, logs, m)]
        if not todo:
            continue
        print(f"run {run_name} -> {todo}  ({steps} steps, {spec})", flush=True)
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        raw, ema, swa, log = train_run(
            data,
            unet_config,
            steps,
            args.batch,
            args.lr,
            warmup,
            spec["seed"],
            spec["opt"],
            rho=spec.get("rho", 0.0),
            eta=spec.get("eta", 0.0),
            device=args.device,
            swa_start=min(steps - 1, int(round(steps * (1 - SWA_FRACTION)))),
        )
        weights = {"raw": raw, "ema": ema, "swa": swa}
        n = max(1, steps // 10)
        run_log = dict(
            run=run_name,
            spec=spec,
            started_utc=started,
            recipe=recipe,
            environment=summary_doc["environment"],
            pid=os.getpid(),
            **log,
            final_train_loss_last10pct=sum(log["losses"][-n:]) / n,
            members={},
        )
        for m in [m for m in members if members[m][0] == run_name]:
            net = weights[members[m][1]]
            ev = eval_loss(net, data)
            run_log["members"][m] = dict(weights=members[m][1], eval_loss=ev)
            if m in todo:
                save_member(net, out / m, samples / f"{prefix}{m}.png", grid_steps=args.grid_steps)
                summary_doc["members"][m] = dict(
                    run=run_name,
                    weights=members[m][1],
                    **spec,
                    final_train_loss_last10pct=run_log["final_train_loss_last10pct"],
                    eval_loss=ev,
                    train_seconds=log["train_seconds"],
                    seconds_per_step=log["seconds_per_step"],
                    log=f"{logs.name}/{run_name}.json",
                    folder=str(Path(out.name) / m),
                )
                print(f"  saved {m}: eval loss {ev:.5f}", flush=True)
        (logs / f"{run_name}.json").write_text(json.dumps(run_log, indent=1) + "\n")
        summary_doc["total_train_seconds"] = round(
            sum({v["run"]: v["train_seconds"] for v in summary_doc["members"].values()}.values()), 1
        )
        summary.write_text(json.dumps(summary_doc, indent=2) + "\n")
    print(
        json.dumps(
            {
                m: {k: v for k, v in summary_doc["members"].get(m, {}).items() if k in ("eval_loss", "train_seconds")}
                for m in wanted
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
