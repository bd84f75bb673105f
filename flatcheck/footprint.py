"""What one denoiser call needs beyond its weights, found by running it on the meta device.

A network built on the meta device has shapes and no data: running it allocates nothing, and
core.memory.LiveTensors counts the bytes each op would create and follows them until they die.
So the peak of a call - a no-grad forward, a gradient, a Hessian-vector product - at any batch
and resolution is known exactly before anything real is allocated, for a model that does not fit
this machine too (SDXL, Flux: nothing but configs needed).

Attention is where real kernels and the meta device part ways: the fused kernels that a real
forward or first-order backward uses (flash / memory-efficient, CPU and CUDA) never hold the
queries x keys score matrix, while on the meta device SDPA decomposes into the math kernel that
does. Outside second-order passes, `FusedAttentionShapes` gives each attention call the memory of
a fused kernel: its output and log-sum-exp forward, gradients the size of q, k, v backward.
Second-order passes run the math kernel in chunks for real too (core.checkpointing), so they
are traced as they run.
"""

from __future__ import annotations

import torch

from .core.memory import LiveTensors


class _FusedAttention(torch.autograd.Function):
    """Memory of a fused attention kernel: output + log-sum-exp saved, dq/dk/dv made in backward."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = q.new_empty(*q.shape[:-1], v.shape[-1])
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, g):
        q, k, v, _, _ = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


class FusedAttentionShapes(torch.overrides.TorchFunctionMode):
    """On the meta device: every scaled_dot_product_attention call with the memory of a fused kernel."""

    reenter_in_recompute = True  # checkpointed segments recompute under it too (core.checkpointing)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            given = list(args[:3]) + [
                kwargs[n] for n in ("query", "key", "value")[len(args[:3]) :]
            ]  # by position or keyword
            q, k, v = given
            if k.shape[-3] != q.shape[-3]:  # grouped-query attention: keys and values repeated per query head
                rep = q.shape[-3] // k.shape[-3]
                k, v = k.repeat_interleave(rep, dim=-3), v.repeat_interleave(rep, dim=-3)
            return _FusedAttention.apply(q, k, v)
        return func(*args, **kwargs)


def trace_bytes(fn) -> int:
    """Peak bytes of the tensors fn() creates, fn running on meta tensors."""
    with LiveTensors() as live:
        fn()
    return live.peak_bytes


def call_bytes(
    denoiser, params: list[torch.Tensor], kind: str, batch: int, *, guided: bool = False, checkpointing: bool = False
) -> int:
    """Peak bytes made by one call of a Denoiser whose network is on the meta device (weights and
    inputs excluded):
        forward   a no-grad forward (guided: a classifier-free-guided sampling step, two passes)
        gradient  forward + backward of the mean loss into a flat gradient over `params` (included)
        hvp       the gradient with its graph, then one Hessian-vector product into a flat result (both
                  included; the vector multiplied is the caller's)
    checkpointing: the run's --gradient-checkpointing (core.checkpointing segments)."""
    from contextlib import nullcontext

    from .core.checkpointing import checkpointed
    from .core.params import ParamSpace, differentiable

    dev = denoiser.device
    shape = (batch, *denoiser.sample_shape)
    x0 = torch.zeros(shape, device=dev, dtype=denoiser.dtype)  # what the measures hand the network
    noise = torch.zeros(shape, device=dev, dtype=denoiser.dtype)
    t = torch.full((batch,), denoiser.num_train_timesteps // 2, device=dev)
    cond = None if denoiser.conditioning is None else torch.zeros(batch, dtype=torch.long)
    if kind == "forward":

        def run():
            with torch.no_grad(), FusedAttentionShapes():
                denoiser.model_output(denoiser.add_noise(x0, t, noise), t, cond, guided=guided)

        return trace_bytes(run)
    space = ParamSpace(params)
    v = space.views(space.zeros())  # the vector an HVP multiplies is the caller's (a Krylov vector): not counted

    def first_order():
        with differentiable(params), FusedAttentionShapes():
            per = denoiser.loss(x0, t, noise, cond, reduction="none")
            space.backward_into(space.zeros(), per.mean())

    def second_order():
        with differentiable(params, second_order=True):
            grads = torch.autograd.grad(denoiser.loss(x0, t, noise, cond), params, create_graph=True)
            space.backward_into(space.zeros(), grads, v)

    with checkpointed(denoiser.net, True) if checkpointing else nullcontext():
        return trace_bytes(first_order if kind == "gradient" else second_order)


def meta_copy(denoiser):
    """The same Denoiser with its network and autoencoder rebuilt on the meta device from their configs
    (same classes, parameter names, shapes and dtypes; no data): what the plan traces."""
    from .core.denoiser import Denoiser

    def on_meta(module):
        if module is None:
            return None
        with torch.device("meta"):
            copy = type(module).from_config(module.config)
        lora = getattr(module, "flatcheck_lora", None)
        if lora is not None:  # --params lora is planned on the adapted layers' weights (core.lora)
            copy.flatcheck_lora_targets = tuple(lora.info.target_modules)
        elif getattr(module, "flatcheck_lora_targets", None):  # a plan's meta denoiser (commands.planning)
            copy.flatcheck_lora_targets = module.flatcheck_lora_targets
        return meta_to(copy, next(module.parameters()).dtype).eval().requires_grad_(False)

    from .core.checkpoint import meta_to
    from .core.fastpath import FastPath

    # No autocast on the meta device: under --mixed-precision the trace keeps the weights' dtype for the
    # activations (an upper bound: bf16 activations take half); never compiled.
    fast = FastPath(channels_last=denoiser.fast.channels_last)
    return Denoiser(
        on_meta(denoiser.net),
        denoiser.scheduler,
        on_meta(denoiser.vae),
        denoiser.conditioning,
        sample_size=denoiser.info.sample_shape[-1] if denoiser.net.config.get("sample_size") is None else None,
        fast=fast,
        in_use=False,
    )


def decode_footprint(denoiser, images: int) -> int:
    """Peak bytes of decoding `images` latents (in the slices Denoiser.decode uses), meta device."""
    if denoiser.vae is None:
        return 0
    z = torch.zeros(images, *denoiser.sample_shape, device=denoiser.device, dtype=denoiser.dtype)

    def run():
        with torch.no_grad(), FusedAttentionShapes():
            denoiser.decode(z)

    return trace_bytes(run)
