"""Train the `digits-cnn` feature network that `flatcheck fid` uses for the bundled digits models.

    python examples/train_digits_cnn.py                 # writes flatcheck/assets/digits_cnn.safetensors
    python examples/train_digits_cnn.py --out /tmp/d.safetensors --epochs 5   # a quick try

Data: scikit-learn's load_digits (1797 images) at 16x16, exactly as the bundled diffusion
models were trained on, and passed through the same uint8 rounding and `prepare` as the
samples are at scoring time. A stratified 80/20 split (seed 0); the held-out accuracy is
printed and stored in the weights' metadata (`test_accuracy`). Augmentation: random
shifts of up to one pixel, so the features do not hinge on exact placement. About 100 s
on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from flatcheck.core.datasets import digits_images, digits_labels
from flatcheck.core.fd.digits_cnn import DigitsCNN, prepare, weights_path
from flatcheck.core.images import to_uint8


def shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Random translation by up to max_shift pixels per image (background -1 fills the gap)."""
    n, _, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p), value=-1.0)
    dy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


@torch.no_grad()
def accuracy(net: DigitsCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float((net(x).argmax(1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=weights_path())
    args = ap.parse_args()

    from safetensors.torch import save_file
    from sklearn.model_selection import train_test_split

    torch.manual_seed(args.seed)
    # Same path as scoring: [-1, 1] -> uint8 -> prepare.
    images = torch.from_numpy(to_uint8(digits_images())).permute(0, 3, 1, 2).contiguous()
    x, y = prepare(images), digits_labels()
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=args.seed, stratify=y.numpy())
    xtr, ytr, xte, yte = x[idx_train], y[idx_train], x[idx_test], y[idx_test]

    net = DigitsCNN()
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
            loss = F.cross_entropy(net(shift(xtr[b], gen)), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1:3d}  loss {total / len(xtr):.4f}  test acc {accuracy(net, xte, yte):.4f}")
    seconds = time.time() - t0

    test_acc, train_acc = accuracy(net, xte, yte), accuracy(net, xtr, ytr)
    with torch.no_grad():  # unit mean per-dimension variance on the training digits (see DigitsCNN)
        net.feature_scale.fill_(1 / float(net.features(xtr).var(0).mean().sqrt()))
    assert accuracy(net, xte, yte) == test_acc  # the scale cancels in the logits
    meta = {
        "test_accuracy": f"{test_acc:.4f}",
        "train_accuracy": f"{train_acc:.4f}",
        "n_train": str(len(xtr)),
        "n_test": str(len(xte)),
        "split": "sklearn train_test_split(test_size=0.2, stratify=labels)",
        "seed": str(args.seed),
        "epochs": str(args.epochs),
        "feature_scale": f"{float(net.feature_scale):.6g}",
        "data": "sklearn load_digits, 16x16 bilinear, uint8-rounded",
        "recipe": "examples/train_digits_cnn.py",
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(args.out), metadata=meta)
    print(json.dumps({**meta, "seconds": round(seconds, 1), "out": str(args.out)}, indent=2))


if __name__ == "__main__":
    main()
