"""Activation checkpointing that also bounds Hessian-vector products (double backward).

torch.utils.checkpoint recomputes a segment's activations in the backward pass, which bounds a
gradient's memory. Under double backward (an HVP is d/dtheta (grad L . v)) it does not: the
first backward runs with create_graph=True, so every recomputed activation, and every
intermediate of the backward itself, joins the graph that the second backward will walk. On SD
1.5's UNet at 64x64 latents that graph is over 16 GB at one probe (math attention at 4096 tokens
keeps several 4096 x 4096 x 8 tensors per layer; benchmarks/README.md, "Real size").

Here a segment (a diffusers block: a ResNet, a transformer block) is two custom autograd
functions, each of which keeps only its inputs:

    Segment          forward  y = f(x; p), no graph          saves x (and p, the module's own)
    SegmentGradient  forward  (dx, dp) = vjp of f at x with gy  saves x, gy
                     backward the vjp of (dx, dp) -> (x, gy, p): f recomputed, its gradient taken
                              with a graph, and that graph differentiated, then dropped

The first backward (create_graph=True) calls SegmentGradient, so what it leaves for the second
backward is x and gy per segment, not the segment's graph. At any time at most one segment's
graph of graph exists. Cost: the segment's forward runs three times and its backward twice per
gradient-then-HVP, instead of once each. Numbers equal plain autograd's up to float summation
order (tests/test_checkpointing.py).

Used through diffusers' own hook: `net.enable_gradient_checkpointing(checkpoint)` calls
`checkpoint(block, *args)` in every block that supports checkpointing.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..errors import OptionError


def _recompute_modes() -> list:
    """The function modes active now that a segment's recomputation must run under too."""
    from torch.overrides import _get_current_function_mode_stack

    return [m for m in _get_current_function_mode_stack() if getattr(m, "reenter_in_recompute", False)]


def _params(module) -> list[torch.Tensor]:
    """The parameters of a segment that take gradients (the measured ones), each once."""
    if not isinstance(module, torch.nn.Module):
        owner = getattr(module, "__self__", None)  # a bound __call__ / forward
        module = owner if isinstance(owner, torch.nn.Module) else None
    if module is None:
        return []
    return [p for p in module.parameters() if p.requires_grad]


class _Call:
    """The segment as a function of its tensor leaves: args/kwargs rebuilt around them."""

    def __init__(self, fn, spec, leaves: list, slots: list[int]):
        self.fn, self.spec, self.leaves, self.slots = fn, spec, leaves, slots
        # The autograd engine does not carry Python function modes into backward: a recomputation
        # re-enters the attention modes the segment was made under (chunked attention; the meta
        # tracer's fused-attention shapes, flatcheck.footprint).
        self.modes = _recompute_modes()

    def __call__(self, tensors) -> tuple[torch.Tensor, ...]:
        leaves = list(self.leaves)
        for slot, t in zip(self.slots, tensors):
            leaves[slot] = t
        args, kwargs = tree_unflatten(leaves, self.spec)
        active = _recompute_modes()
        missing = [type(m)() for m in self.modes if not any(type(a) is type(m) for a in active)]
        with ExitStack() as stack:
            for mode in missing:
                stack.enter_context(mode)
            out = self.fn(*args, **kwargs)
        outs, self.out_spec = tree_flatten(out)
        if not all(torch.is_tensor(o) for o in outs):
            raise TypeError("a checkpointed segment must return tensors")
        return tuple(outs)


def _fresh(tensors, grad_flags):
    """Detached copies that start a local graph (same storage, no copy of the data)."""
    return [t.detach().requires_grad_(flag) for t, flag in zip(tensors, grad_flags)]


def _local_gradient(call: _Call, xs, params, gys, create_graph: bool):
    """(dx..., dp...) of sum(y * gy) at xs, with a local graph when create_graph."""
    flags = [x.is_floating_point() and x.requires_grad for x in xs]
    with torch.enable_grad():
        xs_ = _fresh(xs, flags)
        ys = call(xs_)
        wrt = [x for x, f in zip(xs_, flags) if f] + list(params)
        pairs = [(y, g) for y, g in zip(ys, gys) if y.requires_grad and g is not None]
        if not pairs or not wrt:
            return xs_, flags, [None] * len(wrt)
        grads = torch.autograd.grad(
            [y for y, _ in pairs], wrt, [g for _, g in pairs], create_graph=create_graph, allow_unused=True
        )
    return xs_, flags, list(grads)


class _SegmentGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, call, n_x, n_y, *inputs):
        xs, gys, params = inputs[:n_x], inputs[n_x : n_x + n_y], inputs[n_x + n_y :]
        ctx.call, ctx.n_x, ctx.n_y = call, n_x, n_y
        ctx.save_for_backward(*inputs)
        _, flags, grads = _local_gradient(call, list(xs), params, list(gys), create_graph=False)
        out, it = [], iter(grads)
        for x, f in zip(xs, flags):
            out.append(_zero_if_none(next(it), x) if f else None)
        out += [_zero_if_none(next(it), p) for p in params]
        ctx.layout = [o is not None for o in out]
        return tuple(o for o in out if o is not None)

    @staticmethod
    def backward(ctx, *cotangents):
        inputs = ctx.saved_tensors
        n_x, n_y = ctx.n_x, ctx.n_y
        xs, gys, params = list(inputs[:n_x]), list(inputs[n_x : n_x + n_y]), list(inputs[n_x + n_y :])
        with torch.enable_grad():
            gys_ = [g.detach().requires_grad_(True) for g in gys]
            xs_, flags, grads = _local_gradient(ctx.call, xs, params, gys_, create_graph=True)
            targets = [x for x, f in zip(xs_, flags) if f] + gys_ + params
            pairs = [(g, c) for g, c in zip(grads, cotangents) if g is not None and g.requires_grad and c is not None]
            got = (
                list(torch.autograd.grad([g for g, _ in pairs], targets, [c for _, c in pairs], allow_unused=True))
                if pairs
                else [None] * len(targets)
            )
        it = iter(got)
        dxs = [next(it) if f else None for f in flags]
        dgys = [next(it) for _ in gys]
        dps = [next(it) for _ in params]
        return (None, None, None, *dxs, *dgys, *dps)


