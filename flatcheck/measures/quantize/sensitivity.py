"""Per-layer sensitivity: quantize one layer at a time and rank layers by the sample drift it causes.

The answer to "which layers must stay in high precision": each layer gets the bits the chosen
setting gives it (weights and its input activations), every other layer stays in full
precision, and samples are drawn from the same seeds as the full-precision reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ...core.stats import Estimate
from .drift import paired_drift
from .simulated import LayerInfo, WeightCache, simulated_quantization


@dataclass
class LayerSensitivity:
    rank: int  # 1 = the layer whose quantization alone moves samples most
    name: str
    kind: str  # Conv2d or Linear
    role: str  # first, last, attention, other
    weights: int
    wbits: int | None
    abits: int | None
    drift_mse: Estimate  # paired sample MSE vs full precision with only this layer quantized
    share_of_setting: float | None = None  # drift_mse / the drift of the whole setting


def layer_sensitivity(
    denoiser,
    scheduler,
    steps: int,
    seed: int,
    reference: torch.Tensor,
    layers: dict[str, LayerInfo],
    plan: dict[str, tuple[int | None, int | None]],
    weights: WeightCache,
    act_ranges,
    batch_size: int = 64,
    setting_drift: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[LayerSensitivity]:
    """Rank the layers of `plan`; `reference` holds the full-precision samples 0..n-1 of `seed` in pixels
    (decoded for latent models: drift is always measured on images)."""
    from ...core import dist
    from ...core.sampling import sample

    n = len(reference)
    names = list(plan)

    def drift_of(chunk: list[int]) -> Estimate:  # chunk: [k], the k-th layer of the plan
        name = names[chunk[0]]
        with simulated_quantization(denoiser.net, {name: plan[name]}, weights, act_ranges):
            # split=False: the layers are what several processes share out (k by process k mod N), not the
            # scan's few samples (one batch: it would run whole on every process)
            out = sample(denoiser, scheduler, steps, n, seed, batch_size=batch_size, split=False)
        mse, _ = paired_drift(reference, denoiser.pixels(out, batch_size))
        if progress:
            progress(n)
        return mse

    rows = []
    for name, mse in zip(names, dist.split_batches(drift_of, [[k] for k in range(len(names))])):
        info, bits = layers[name], plan[name]
        share = mse.value / setting_drift if setting_drift else None
        # An unfused LoRA layer (--lora-precision full) is reported by the name of the layer it adapts
        shown = name.removesuffix(".base_layer")
        rows.append(LayerSensitivity(0, shown, info.kind, info.role, info.weights, bits[0], bits[1], mse, share))
    rows.sort(key=lambda r: (-r.drift_mse.value, r.name))
    for i, r in enumerate(rows, 1):
        r.rank = i
    return rows
