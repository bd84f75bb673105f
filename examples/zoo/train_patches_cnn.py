"""Train the `patches-cnn` feature network behind "FD (patches-cnn)" for the RGB-patch zoo.

    python examples/zoo/train_patches_cnn.py            # writes flatcheck/assets/patches_cnn.safetensors
    python examples/zoo/train_patches_cnn.py --epochs 2 --out /tmp/p.safetensors   # a quick try

Task: which of the five training photographs (flatcheck.core.patches.TRAIN_SOURCES: china,
astronaut, coffee, chelsea, rocket) a 32x32 patch comes from. The test photographs (flower,
motorcycle) are never seen, as for the diffusion models.
Data: rgb_patches("train", n_per_image=1500, seed=1) to train (7,500 patches; seed 1, so
other positions than the seed-0 patches the diffusion zoo trains on) and seed 2, 400 per
image, for the held-out accuracy. The held-out patches are new crops of the SAME photographs
(they overlap the training crops in area), so that accuracy measures fit, not generalisation
to new images. Inputs go through the same uint8 rounding and `prepare` as samples at
scoring time; augmentation: random horizontal flips. One thread by default.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from flatcheck.core.fd.patches_cnn import PatchesCNN, prepare, weights_path
from flatcheck.core.images import to_uint8
from flatcheck.core.patches import SOURCES, TRAIN_SOURCES, rgb_patches


def as_input(x: torch.Tensor) -> torch.Tensor:
    return prepare(torch.from_numpy(to_uint8(x)).permute(0, 3, 1, 2).contiguous())


def labels(src: torch.Tensor) -> torch.Tensor:
    """Index in SOURCES -> class index in TRAIN_SOURCES."""
    lut = torch.tensor([TRAIN_SOURCES.index(s) if s in TRAIN_SOURCES else -1 for s in SOURCES])
    return lut[src]


@torch.no_grad()
def accuracy(net: PatchesCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float(torch.cat([net(x[s : s + 512]).argmax(1) for s in range(0, len(x), 512)]).eq(y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-image", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=weights_path())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from safetensors.torch import save_file

    torch.manual_seed(args.seed)
    xtr, str_ = rgb_patches("train", n_per_image=args.per_image, seed=1, return_sources=True)
    xte, ste = rgb_patches("train", n_per_image=400, seed=2, return_sources=True)
    xtr, ytr, xte, yte = as_input(xtr), labels(str_), as_input(xte), labels(ste)

    net = PatchesCNN()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = (len(xtr) + args.batch_size - 1) // args.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for start in range(0, len(xtr), args.batch_size):
            b = perm[start : start + args.batch_size]
            xb = xtr[b]
            flip = torch.rand(len(b), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(net(xb), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        print(
            f"epoch {epoch + 1:3d}  loss {total / len(xtr):.4f}  held-out acc {accuracy(net, xte, yte):.4f}  "
            f"{time.time() - t0:.0f} s",
            flush=True,
        )
    seconds = time.time() - t0

    test_acc, train_acc = accuracy(net, xte, yte), accuracy(net, xtr, ytr)
    with torch.no_grad():  # unit mean per-dimension variance on the training patches
        f = torch.cat([net.features(xtr[s : s + 512]) for s in range(0, len(xtr), 512)])
        net.feature_scale.fill_(1 / float(f.var(0).mean().sqrt()))
    assert accuracy(net, xte, yte) == test_acc  # the scale cancels in the logits
    meta = {
        "task": f"source photograph of a 32x32 patch, {len(TRAIN_SOURCES)} classes: {', '.join(TRAIN_SOURCES)}",
        "heldout_accuracy": f"{test_acc:.4f}",
        "train_accuracy": f"{train_acc:.4f}",
        "n_train": str(len(xtr)),
        "n_heldout": str(len(xte)),
        "data": f"flatcheck.core.patches rgb_patches('train', n_per_image={args.per_image}, seed=1); held out: "
        "seed=2, 400 per image (new crops of the same photographs)",
        "seed": str(args.seed),
        "epochs": str(args.epochs),
        "feature_scale": f"{float(net.feature_scale):.6g}",
        "recipe": "examples/zoo/train_patches_cnn.py",
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(args.out), metadata=meta)
    print(json.dumps({**meta, "seconds": round(seconds, 1), "out": str(args.out)}, indent=2))


if __name__ == "__main__":
    main()
