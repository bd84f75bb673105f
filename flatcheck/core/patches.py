"""32x32 RGB patches cut from the photographs that scikit-learn and scikit-image ship (no download).

    x = rgb_patches("train")            # [5000, 3, 32, 32] float32 in [-1, 1]
    x, src = rgb_patches("test", return_sources=True)

Sources (all photographs inside the installed wheels; nothing is fetched):

    name        package        loader                             size      split
    china       scikit-learn   load_sample_images() (china.jpg)   427x640   train
    astronaut   scikit-image   skimage.data.astronaut()           512x512   train
    coffee      scikit-image   skimage.data.coffee()              400x600   train
    chelsea     scikit-image   skimage.data.chelsea()             300x451   train
    rocket      scikit-image   skimage.data.rocket()              427x640   train
    flower      scikit-learn   load_sample_images() (flower.jpg)  427x640   test
    motorcycle  scikit-image   skimage.data.stereo_motorcycle()[0] 500x741  test

The split is by source image: no photograph gives patches to both sides.

Extraction, deterministic for a given seed (and the installed image files):
1. each photograph is box-downsampled by the integer factor k = max(1, min(H, W) // 128)
   (the mean of each k x k block, rounded to uint8), so a 32x32 patch shows objects and
   edges rather than a few pixels of texture (short sides become 128-166 px);
2. patch positions (top-left corners) are drawn uniformly over the downsampled image with
   numpy's PCG64 generator seeded by (seed, index of the source in SOURCES), so one source's
   patches do not depend on which other sources are drawn;
3. values are the uint8 pixels mapped to [-1, 1] by v / 127.5 - 1 (exactly representable in
   uint8, as samples are when they are scored).

scikit-image is an optional dependency (`pip install 'flatcheck[rgb]'`, included in `[test]`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..errors import InputError

PATCH = 32
TARGET_SHORT_SIDE = 128
TRAIN_SOURCES = ("china", "astronaut", "coffee", "chelsea", "rocket")
TEST_SOURCES = ("flower", "motorcycle")
SOURCES = TRAIN_SOURCES + TEST_SOURCES
SPLITS = {"train": TRAIN_SOURCES, "test": TEST_SOURCES, "all": SOURCES}


def _skimage():
    try:
        import skimage.data
    except ImportError:
        raise InputError(
            "the RGB patches need scikit-image (pip install 'flatcheck[rgb]' or pip install scikit-image)"
        ) from None
    return skimage.data


def load_photograph(name: str) -> np.ndarray:
    """The full-resolution photograph as uint8 [H, W, 3]."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return np.ascontiguousarray(load_sample_image(f"{name}.jpg")[..., :3])
    data = _skimage()
    if name == "motorcycle":
        return np.ascontiguousarray(data.stereo_motorcycle()[0][..., :3])
    if name in TRAIN_SOURCES:
        return np.ascontiguousarray(getattr(data, name)()[..., :3])
    raise InputError(f"unknown patch source '{name}' (known: {', '.join(SOURCES)})")


def downsample_factor(h: int, w: int) -> int:
    return max(1, min(h, w) // TARGET_SHORT_SIDE)


@lru_cache(maxsize=None)
def source_image(name: str) -> np.ndarray:
    """The photograph box-downsampled by downsample_factor, uint8 [H', W', 3] (read-only)."""
    img = load_photograph(name)
    k = downsample_factor(*img.shape[:2])
    h, w = (img.shape[0] // k) * k, (img.shape[1] // k) * k
    blocks = img[:h, :w].astype(np.float64).reshape(h // k, k, w // k, k, 3)
    out = np.clip(np.rint(blocks.mean(axis=(1, 3))), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def patch_positions(name: str, n: int, seed: int, size: int = PATCH) -> np.ndarray:
    """[n, 2] top-left corners (row, col) of the patches of one source, for one seed."""
    h, w = source_image(name).shape[:2]
    rng = np.random.Generator(np.random.PCG64([seed, SOURCES.index(name)]))
    return np.stack([rng.integers(0, h - size + 1, n), rng.integers(0, w - size + 1, n)], axis=1)


def rgb_patches(
    split: str = "train", n_per_image: int = 1000, seed: int = 0, size: int = PATCH, return_sources: bool = False
):
    """Patches of one split, as float32 [N, 3, size, size] in [-1, 1], grouped by source in
    the order of SPLITS[split]. With return_sources, also an int64 [N] tensor: the index of each
    patch's source in SOURCES."""
    if split not in SPLITS:
        raise InputError(f"unknown split '{split}' (train, test or all)")
    chunks, labels = [], []
    for name in SPLITS[split]:
        img = source_image(name)
        pos = patch_positions(name, n_per_image, seed, size)
        chunks.append(np.stack([img[r : r + size, c : c + size] for r, c in pos]))
        labels.append(np.full(n_per_image, SOURCES.index(name), dtype=np.int64))
    arr = np.concatenate(chunks)  # [N, size, size, 3] uint8
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
    if return_sources:
        return x, torch.from_numpy(np.concatenate(labels))
    return x
