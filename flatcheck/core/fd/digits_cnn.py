"""A small classifier of scikit-learn's digits whose penultimate layer is the `digits-cnn` feature space.

Inception features mean nothing on 16x16 grey digits (and need a download), so the bundled
models are scored in the feature space of this network instead: a Frechet distance there is
reported as "FD (digits-cnn)", never as FID. Weights ship in flatcheck/assets/; the recipe
that made them is examples/train_digits_cnn.py.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import InputError

INPUT_SIZE = 16  # the bundled models' resolution; other sizes are resized to it
FEATURE_DIM = 64
NUM_CLASSES = 10
WEIGHTS_FILE = "digits_cnn.safetensors"


class DigitsCNN(nn.Module):
    """[N, 1, 16, 16] in [-1, 1] -> 64 features (pre-activation, so no dead constant dimensions) -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Flatten(),
        )
        self.embed = nn.Linear(64 * 4 * 4, FEATURE_DIM)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        # Fixed after training so the digits' features have unit mean variance per dimension:
        # keeps FD and KID's cubic kernel on an Inception-like scale instead of ~1e4.
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(x)) * self.feature_scale

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(F.relu(f / self.feature_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(x))


def prepare(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] (C 1 or 3) -> float [N, 1, 16, 16] in [-1, 1], the network's input."""
    x = images.float() / 127.5 - 1
    if x.shape[1] != 1:
        x = x[:, :3].mean(1, keepdim=True)
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return x


def weights_path() -> Path:
    return Path(str(resources.files("flatcheck") / "assets" / WEIGHTS_FILE))


def load_digits_cnn(path: str | Path | None = None) -> DigitsCNN:
    """The trained network (eval mode, no grad) from the package's assets or `path`."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else weights_path()
    if not path.is_file():
        raise InputError(f"digits-cnn weights not found at {path} (rebuild them with: python examples/train_digits_cnn.py)")
    net = DigitsCNN()
    try:
        net.load_state_dict(load_file(str(path)))
    except Exception as exc:  # noqa: BLE001 - any unreadable/mismatched file is the same user error
        raise InputError(f"cannot load digits-cnn weights from {path}: {str(exc).splitlines()[0]}") from None
    return net.eval().requires_grad_(False)


def weights_metadata(path: str | Path | None = None) -> dict:
    """The metadata stored beside the weights (test accuracy, split, seed, recipe)."""
    from safetensors import safe_open

    path = Path(path) if path is not None else weights_path()
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})
