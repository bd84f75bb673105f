"""A small classifier of the RGB patches' source photograph; its penultimate layer is the
`patches-cnn` feature space.

The RGB-patch zoo (examples/zoo/) makes 32x32 RGB images. Inception (FID) would need them
upsampled to 299x299, its weights cannot be downloaded here, and ImageNet features of 32x32
crops of seven photographs say little about them; so FD on these images is computed in the
feature space of this network instead and reported as "FD (patches-cnn)", never as FID.
Task: which of the five training photographs (flatcheck.core.patches.TRAIN_SOURCES) a
32x32 patch was cut from. Weights ship in flatcheck/assets/; the recipe that made them is
examples/zoo/train_patches_cnn.py.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import InputError

INPUT_SIZE = 32
FEATURE_DIM = 128
NUM_CLASSES = 5  # len(flatcheck.core.patches.TRAIN_SOURCES)
WEIGHTS_FILE = "patches_cnn.safetensors"


class PatchesCNN(nn.Module):
    """[N, 3, 32, 32] in [-1, 1] -> 128 features (pre-activation) -> 5 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 16x16
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Flatten(),
        )
        self.embed = nn.Linear(64 * 4 * 4, FEATURE_DIM)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        # Fixed after training: unit mean variance per feature dimension on the training patches.
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(x)) * self.feature_scale

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(F.relu(f / self.feature_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(x))


def prepare(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] (C 1, 3 or 4) -> float [N, 3, 32, 32] in [-1, 1], the network's input."""
    x = images.float() / 127.5 - 1
    x = x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()


def weights_path() -> Path:
    return Path(str(resources.files("flatcheck") / "assets" / WEIGHTS_FILE))


def load_patches_cnn(path: str | Path | None = None) -> PatchesCNN:
    """The trained network (eval mode, no grad) from the package's assets or `path`."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else weights_path()
    if not path.is_file():
        raise InputError(f"patches-cnn weights not found at {path} (rebuild them with: python examples/zoo/train_patches_cnn.py)")
    net = PatchesCNN()
    try:
        net.load_state_dict(load_file(str(path)))
    except Exception as exc:  # noqa: BLE001 - any unreadable/mismatched file is the same user error
        raise InputError(f"cannot load patches-cnn weights from {path}: {str(exc).splitlines()[0]}") from None
    return net.eval().requires_grad_(False)
