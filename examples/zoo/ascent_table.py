"""How far one SAM / ASAM ascent step moves the loss of the zoo's adamw-s0 (after the zoo is built).

    python examples/zoo/ascent_table.py

The same fixed 512-sample batch (generator seed 7) as train_digits.choose_rho; for each radius,
the relative increase of the batch loss after one ascent step from adamw-s0's weights, and the
step's Euclidean norm. Used to place ASAM's rho beside the SAM radii in examples/zoo/README.md.
"""

import json
import sys

import torch

# The imports below come after the thread count is set and examples/ is on sys.path (train_digits).
torch.set_num_threads(1)
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
from diffusers import UNet2DModel  # noqa: E402
from train_digits import batch_loss, make_scheduler  # noqa: E402

from flatcheck.core.datasets import digits_images  # noqa: E402

unet = UNet2DModel.from_pretrained(str(ROOT / "examples/zoo/models/adamw-s0/unet"))
gen = torch.Generator().manual_seed(7)
data = digits_images()
sched = make_scheduler()
idx = torch.randint(0, len(data), (512,), generator=gen)
x0, noise = data[idx], torch.randn((512, 1, 16, 16), generator=gen)
t = torch.randint(0, 1000, (512,), generator=gen)
params = list(unet.parameters())
base = batch_loss(unet, sched, x0, t, noise)
grads = torch.autograd.grad(base, params)
gn = torch.sqrt(sum((g**2).sum() for g in grads))
T = [p.detach().abs() + 0.01 for p in params]
an = torch.sqrt(sum(((tw * g) ** 2).sum() for tw, g in zip(T, grads)))
out = {}
for kind, rhos in (("sam", (0.02, 0.05, 0.1, 0.2, 0.5)), ("asam", (0.1, 0.2, 0.5, 1.0))):
    for rho in rhos:
        eps = [rho * g / gn for g in grads] if kind == "sam" else [rho * tw * tw * g / an for tw, g in zip(T, grads)]
        with torch.no_grad():
            for p, e in zip(params, eps):
                p.add_(e)
            up = batch_loss(unet, sched, x0, t, noise).item()
            for p, e in zip(params, eps):
                p.sub_(e)
        enorm = float(torch.sqrt(sum((e**2).sum() for e in eps)))
        out[f"{kind} {rho}"] = dict(rel_increase=round((up - base.item()) / base.item(), 4), step_norm=round(enorm, 4))
print(json.dumps(out, indent=0))