def _zero_if_none(g, like):
    return torch.zeros_like(like) if g is None else g


class _Segment(torch.autograd.Function):
    @staticmethod
    def forward(ctx, call, n_x, *inputs):
        ctx.call, ctx.n_x = call, n_x
        ctx.save_for_backward(*inputs)
        with torch.no_grad():
            ys = call(list(inputs[:n_x]))
        ctx.n_y = len(ys)
        return ys

    @staticmethod
    def backward(ctx, *gys):
        inputs = ctx.saved_tensors
        n_x = ctx.n_x
        xs, params = inputs[:n_x], inputs[n_x:]
        x_flags = [x.requires_grad and x.is_floating_point() for x in xs]
        grads = list(_SegmentGradient.apply(ctx.call, n_x, len(gys), *xs, *gys, *params))
        out = []
        for f in x_flags:
            out.append(grads.pop(0) if f else None)
        return (None, None, *out, *grads)


def checkpoint(fn, *args, **kwargs):
    """diffusers' gradient-checkpointing hook: run fn(*args, **kwargs) as a segment whose gradient
    and Hessian-vector products keep only the segment's inputs (see the module docstring)."""
    leaves, spec = tree_flatten((args, kwargs))
    slots = [i for i, leaf in enumerate(leaves) if torch.is_tensor(leaf)]
    tensors = [leaves[i] for i in slots]
    params = _params(fn)
    if not torch.is_grad_enabled() or not (params or any(t.requires_grad for t in tensors)):
        return fn(*args, **kwargs)
    call = _Call(fn, spec, leaves, slots)
    ys = _Segment.apply(call, len(tensors), *tensors, *params)
    return tree_unflatten(list(ys), call.out_spec)


# ------------------------------------------------------------------------------ attention in chunks
# A score matrix (batch x heads x queries x keys) above this many bytes is computed in query chunks of
# about this size, each chunk a segment: SD 1.5 at 64x64 latents has 8 x 4096 x 4096 float32 scores per
# layer (512 MiB), and the double backward of the math kernel keeps several such tensors per layer.
ATTENTION_CHUNK_BYTES = 64 * 2**20


def _attend(q, k, v, mask, scale, causal_offset):
    """softmax(q k^T scale + mask) v, written out (differentiable to any order)."""
    s = torch.matmul(q, k.transpose(-2, -1)) * scale
    if causal_offset is not None:
        rows = torch.arange(q.shape[-2], device=q.device)[:, None] + causal_offset
        keep = torch.arange(k.shape[-2], device=q.device)[None, :] <= rows
        s = s.masked_fill(~keep, float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    return torch.matmul(torch.softmax(s, dim=-1), v)


def chunked_attention(
    sdpa, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
):
    """scaled_dot_product_attention with the same arguments; over ATTENTION_CHUNK_BYTES of scores (and
    with gradients being taken) computed in query chunks, each a checkpointed segment."""
    rows = query.shape[:-1].numel()
    size = rows * key.shape[-2] * query.element_size()
    if size <= ATTENTION_CHUNK_BYTES or dropout_p > 0 or not torch.is_grad_enabled():
        return sdpa(
            query,
            key,
            value,
            attn_mask=attn_mask,
            dropout_p=dropout_p,
            is_causal=is_causal,
            scale=scale,
            enable_gqa=enable_gqa,
        )
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(rep, dim=-3), value.repeat_interleave(rep, dim=-3)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    n = query.shape[-2]
    step = max(1, n * ATTENTION_CHUNK_BYTES // size)
    outs = []
    for s in range(0, n, step):
        mask = None
        if attn_mask is not None:
            mask = attn_mask if attn_mask.shape[-2] == 1 else attn_mask[..., s : s + step, :]
        offset = s if is_causal else None
        outs.append(checkpoint(_attend, query[..., s : s + step, :], key, value, mask, scale, offset))
    return torch.cat(outs, dim=-2)


class ChunkedAttention(torch.overrides.TorchFunctionMode):
    """Inside this mode every F.scaled_dot_product_attention call (diffusers' attention processors
    make them) goes through `chunked_attention`."""

    reenter_in_recompute = True

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            return chunked_attention(func, *args, **kwargs)
        return func(*args, **kwargs)


@contextmanager
def checkpointed(net: torch.nn.Module, on: bool):
    """diffusers' gradient checkpointing of the body's blocks, with `checkpoint` as the segment (bounds
    Hessian-vector products too); off again afterwards unless it was on before."""
    if not on:
        yield
        return
    if not getattr(net, "_supports_gradient_checkpointing", False) or not hasattr(net, "enable_gradient_checkpointing"):
        raise OptionError("gradient_checkpointing", f"{type(net).__name__} does not support gradient checkpointing")
    was = bool(getattr(net, "is_gradient_checkpointing", False))
    try:
        net.enable_gradient_checkpointing(checkpoint)
    except TypeError:  # diffusers before 0.32 takes no checkpointing function
        raise OptionError("gradient_checkpointing", "needs diffusers >= 0.32 (pip install -U diffusers)") from None
    try:
        yield
    finally:
        net.disable_gradient_checkpointing()
        if was:
            net.enable_gradient_checkpointing()
