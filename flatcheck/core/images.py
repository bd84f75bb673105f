"""Image helpers: tensors in [-1, 1] <-> uint8, and sample grids as PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] (rounded, clipped)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1, scale: int = 1) -> np.ndarray:
    """Tile [N, C, H, W] in [-1, 1] into one uint8 image [H', W', C] (C is 1 or 3)."""
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    out = np.zeros((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y : y + h, x : x + w] = arr[i]
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 4) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = grid(images, nrow=nrow, scale=scale)
    Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g).save(path)
    return path


def save_figure(fig, path, dpi: int = 110, tight: bool = True, **savefig_kw) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; returns the path."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **savefig_kw)
    plt.close(fig)
    return path
