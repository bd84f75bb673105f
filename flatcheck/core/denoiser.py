"""One interface over diffusers denoisers, whatever they predict.

Every measure talks to a `Denoiser`:
    eps(x_t, t, cond)        predicted noise, shape of x_t
    x0(x_t, t, cond)         predicted clean sample
    loss(x0, t, noise, cond) the training loss (MSE on the model's own target)
    encode(images) / decode(latents)   identity for pixel models

What a network is and how it is called comes from its family (flatcheck.families: one file per family);
conditions travel as condition ids (core.conditioning) and become the network's keyword arguments at the
call.

Conventions (DDPM): x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps with a_t = alphas_cumprod[t];
v = sqrt(a_t) eps - sqrt(1 - a_t) x0. Flow matching (a FlowMatch* scheduler): x_t = (1 - sigma) x0 +
sigma eps with sigma = t / T, and the network predicts the velocity eps - x0. Shapes: x is
[B, C, H, W] (a family whose network takes tokens packs and unpacks them inside the call); t is a number or [B],
long or float (fractional timesteps are never rounded).

The fast path (core.fastpath: mixed precision, channels_last, torch.compile) lives in `_call`: it
changes how the network computes, never what the adapter hands back (float32, usual layout).
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..families import FLOW, PREDICTION_TYPES, Family, ModelInfo, NetCall, family_of_network  # noqa: F401 - NetCall: for modules built in Python
from . import fastpath
from .checkpoint import Checkpoint
from .conditioning import NULL, Conditioning, ConditionOptions
from .fastpath import FastPath

# Pixels per autoencoder call (encode and decode): 4 images at 512 x 512, 1 at 1024 x 1024.
VAE_PIXELS_PER_CALL = 2**20


class Denoiser:
    """Adapter over a diffusers denoiser network, its training noise schedule and its conditions."""

    def __init__(
        self,
        net: torch.nn.Module,
        scheduler,
        vae: torch.nn.Module | None = None,
        conditioning: Conditioning | None = None,
        sample_size: int | None = None,
        fast: FastPath | None = None,
        in_use: bool = True,
    ):
        self.net = net
        self.scheduler = scheduler
        self.vae = vae
        self.source: str | None = None  # the model as the user named it (from_checkpoint), for sample folders
        cfg = scheduler.config
        self.family: Family = family_of_network(net)
        self.num_train_timesteps = int(cfg.num_train_timesteps)
        self.prediction_type = self.family.prediction(type(scheduler).__name__, cfg)
        self.flow = self.prediction_type == FLOW
        self.training_shift = None  # flow matching: the shift of the training timestep density (probes.flow_timesteps)
        if self.flow:
            self.alphas_cumprod = None
            self.training_shift = (
                1.0 if cfg.get("use_dynamic_shifting") else float(cfg.get("shift", cfg.get("flow_shift", 1.0)))
            )
        else:
            if self.prediction_type not in PREDICTION_TYPES:
                raise InputError(
                    f"unsupported prediction_type '{self.prediction_type}' (supported: {', '.join(PREDICTION_TYPES)})"
                )
            if not hasattr(scheduler, "alphas_cumprod"):
                raise InputError(
                    f"{type(scheduler).__name__} has no alphas_cumprod: "
                    "neither a DDPM-family nor a flow-matching schedule"
                )
            self.alphas_cumprod = scheduler.alphas_cumprod.detach().to(torch.float64).cpu()
        self.info = self.family.describe(net.config, vae is not None, sample_size)
        if 0 in self.info.sample_shape:
            raise InputError(
                f"{type(net).__name__}'s config has no sample_size: give the input size with --sample-size"
            )
        self.vae_scale, self.vae_shift = self.family.latent_scale_shift(vae.config) if vae is not None else (1.0, 0.0)
        self.conditioning = conditioning
        if self.info.conditioning != "none" and conditioning is None:
            raise InputError(
                f"{type(net).__name__} is {self.info.conditioning}-conditioned: it needs its conditions "
                "(build the Denoiser with core.conditioning)"
            )
        # The fast path (core.fastpath): given here, or left on the loaded network by the command line.
        self.fast = fast if fast is not None else fastpath.attached(net)
        if self.fast.channels_last:
            fastpath.to_channels_last(net)
            fastpath.to_channels_last(vae)
        self._compiled = None  # torch.compile(net): beside the eager module, for no-grad hook-free forwards only
        if in_use:  # the run's denoiser: its fast path is what the report records (not a plan's meta copy)
            fastpath.note_in_use(self.fast)
        if self.fast.compile:
            try:
                self._compiled = fastpath.compiled_module(net)
                self._compiled_ids = fastpath.module_ids(net)
            except Exception as exc:  # noqa: BLE001 - e.g. a Python that Dynamo does not support: run eager
                fastpath.note_fallback(exc)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, conditions: ConditionOptions | None = None) -> "Denoiser":
        """The checkpoint's denoiser with its conditions: class labels, or prompts encoded once now by
        the pipeline's own text encoders (which are then released)."""
        from .condition_setup import build_conditioning

        family = family_of_network(ckpt.denoiser)  # an unsupported class is refused before any encoder loads
        conditions = conditions or ConditionOptions()
        size = conditions.sample_size or default_sample_size(ckpt)
        info = family.describe(ckpt.denoiser.config, ckpt.vae is not None, size)
        den = cls(ckpt.denoiser, ckpt.scheduler, ckpt.vae, build_conditioning(ckpt, info, conditions), sample_size=size)
        den.source = ckpt.source
        return den

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

    def coefficients(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, s_t) with x_t = a_t x0 + s_t eps (float64, CPU): sqrt(abar_t), sqrt(1 - abar_t) for DDPM;
        1 - sigma, sigma with sigma = t / T for flow matching."""
        t = t if torch.is_tensor(t) else torch.tensor(t)
        if self.flow:
            sigma = t.detach().cpu().double() / self.num_train_timesteps
            return 1 - sigma, sigma
        a = self.alphas_at(t)
        return a.sqrt(), (1 - a).sqrt()

    def alpha_sigma(self, t, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a_t and s_t (see coefficients), shaped to broadcast against x, in x's dtype."""
        shape = (-1,) + (1,) * (x.ndim - 1)
        if x.is_meta:  # a memory plan's trace (flatcheck.footprint): shapes only, no schedule to read
            ones = torch.ones(x.shape[0], dtype=x.dtype, device=x.device).view(shape)
            return ones, ones
        a, s = self.coefficients(self._timesteps(t, x))
        return a.to(x.device, x.dtype).view(shape), s.to(x.device, x.dtype).view(shape)

    # -- the network
    def raw_output(self, x_t: torch.Tensor, t, cond: torch.Tensor | None = None, guided: bool = False) -> torch.Tensor:
        """The network's whole output (with the variance channels of learned-variance models).

        cond: condition ids [B] (see core.conditioning); None for unconditional models.
        guided: classifier-free guidance at the run's scale, on the mean channels (the variance
        channels, which no guided pipeline steps with, are the conditional ones).
        """
        t = self._timesteps(t, x_t)
        c = self.conditioning
        if c is not None and cond is None:
            raise InputError(f"{type(self.net).__name__} is {c.kind}-conditioned: this call passed no conditions")
        if not (guided and c is not None and c.guided):
            return self._call(x_t, t, cond)
        ids = cond.detach().cpu().long()
        both = self._call(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([ids, torch.full_like(ids, NULL)]))
        on, off = both.chunk(2)
        k = x_t.shape[1]
        mean = self.family.combine_guidance(on[:, :k], off[:, :k], c.guidance_scale)
        return torch.cat([mean, on[:, k:]], 1) if on.shape[1] > k else mean

    def _call(self, x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        conditions = self.conditioning.kwargs(cond, x_t.device, x_t.dtype) if self.conditioning is not None else {}
        kwargs = self.family.call_kwargs(self.net, x_t, t, conditions)
        x_in = kwargs[self.family.input_name]
        if self.fast.channels_last and x_in.ndim == 4:
            kwargs[self.family.input_name] = x_in.contiguous(memory_format=torch.channels_last)
        with fastpath.autocast(self.fast, x_t.device):
            out = self._forward(kwargs)
        if self.fast.autocast_dtype is not None:
            out = out.to(x_t.dtype)  # what callers compute with it (losses, HVPs, sampler steps) stays in float32
        if self.fast.channels_last:
            out = out.contiguous()  # callers see the usual layout (flat views, sample hashes)
        return self.family.output(out, x_t)

    def _forward(self, kwargs: dict) -> torch.Tensor:
        """The network's first output: compiled when asked, there are no gradients to take (torch.compile
        has no double backward) and the network is as loaded (no module hooks, no swapped modules: see
        fastpath.as_compiled); eager otherwise, and for good once a compile failed."""
        compiled = self._compiled
        if compiled is not None and not torch.is_grad_enabled() and fastpath.as_compiled(self.net, self._compiled_ids):
            try:
                out = compiled(**kwargs, return_dict=False)[0]
            except Exception as exc:  # noqa: BLE001 - any compile failure (no C++ compiler, an unsupported op)
                from .oom import is_oom

                if is_oom(exc):
                    raise  # out of memory is the batch's problem: core.oom splits it
                self._compiled = None
                fastpath.note_fallback(exc)
            else:
                fastpath.note_compiled_run()
                return out
        return self.net(**kwargs, return_dict=False)[0]

    def mean_part(self, out: torch.Tensor) -> torch.Tensor:
        """Learned variance: the first C channels predict the mean (in the model's parametrisation)."""
        return out[:, : self.sample_shape[0]] if self.info.learned_variance else out

    def model_output(self, x_t: torch.Tensor, t, cond=None, guided: bool = False) -> torch.Tensor:
        """The network's output in its own parametrisation (epsilon, v or sample); the mean part only."""
        return self.mean_part(self.raw_output(x_t, t, cond, guided))

    # -- parametrisation conversions
    def eps_from_output(self, out: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x_t)
        if self.flow:  # x_t = (1 - s) x0 + s eps and v = eps - x0  =>  eps = x_t + (1 - s) v
            return x_t + a * out
        if self.prediction_type == "epsilon":
            return out
        if self.prediction_type == "v_prediction":
            return a * out + s * x_t
        return (x_t - a * out) / s  # "sample"

    def x0_from_output(self, out: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x_t)
        if self.flow:  # x0 = x_t - sigma v
            return x_t - s * out
        if self.prediction_type == "epsilon":
            return (x_t - s * out) / a
        if self.prediction_type == "v_prediction":
            return a * x_t - s * out
        return out

    def eps(self, x_t: torch.Tensor, t, cond=None, guided: bool = False) -> torch.Tensor:
        return self.eps_from_output(self.model_output(x_t, t, cond, guided), x_t, t)

    def x0(self, x_t: torch.Tensor, t, cond=None, guided: bool = False) -> torch.Tensor:
        return self.x0_from_output(self.model_output(x_t, t, cond, guided), x_t, t)

    # -- forward process and training loss
    def add_noise(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x0)
        return a * x0 + s * noise

    def target(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        if self.flow:
            return noise - x0
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "v_prediction":
            a, s = self.alpha_sigma(t, x0)
            return a * noise - s * x0
        return x0

    def loss(self, x0: torch.Tensor, t, noise: torch.Tensor, cond=None, reduction: str = "mean") -> torch.Tensor:
        """Training loss: MSE between the network output and its target. reduction 'none' -> [B].

        Conditional models: the conditional loss (no prompt dropout: the null condition is not
        drawn); learned variance: the mean-prediction part only (the variational bound term that
        trains the variance is not part of it)."""
        x_t = self.add_noise(x0, t, noise)
        out = self.model_output(x_t, t, cond)
        dt = torch.promote_types(out.dtype, torch.float32)  # at least float32; float64 stays float64
        err = (out.to(dt) - self.target(x0, t, noise).to(dt)) ** 2
        per_sample = err.flatten(1).mean(1)
        return per_sample if reduction == "none" else per_sample.mean()

    def loss_definition(self) -> str:
        """The training loss in words, for reports (what sharpness and the bank loss measure)."""
        target = {"epsilon": "the noise", "v_prediction": "v", "sample": "x0", FLOW: "the velocity eps - x0"}[
            self.prediction_type
        ]
        text = f"MSE of the network's {'velocity' if self.flow else self.prediction_type} output against {target}"
        if self.flow:
            text += " at x_t = (1 - sigma) x0 + sigma eps"
        if self.conditioning is not None:
            own = "class" if self.conditioning.kind == "class" else "prompt"
            text += f"; conditional, on each probe's own {own} (no condition dropout)"
        if self.info.learned_variance:
            text += "; mean-prediction part only (the learned variance's bound term is not included)"
        return text

    # -- latent models
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> what the denoiser sees (latents for latent models), in slices as `decode`."""
        if self.vae is None:
            return images
        parts = []
        for part in images.split(self.vae_slice(images.shape[-2] * images.shape[-1])):
            parts.append(self.family.latent_from_encoder(self.vae, part).contiguous())
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @torch.no_grad()
    def pixels(self, samples: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Model-space samples -> images (float32, CPU; decoded by the autoencoder for latent models).

        Every comparison of samples (drift, PSNR, FD/FID, grids) is made on these pixels. This holds all
        the decoded images at once: for small sets only (a grid, the per-layer scan's few samples). Whole
        sample sets are decoded batch by batch where they are used (core.fd.scorer, the quantize measure's
        paired pass), so nothing holds N decoded images (SD 1.5: 3 MB each, 150 GB for 50,000).
        """
        if self.vae is None:
            return samples
        t = samples.detach().float().cpu()
        return torch.cat([self.pixel_batch(b) for b in t.split(batch_size)])

    @torch.no_grad()
    def pixel_batch(self, samples: torch.Tensor) -> torch.Tensor:
        """One batch of model-space samples -> images (float32, CPU): what `pixels` does to each batch."""
        if self.vae is None:
            return samples.detach().float().cpu()
        return self.decode(samples.detach().float().to(self.device)).float().cpu()

    def vae_slice(self, pixels: int) -> int:
        """Images per autoencoder call for images of `pixels` pixels: at most VAE_PIXELS_PER_CALL in all
        (SD's decoder keeps about 1 GB of float32 activations per 512 x 512 image, so a batch of 64
        at once would need tens of GB), at least one image."""
        return max(1, VAE_PIXELS_PER_CALL // max(1, pixels))

    @property
    def vae_factor(self) -> int:
        return self.family.vae_factor(self.vae.config) if self.vae is not None else 1

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images, in slices of `vae_slice` images (as diffusers' enable_slicing, sized by pixels)."""
        if self.vae is None:
            return z
        parts = [self._decode(part) for part in z.split(self.vae_slice(z.shape[-2] * z.shape[-1] * self.vae_factor**2))]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        # contiguous: a channels_last VAE (core.fastpath) hands back NHWC-strided images
        return self.family.latent_to_decoder(self.vae, z).contiguous()


def default_sample_size(ckpt) -> int | None:
    """The loaded denoiser's default input side when its config has none (its family's pipeline default)."""
    return family_of_network(ckpt.denoiser).default_sample_size(ckpt.denoiser.config)
