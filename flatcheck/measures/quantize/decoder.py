"""--quantize-vae: the autoencoder's decoder quantized with the denoiser, for latent models.

A deployed latent model quantizes its decoder too. With this option every simulated setting also
quantizes `vae.decoder` (its Conv2d and Linear layers, under the same layer policy and widths; the
1x1 post-quant conv and a VQ codebook stay in full precision), and the setting's samples are decoded
by that decoder before their drift and FD are measured. Activation ranges come from decoding the
denoiser's calibration samples (other seeds than the evaluated ones). The full-precision reference
is decoded in full precision. bitsandbytes settings leave the decoder alone (its Linear layers are a
few attention projections), and the per-layer scan covers the denoiser only.
"""

from __future__ import annotations

import torch

from .calibrate import ActivationRecorder, activation_ranges
from .simulated import WeightCache, layer_plan, quantizable_layers, simulated_quantization


class DecoderQuantization:
    def __init__(self, denoiser, settings, policy):
        self.denoiser = denoiser
        self.module = denoiser.vae.decoder
        self.layers = quantizable_layers(self.module)  # names relative to the decoder: conv_in first, conv_out last
        self.plans = {
            s.name: layer_plan(self.layers, policy, s.wbits, s.abits) for s in settings if s.backend == "simulated"
        }
        self.weights = WeightCache(self.module)
        self.ranges: dict = {}
        self.description = "none (no integer activations in the decoder)"

    @property
    def weight_count(self) -> int:
        return sum(layer.weights for layer in self.layers.values())

    @torch.no_grad()
    def calibrate(self, latents: torch.Tensor, method: str, percentile: float, batch_size: int, seed: int) -> None:
        names = sorted(
            {n for plan in self.plans.values() for n, (_, ab) in plan.items() if ab is not None},
            key=list(self.layers).index,
        )
        if not names:
            return
        with ActivationRecorder(self.module, names, seed=seed) as rec:
            self._decode(latents, batch_size)
        widths = {ab for plan in self.plans.values() for _, ab in plan.values() if ab is not None}
        self.ranges = activation_ranges(rec.stats, names, method, widths, percentile)
        self.description = f"{method} ranges from decoding the {len(latents)} calibration samples"

    @torch.no_grad()
    def decode(self, setting: str, latents: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Images of `latents` through the decoder quantized as `setting` (full precision for a bnb setting).
        The measure calls this one batch at a time (drift.paired_pass)."""
        plan = self.plans.get(setting, {})
        with simulated_quantization(self.module, plan, self.weights, self.ranges):
            return self._decode(latents, batch_size)

    def _decode(self, latents: torch.Tensor, batch_size: int) -> torch.Tensor:
        d = self.denoiser
        return torch.cat([d.decode(b.to(d.device)).float().cpu() for b in latents.split(batch_size)])
