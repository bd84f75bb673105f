"""The probe bank: a seeded, fixed set of (x0, t, noise) triples that every measure shares.

Fixing the probes makes losses comparable across checkpoints and runs: the same bank
gives the same loss to the last bit on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .denoiser import Denoiser
from .errors import InputError


@dataclass
class ProbeBank:
    x0: torch.Tensor  # [N, C, H, W], model space (latents for latent models), float32, CPU
    t: torch.Tensor  # [N] long, stratified over [t_lo, t_hi)
    noise: torch.Tensor  # [N, C, H, W]
    source: str  # where x0 came from, stated in every report
    seed: int
    t_range: tuple[int, int]
    cond: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.t)

    def batches(self, batch_size: int):
        """(x0, t, noise, cond) slices in bank order."""
        for s in range(0, len(self), batch_size):
            e = s + batch_size
            yield self.x0[s:e], self.t[s:e], self.noise[s:e], (self.cond[s:e] if self.cond is not None else None)

    def subset(self, mask: torch.Tensor) -> "ProbeBank":
        c = self.cond[mask] if self.cond is not None else None
        return ProbeBank(self.x0[mask], self.t[mask], self.noise[mask], self.source, self.seed, self.t_range, c)


def parse_timesteps(spec: str | None, num_train_timesteps: int) -> tuple[int, int]:
    """'LO:HI' (HI exclusive) -> (lo, hi); None -> the whole schedule [0, T)."""
    if spec is None:
        return 0, num_train_timesteps
    try:
        lo_s, hi_s = spec.split(":")
        lo, hi = int(lo_s or 0), int(hi_s or num_train_timesteps)
    except ValueError:
        raise InputError(f"--timesteps '{spec}' is not LO:HI (e.g. 0:1000)") from None
    if not 0 <= lo < hi <= num_train_timesteps:
        raise InputError(f"--timesteps '{spec}' must satisfy 0 <= LO < HI <= {num_train_timesteps}")
    return lo, hi


def stratified_timesteps(n: int, lo: int, hi: int, gen: torch.Generator) -> torch.Tensor:
    """One uniform draw in each of n equal strata of [lo, hi): low variance, covers the schedule."""
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    t = lo + torch.floor((torch.arange(n, dtype=torch.float64) + u) * (hi - lo) / n)
    return t.clamp(lo, hi - 1).long()


def build_probe_bank(
    denoiser: Denoiser,
    n: int = 256,
    seed: int = 0,
    data: str | torch.Tensor | None = None,
    timesteps: tuple[int, int] | None = None,
    batch_size: int = 64,
    data_free_steps: int = 50,
) -> ProbeBank:
    """A bank of n probes. data: 'digits', a path, a tensor of images in [-1, 1], or None (data-free).

    Data-free mode draws x0 from the model's own samples (DDIM, `data_free_steps` steps).
    """
    if n < 1:
        raise InputError(f"--probes must be >= 1 (got {n})")
    lo, hi = timesteps or (0, denoiser.num_train_timesteps)
    gen = torch.Generator().manual_seed(seed)
    if data is None:
        from .sampling import make_sampler, sample

        x0 = sample(denoiser, make_sampler(denoiser.scheduler, "ddim"), data_free_steps, n, seed + 1, batch_size=batch_size)
        source = f"data-free: {n} samples of the model itself (DDIM {data_free_steps} steps, seed {seed + 1})"
    else:
        if isinstance(data, torch.Tensor):
            images, name = data, "given tensor"
        else:
            images, name = _images_for(denoiser, data), str(data)
        pick = torch.randperm(len(images), generator=gen)
        pick = pick.repeat((n + len(pick) - 1) // len(pick))[:n]
        x0 = _encode(denoiser, images[pick], batch_size)
        source = f"data: {name} ({len(images)} images, {n} drawn{' with repeats' if n > len(images) else ''})"
    t = stratified_timesteps(n, lo, hi, gen)
    noise = torch.randn(x0.shape, generator=gen)
    return ProbeBank(x0.float().cpu(), t, noise, source, seed, (lo, hi))


def _images_for(denoiser: Denoiser, spec: str) -> torch.Tensor:
    from .data import load_images

    if denoiser.vae is None:
        return load_images(spec, denoiser.sample_shape)
    # Latent model: images at the autoencoder's resolution (spatial factor from its config).
    factor = 2 ** (len(denoiser.vae.config.block_out_channels) - 1)
    c = denoiser.vae.config.in_channels
    _, h, w = denoiser.sample_shape
    return load_images(spec, (c, h * factor, w * factor))


@torch.no_grad()
def _encode(denoiser: Denoiser, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    if denoiser.vae is None:
        return images
    return torch.cat([denoiser.encode(b.to(denoiser.device)).float().cpu() for b in images.split(batch_size)])


@torch.no_grad()
def bank_losses(denoiser: Denoiser, bank: ProbeBank, batch_size: int = 64) -> torch.Tensor:
    """Per-probe training loss [N] (float32, CPU) at the current weights."""
    dev, dt = denoiser.device, denoiser.dtype
    out = [
        denoiser.loss(x0.to(dev, dt), t.to(dev), noise.to(dev, dt), None if c is None else c.to(dev), reduction="none").cpu()
        for x0, t, noise, c in bank.batches(batch_size)
    ]
    return torch.cat(out)
