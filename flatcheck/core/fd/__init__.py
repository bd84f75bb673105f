"""FD/FID and KID of a checkpoint's samples against a reference, through torch-fidelity.

score_samples(images, ref, features=...) -> FidResult   images in memory (notebooks, other tools)
scorer      the run's Scorer: what the measures use (model-space samples, decoded and scored batch by batch)
frechet     Frechet distance, its bootstrap, KID
extractors  feature networks (Inception .pth / TorchScript, digits-cnn, patches-cnn, CLIP, DINOv2)
reference   reference inputs and the content-hash keyed statistics cache
digits_cnn  the small digits classifier behind "FD (digits-cnn)"
patches_cnn the small RGB-patch classifier behind "FD (patches-cnn)"
"""

from __future__ import annotations

DIGITS_REF = "digits"
_LAZY = {
    "FEATURES": "extractors",
    "label_for": "extractors",
    "FidResult": "score",
    "fd_change": "score",
    "score_samples": "score",
}


def __getattr__(name: str):
    # The scoring modules import torch: loaded on first use, so a torch-free import of
    # flatcheck.core.fd.options (the CLI's --help) stays fast.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_features(ckpt) -> str:
    """digits-cnn for the bundled digits models (Inception means nothing at 16x16 grey, and is offline), else
    inception."""
    return "digits-cnn" if is_bundled_digits(ckpt) else "inception"


def is_bundled_digits(ckpt) -> bool:
    return getattr(ckpt, "form", None) == "bundled" and ckpt.root.name.startswith("digits-")


__all__ = [
    "FEATURES",
    "DIGITS_REF",
    "FidResult",
    "default_features",
    "fd_change",
    "is_bundled_digits",
    "label_for",
    "score_samples",
]
