"""Bundled reference data: scikit-learn's digits, shaped for the bundled models.

load_digits ships inside scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DIGITS_SIZE = 16


@lru_cache(maxsize=1)
def digits_table() -> tuple[np.ndarray, np.ndarray]:
    """(images [1797, 8, 8] float64 grey levels 0..16, labels [1797] int64): load_digits' arrays.

    Read from the CSV that scikit-learn ships (datasets/data/digits.csv.gz), found without importing
    scikit-learn: importing sklearn.datasets took 0.4-0.7 s here, as long as 9-14 batch-64 forward passes
    of the bundled models. Falls back to load_digits where the file is not.
    """
    spec = importlib.util.find_spec("sklearn")
    where = list(spec.submodule_search_locations or []) if spec else []
    path = Path(where[0], "datasets", "data", "digits.csv.gz") if where else None
    if path is not None and path.is_file():
        with gzip.open(path, "rt") as f:
            data = np.loadtxt(f, delimiter=",")
        images, labels = data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels = digits.images, digits.target.astype(np.int64)
    images.setflags(write=False)  # cached and shared: nobody may change them
    labels.setflags(write=False)
    return images, labels


def digits_images(size: int = DIGITS_SIZE, rows: slice = slice(None)) -> torch.Tensor:
    """All 1797 digits (or those of `rows`) as float32 [N, 1, size, size] in [-1, 1] (bilinear upsampling
    of 8x8, image by image: a slice's values are the whole set's)."""
    images = digits_table()[0][rows].astype(np.float32) / 16.0  # 0..16 grey levels
    x = torch.from_numpy(images).unsqueeze(1)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 2 - 1).contiguous()


def digits_labels() -> torch.Tensor:
    return torch.from_numpy(digits_table()[1].copy())
