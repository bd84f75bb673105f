"""One interface over diffusers denoisers, whatever they predict.

Every measure talks to a `Denoiser`:
    eps(x_t, t, cond)        predicted noise, shape of x_t
    x0(x_t, t, cond)         predicted clean sample
    loss(x0, t, noise, cond) the training loss (MSE on the model's own target)
    encode(images) / decode(latents)   identity for pixel models

Conventions (DDPM): x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps with a_t = alphas_cumprod[t];
v = sqrt(a_t) eps - sqrt(1 - a_t) x0. Shapes: x is [B, C, H, W]; t is an int or [B] long.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .checkpoint import Checkpoint
from ..errors import InputError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass(frozen=True)
class ModelInfo:
    sample_shape: tuple[int, ...]  # (C, H, W) of what the denoiser sees
    space: str  # "pixel" or "latent"
    conditioning: str  # "none", "class" or "text"
    num_classes: int | None


def describe_network(net: torch.nn.Module, has_vae: bool) -> ModelInfo:
    cfg = net.config
    size = cfg.get("sample_size") or 0
    hw = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    shape = (cfg.get("in_channels", 0), *hw)
    name = type(net).__name__
    num_classes = cfg.get("num_class_embeds") or cfg.get("num_embeds_ada_norm")
    if name in ("UNet2DConditionModel", "UNet3DConditionModel") or cfg.get("cross_attention_dim"):
        cond = "text"
    elif cfg.get("class_embed_type") or num_classes:
        cond = "class"
    else:
        cond = "none"
    return ModelInfo(shape, "latent" if has_vae else "pixel", cond, num_classes if cond == "class" else None)


class Denoiser:
    """Adapter over a diffusers denoiser network and its training noise schedule."""

    def __init__(self, net: torch.nn.Module, scheduler, vae: torch.nn.Module | None = None):
        self.net = net
        self.scheduler = scheduler
        self.vae = vae
        cfg = scheduler.config
        self.prediction_type = cfg.get("prediction_type", "epsilon")
        if self.prediction_type not in PREDICTION_TYPES:
            raise InputError(f"unsupported prediction_type '{self.prediction_type}' (supported: {', '.join(PREDICTION_TYPES)})")
        if not hasattr(scheduler, "alphas_cumprod"):
            raise InputError(f"{type(scheduler).__name__} has no alphas_cumprod: not a DDPM-family noise schedule")
        self.alphas_cumprod = scheduler.alphas_cumprod.detach().to(torch.float64).cpu()
        self.num_train_timesteps = int(cfg.num_train_timesteps)
        self.info = describe_network(net, vae is not None)
        self.vae_scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0) if vae is not None else 1.0
        # How to call the network, decided once: the call signatures differ by family.
        if type(net).__name__ == "UNet2DModel":
            self._family = "unet2d"
        elif self.info.conditioning == "text":
            self._family = "text"
        else:
            self._family = "transformer"

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> "Denoiser":
        return cls(ckpt.denoiser, ckpt.scheduler, ckpt.vae)

    # -- basics
    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.info.sample_shape

    def _timesteps(self, t, x: torch.Tensor) -> torch.Tensor:
        # Integer timesteps stay long; fractional ones (Euler/Heun with linspace or trailing
        # spacing) stay float and reach the network as diffusers' pipelines pass them.
        if not torch.is_tensor(t):
            t = torch.tensor(t)
        t = t.to(x.device)
        if not t.is_floating_point():
            t = t.long()
        return t.expand(x.shape[0]) if t.ndim == 0 else t

    def alphas_at(self, t: torch.Tensor) -> torch.Tensor:
        """alphas_cumprod at t (float64, CPU); linear interpolation between integer steps."""
        t = t.detach().cpu()
        if not t.is_floating_point():
            return self.alphas_cumprod[t]
        t = t.double().clamp(0, self.num_train_timesteps - 1)
        lo = t.floor().long()
        hi = (lo + 1).clamp(max=self.num_train_timesteps - 1)
        w = t - lo
        return (1 - w) * self.alphas_cumprod[lo] + w * self.alphas_cumprod[hi]

    def alpha_sigma(self, t, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(a_t) and sqrt(1 - a_t), shaped to broadcast against x, in x's dtype."""
        a = self.alphas_at(self._timesteps(t, x))
        shape = (-1,) + (1,) * (x.ndim - 1)
        return (a.sqrt().to(x.device, x.dtype).view(shape), (1 - a).sqrt().to(x.device, x.dtype).view(shape))

    # -- the network
    def model_output(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        """The network's raw output in its own parametrisation (epsilon, v or sample)."""
        t = self._timesteps(t, x_t)
        if self._family == "unet2d":
            out = self.net(x_t, t, class_labels=cond).sample
        elif self._family == "text":
            if cond is None:
                raise InputError(f"{type(self.net).__name__} is text-conditioned: it needs encoder hidden states")
            out = self.net(x_t, t, encoder_hidden_states=cond).sample
        else:  # DiT-style transformers take class labels by keyword
            out = self.net(x_t, timestep=t, class_labels=cond).sample
        if out.shape[1] == 2 * x_t.shape[1]:  # learned variance: the first half is the mean's output
            out = out[:, : x_t.shape[1]]
        return out

    # -- parametrisation conversions
    def eps_from_output(self, out: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x_t)
        if self.prediction_type == "epsilon":
            return out
        if self.prediction_type == "v_prediction":
            return a * out + s * x_t
        return (x_t - a * out) / s  # "sample"

    def x0_from_output(self, out: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x_t)
        if self.prediction_type == "epsilon":
            return (x_t - s * out) / a
        if self.prediction_type == "v_prediction":
            return a * x_t - s * out
        return out

    def eps(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        return self.eps_from_output(self.model_output(x_t, t, cond), x_t, t)

    def x0(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        return self.x0_from_output(self.model_output(x_t, t, cond), x_t, t)

    # -- forward process and training loss
    def add_noise(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x0)
        return a * x0 + s * noise

    def target(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "v_prediction":
            a, s = self.alpha_sigma(t, x0)
            return a * noise - s * x0
        return x0

    def loss(self, x0: torch.Tensor, t, noise: torch.Tensor, cond=None, reduction: str = "mean") -> torch.Tensor:
        """Training loss: MSE between the network output and its target. reduction 'none' -> [B]."""
        x_t = self.add_noise(x0, t, noise)
        out = self.model_output(x_t, t, cond)
        dt = torch.promote_types(out.dtype, torch.float32)  # at least float32; float64 stays float64
        err = (out.to(dt) - self.target(x0, t, noise).to(dt)) ** 2
        per_sample = err.flatten(1).mean(1)
        return per_sample if reduction == "none" else per_sample.mean()

    # -- latent models
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> what the denoiser sees (latents for latent models)."""
        if self.vae is None:
            return images
        enc = self.vae.encode(images.to(self.vae.dtype))
        lat = enc.latent_dist.mean if hasattr(enc, "latent_dist") else enc.latents
        return lat * self.vae_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return z
        return self.vae.decode(z.to(self.vae.dtype) / self.vae_scale).sample
