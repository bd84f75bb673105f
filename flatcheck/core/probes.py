"""The probe bank: a seeded, fixed set of (x0, t, noise) triples that every measure shares.

Fixing the probes makes losses comparable across checkpoints and runs: the same bank
gives the same loss to the last bit on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError, require_at_least
from .denoiser import Denoiser
from .option_values import parse_timesteps  # noqa: F401 - checked without torch there


@dataclass
class ProbeBank:
    x0: torch.Tensor  # [N, C, H, W], model space (latents for latent models), float32, CPU
    t: torch.Tensor  # [N], stratified over [t_lo, t_hi): long (DDPM family) or float sigma T (flow matching)
    noise: torch.Tensor  # [N, C, H, W]
    source: str  # where x0 came from, stated in every report
    seed: int
    t_range: tuple[int, int]
    cond: torch.Tensor | None = None  # [N] condition ids (core.conditioning); None for unconditional models

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


def stratified_timesteps(n: int, lo: int, hi: int, gen: torch.Generator) -> torch.Tensor:
    """One uniform draw in each of n equal strata of [lo, hi): low variance, covers the schedule."""
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    t = lo + torch.floor((torch.arange(n, dtype=torch.float64) + u) * (hi - lo) / n)
    return t.clamp(lo, hi - 1).long()


def flow_timesteps(
    n: int, lo: int, hi: int, gen: torch.Generator, shift: float, num_train_timesteps: int
) -> torch.Tensor:
    """n float timesteps t = sigma T of a flow-matching model, stratified under its training density.

    The density is the one diffusers' SD3/Flux training scripts draw from (weighting_scheme
    "logit_normal", mean 0, std 1): u ~ logit-normal, then the scheduler's static shift
    sigma = s u / (1 + (s - 1) u) (s = 1 with dynamic shifting, whose training table is unshifted).
    Stratified in the density's quantiles between sigma = lo / T and hi / T: one draw per stratum.
    """
    T = float(num_train_timesteps)

    def cdf(sigma: float) -> float:  # P(sigma' < sigma) under the shifted logit-normal
        if sigma <= 0:
            return 0.0
        if sigma >= 1:
            return 1.0
        u = sigma / (shift - (shift - 1) * sigma)  # inverse of the shift
        return float(torch.special.ndtr(torch.logit(torch.tensor(u, dtype=torch.float64))))

    q_lo, q_hi = cdf(lo / T), cdf(hi / T)
    strata = (torch.arange(n, dtype=torch.float64) + torch.rand(n, generator=gen, dtype=torch.float64)) / n
    q = (q_lo + strata * (q_hi - q_lo)).clamp(1e-12, 1 - 1e-12)
    u = torch.sigmoid(torch.special.ndtri(q))
    sigma = shift * u / (1 + (shift - 1) * u)
    return (sigma * T).clamp(lo, hi)


def probe_bank(
    pool: "torch.Tensor | DataPool",
    n: int,
    seed: int,
    t_range: tuple[int, int],
    source: str,
    pool_cond: torch.Tensor | None = None,
    flow_shift: float | None = None,
    num_train_timesteps: int = 1000,
) -> ProbeBank:
    """The one way to make a bank: n probes drawn from `pool` (x0 already in model space).

    `pool` is reference data (a DataPool: only the drawn images are loaded and encoded) or, data-free, the model's own
    full-precision samples; `source` says which, in every report. A seeded permutation picks the x0 (repeating the
    pool when n is larger), then timesteps (stratified over [lo, hi)) and noise come from the same generator.
    pool_cond: each pool entry's condition id (a sample's own, a data point's label): probe k keeps
    the condition of the x0 it drew.
    """
    require_at_least("probes", n, 1)
    if len(pool) == 0:
        raise InputError("no images to draw the probe bank from")
    lo, hi = t_range
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(pool), generator=gen)
    pick = pick.repeat((n + len(pick) - 1) // len(pick))[:n]
    x0 = pool[pick]
    # DDPM family: integer t stratified uniformly; flow matching: float t = sigma T under the training density
    t = (
        stratified_timesteps(n, lo, hi, gen)
        if flow_shift is None
        else flow_timesteps(n, lo, hi, gen, flow_shift, num_train_timesteps)
    )
    noise = torch.randn(x0.shape, generator=gen)
    cond = None if pool_cond is None else pool_cond[pick].long()
    return ProbeBank(x0.float().cpu(), t, noise, source, seed, (lo, hi), cond)


def drawn(n: int, pool: int) -> str:
    """'64 drawn' or '300 drawn with repeats': how a bank of n came out of a pool, for its source line."""
    return f"{n} drawn" + (" with repeats" if n > pool else "")


def build_probe_bank(
    denoiser: Denoiser,
    n: int = 256,
    seed: int = 0,
    data: str | torch.Tensor = "digits",
    timesteps: tuple[int, int] | None = None,
    batch_size: int = 64,
) -> ProbeBank:
    """A bank of n probes from reference images: 'digits', a path, or a tensor of images in [-1, 1].

    (Data-free banks are drawn from the shared samples: see core.inputs.)
    """
    if isinstance(data, torch.Tensor):
        pool, name = encode_images(denoiser, data, batch_size), "given tensor"
    else:
        pool, name = DataPool(denoiser, data, batch_size), str(data)
    return probe_bank(
        pool,
        n,
        seed,
        timesteps or (0, denoiser.num_train_timesteps),
        f"data: {name} ({len(pool)} images, {drawn(n, len(pool))})",
    )


def reference_conditions(denoiser: Denoiser, spec: str, n: int, seed: int) -> tuple[torch.Tensor | None, str]:
    """Condition ids of the n --data images, and how they were chosen (for the bank's source line).

    Class models take the data's labels when it has them ('digits', an .npz with 'labels'); otherwise
    (and for text models: images carry no captions) each image gets the condition sample i would get.
    """
    c = denoiser.conditioning
    if c is None:
        return None, ""
    if c.kind == "class":
        from .data import load_labels

        labels = load_labels(spec)
        if labels is not None and len(labels) == n:
            if int(labels.max()) >= c.count or int(labels.min()) < 0:
                raise InputError(
                    f"--data {spec} has labels up to {int(labels.max())}; the model has classes 0..{c.count - 1}"
                )
            return labels.long(), "the data's labels"
        return c.ids(seed, range(n)), "labels drawn from the seed (the data carries none)"
    return c.ids(seed, range(n)), f"prompt i mod {c.count} (the data carries no captions)"


def reference_images(denoiser: Denoiser, spec: str, rows: list[int] | None = None) -> torch.Tensor:
    """--data images (or those of `rows`) in [-1, 1] at the resolution the model (or its autoencoder) takes."""
    from .data import load_images

    return load_images(spec, data_shape(denoiser), rows=rows)


def data_shape(denoiser: Denoiser) -> tuple[int, int, int]:
    """(C, H, W) of the images the model's space is made from: its own, or its autoencoder's input
    (spatial factor: the family's, from the autoencoder's config) for latent models."""
    if denoiser.vae is None:
        return tuple(denoiser.sample_shape)
    factor = denoiser.vae_factor  # Sana's AutoencoderDC has no block_out_channels
    _, h, w = denoiser.sample_shape
    return (denoiser.vae.config.in_channels, h * factor, w * factor)


class DataPool:
    """--data as the pool a probe bank draws from, in model space, loaded and encoded only where drawn:
    `len` counts the images without fitting them, `pool[pick]` loads, fits and encodes the distinct
    images of `pick` (in index order, so each is the image the whole set holds) and returns them in
    pick's order. A bank of 64 probes from 5,000 images at SD 1.5's 512 px reads and encodes 64 images,
    not 5,000 (15.7 GB of float32 pixels and 5,000 encoder passes)."""

    def __init__(self, denoiser: Denoiser, spec: str, batch_size: int, use_cache: bool = True):
        from .data import count_images

        self.denoiser, self.spec, self.batch_size, self.use_cache = denoiser, spec, batch_size, use_cache
        self.n = count_images(spec)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, pick: torch.Tensor) -> torch.Tensor:
        rows, where = torch.unique(torch.as_tensor(pick), sorted=True, return_inverse=True)
        images = reference_images(self.denoiser, self.spec, rows.tolist())
        return encode_images(self.denoiser, images, self.batch_size, self.use_cache)[where]


@torch.no_grad()
def encode_images(denoiser: Denoiser, images: torch.Tensor, batch_size: int, use_cache: bool = True) -> torch.Tensor:
    """Images -> model space (the autoencoder's latents for latent models; as they are otherwise).

    Latents are cached on disk ($FLATCHECK_CACHE/latents), keyed by the autoencoder's weights, the
    images' bytes, the dtype and the device type: encoding a dataset with a large VAE is done once.
    """
    if denoiser.vae is None:
        return images
    import hashlib

    import numpy as np

    from .cache import cache_root, write_npz_atomic
    from .sample_store import model_fingerprint

    x = images.detach().float().cpu().contiguous()
    h = hashlib.blake2b(digest_size=16)
    for part in (
        model_fingerprint(denoiser.vae),
        str(tuple(x.shape)),
        str(denoiser.vae.dtype),
        denoiser.device.type,
        f"{denoiser.vae_scale}|{denoiser.vae_shift}",
    ):
        h.update(part.encode())
    h.update(x.numpy().tobytes())
    path = cache_root() / "latents" / f"{h.hexdigest()}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return torch.from_numpy(z["latents"].copy())
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, never trusted
            pass
    z = torch.cat([denoiser.encode(b.to(denoiser.device)).float().cpu() for b in x.split(batch_size)])
    if use_cache:
        try:
            write_npz_atomic(path, latents=z.numpy())
        except OSError:  # a read-only or full cache only costs the next run an encode
            pass
    return z


@torch.no_grad()
def bank_losses(denoiser: Denoiser, bank: ProbeBank, batch_size: int = 64) -> torch.Tensor:
    """Per-probe training loss [N] (float32, CPU) at the current weights."""
    from .oom import batched

    dev, dt = denoiser.device, denoiser.dtype

    def one(pos) -> torch.Tensor:
        sl = slice(pos[0], pos[-1] + 1)
        c = None if bank.cond is None else bank.cond[sl]
        return denoiser.loss(
            bank.x0[sl].to(dev, dt), bank.t[sl].to(dev), bank.noise[sl].to(dev, dt), c, reduction="none"
        ).cpu()

    return torch.cat(batched(one, range(len(bank)), batch_size, "probe-bank losses"))
