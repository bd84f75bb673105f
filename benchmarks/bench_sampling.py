"""Our sampling engine vs diffusers' own pipeline __call__: same model, scheduler, steps and noise.

Prints, per sampler, the best-of-R wall time of each (runs interleaved so background load hits
both alike), their ratio (ours / pipeline; <= 1 means at least as fast) and the largest pixel
difference. Usage:
    .venv/bin/python benchmarks/bench_sampling.py [MODEL] [--n 64] [--repeats 3] [--steps ddim=50,ddpm=100]
MODEL: a bundled name or a DDPMPipeline folder (default digits-base).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model", nargs="?", default="digits-base")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", default="ddim=50,ddpm=100")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()

    import diffusers

    from flatcheck.core.checkpoint import load
    from flatcheck.core.denoiser import Denoiser
    from flatcheck.core.sampling import generators, make_sampler, sample

    ckpt = load(a.model, device=torch.device(a.device))
    den = Denoiser.from_checkpoint(ckpt)
    print(
        f"model {ckpt.source} ({ckpt.num_parameters:,} params), {a.n} images, device {a.device}, "
        f"torch threads {torch.get_num_threads()}, best of {a.repeats}"
    )
    pipes = {"ddpm": diffusers.DDPMPipeline, "ddim": diffusers.DDIMPipeline}
    for item in a.steps.split(","):
        name, steps = item.split("=")
        steps = int(steps)
        pipe = pipes[name](unet=ckpt.denoiser, scheduler=make_sampler(ckpt.scheduler, name))
        pipe.set_progress_bar_config(disable=True)
        ours_sched = make_sampler(ckpt.scheduler, name)
        t_ours, t_pipe = [], []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            x = sample(den, ours_sched, steps, a.n, seed=0, batch_size=a.n)
            t_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ref = pipe(
                batch_size=a.n, generator=generators(0, range(a.n)), num_inference_steps=steps, output_type="np"
            ).images
            t_pipe.append(time.perf_counter() - t0)
        diff = float(np.abs((x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy() - ref).max())
        print(
            f"{name:5s} {steps:4d} steps: ours {min(t_ours):7.2f} s   pipeline {min(t_pipe):7.2f} s   "
            f"ratio ours/pipeline {min(t_ours) / min(t_pipe):.3f}   max pixel diff {diff:.1e}"
        )


if __name__ == "__main__":
    main()
