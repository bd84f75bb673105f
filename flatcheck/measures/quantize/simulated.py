"""Simulated (fake) quantization of every Conv2d and Linear of a denoiser.

Weights: per-output-channel symmetric, w_q = s_c * clamp(round(w / s_c), -(2^(b-1)-1), 2^(b-1)-1)
with s_c = max|w_c| / (2^(b-1)-1). They are swapped in by pointing the parameter at the quantized
tensor, so the original storage is never written to. Quantized copies are kept (WeightCache, once
per (layer, width)) up to a byte budget; beyond it a layer's weight is quantized just before each
of its forward calls and dropped after, so a setting never holds a second copy of the model
(SD 1.5: 3.4 GB in float32 per width). Same numbers either way; the just-in-time layers pay one
quantization of their weight per call.

Activations: per-tensor asymmetric on each layer's input, x_q = s * (clamp(round(x / s) + z, 0,
2^b-1) - z), with (s, z) from a calibrated range [lo, hi] that always contains 0 (so zero
padding stays exact): a forward pre-hook doing one multiply, round, clamp and multiply per call.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .settings import LayerPolicy

QUANT_TYPES = (torch.nn.Conv2d, torch.nn.Linear)
FIRST_NAMES = ("conv_in", "pos_embed.proj", "patch_embed.proj")
LAST_NAMES = ("conv_out", "proj_out_2", "proj_out")
ATTENTION_LEAVES = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


@dataclass(frozen=True)
class LayerInfo:
    name: str  # module path in the denoiser, e.g. "down_blocks.1.attentions.0.to_q"
    kind: str  # "Conv2d" or "Linear"
    role: str  # "first", "last", "attention" or "other"
    weights: int  # number of weight elements (bias excluded: biases stay in full precision)


def quantizable_layers(net: torch.nn.Module) -> dict[str, LayerInfo]:
    """Every Conv2d and Linear in registration order, with its role for the layer policy."""
    # An unfused LoRA (quantize --lora-precision full, core.lora): its lora_A/lora_B layers stay in full
    # precision, and a wrapped layer's base (`to_q.base_layer`) takes the role of the layer it stands for.
    found = [
        (n, m)
        for n, m in net.named_modules()
        if isinstance(m, QUANT_TYPES) and not any(part.startswith("lora_") for part in n.split("."))
    ]
    names = [n.removesuffix(".base_layer") for n, _ in found]
    first = next((n for n in FIRST_NAMES if n in names), names[0] if names else None)
    last = next((n for n in LAST_NAMES if n in names), names[-1] if names else None)
    out = {}
    for (n, m), base in zip(found, names):
        if base == first:
            role = "first"
        elif base == last:
            role = "last"
        elif any(base == leaf or base.endswith("." + leaf) for leaf in ATTENTION_LEAVES):
            role = "attention"
        else:
            role = "other"
        out[n] = LayerInfo(n, type(m).__name__, role, m.weight.numel())
    return out


def layer_plan(
    layers: dict[str, LayerInfo], policy: LayerPolicy, wbits: int | None, abits: int | None
) -> dict[str, tuple[int | None, int | None]]:
    """name -> (wbits, abits) for every layer that the setting quantizes (on either side)."""
    plan = {}
    for name, info in layers.items():
        wb, ab = policy.bits_for(info.role, wbits, abits)
        if wb is not None or ab is not None:
            plan[name] = (wb, ab)
    return plan


# ---------------------------------------------------------------------------- weights
def weight_scale(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel symmetric step s_c = max|w_c| / (2^(b-1) - 1) (1 for an all-zero channel)."""
    qmax = 2 ** (bits - 1) - 1
    amax = w.detach().float().flatten(1).abs().amax(1)
    return torch.where(amax > 0, amax / qmax, torch.ones_like(amax))


@torch.no_grad()
def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Fake-quantized copy of w (same shape, dtype, device); w itself is not touched."""
    qmax = 2 ** (bits - 1) - 1
    scale = weight_scale(w, bits)
    zero = torch.zeros_like(scale, dtype=torch.int32)
    q = torch.fake_quantize_per_channel_affine(w.detach().float(), scale, zero, 0, -qmax, qmax)
    return q.to(w.dtype)


# Quantized weights kept between uses, in bytes: the bundled and test models fit whole (no cost per
# call); a real-size model keeps this much and quantizes the rest layer by layer at each call.
CACHE_BYTES = 256 * 2**20


class WeightCache:
    """Quantized weights, computed once per (layer, width) and shared by every setting and layer scan,
    up to `max_bytes` in all; `get` says None for a layer beyond the budget (quantize it per call)."""

    def __init__(self, net: torch.nn.Module, max_bytes: int | None = None):
        self.modules = dict(net.named_modules())
        self.max_bytes = CACHE_BYTES if max_bytes is None else max_bytes
        self.bytes = 0
        self._cache: dict[tuple[str, int], torch.Tensor] = {}

    def get(self, name: str, bits: int) -> torch.Tensor | None:
        key = (name, bits)
        if key not in self._cache:
            w = self.modules[name].weight
            size = w.numel() * w.element_size()
            if self.bytes + size > self.max_bytes:
                return None
            self._cache[key] = quantize_weight(w, bits)
            self.bytes += size
        return self._cache[key]

    def quantized(self, name: str, bits: int) -> torch.Tensor:
        """The layer's quantized weight: cached, or made now (not kept)."""
        got = self.get(name, bits)
        return got if got is not None else quantize_weight(self.modules[name].weight, bits)


def _weight_hooks(module: torch.nn.Module, bits: int):
    """Pre- and post-forward hooks that quantize the module's weight for one call only."""
    held: list[torch.Tensor] = []

    def pre(mod, args):
        held.append(mod.weight.data)
        mod.weight.data = quantize_weight(held[-1], bits)

    def post(mod, args, output):
        mod.weight.data = held.pop()

    return module.register_forward_pre_hook(pre), module.register_forward_hook(post, always_call=True)


# ---------------------------------------------------------------------------- activations
def has_grid(lo: float, hi: float) -> bool:
    """Whether [lo, hi] widened to hold 0 spans more than 0. A range that holds only 0 (an input that
    was identically zero in calibration) has no grid: simulated_quantization leaves that input
    unquantized and the report counts such layers."""
    return min(float(lo), 0.0) < max(float(hi), 0.0)


@dataclass(frozen=True)
class ActQuant:
    """Per-tensor asymmetric fake-quant parameters of one layer input."""

    scale: float
    zero_point: int
    qmax: int  # 2^b - 1

    @classmethod
    def from_range(cls, lo: float, hi: float, bits: int) -> "ActQuant":
        if not has_grid(lo, hi):
            raise ValueError("an activation range must hold more than 0")
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)  # zero exactly representable
        qmax = 2**bits - 1
        scale = (hi - lo) / qmax
        zero = int(min(max(round(-lo / scale), 0), qmax))
        return cls(scale, zero, qmax)

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """s * clamp(round(x / s), -z, qmax - z): the same grid as s * (clamp(round(x / s) + z, 0, qmax) - z)
        (z is an integer), in one multiply into `out` (or a new tensor) and three in-place passes.
        torch's fake_quantize_per_tensor_affine computes the same but was several times slower on CPU here."""
        if x.dtype in (torch.float16, torch.bfloat16):  # integer grid indices up to 65535 need float32
            return self(x.float()).to(x.dtype)
        y = torch.mul(x, 1.0 / self.scale, out=out) if out is not None else torch.mul(x, 1.0 / self.scale)
        y.round_()
        y.clamp_(-self.zero_point, self.qmax - self.zero_point)
        return y.mul_(self.scale)


class _Scratch:
    """One buffer for every layer's quantized input during a setting's no-grad forwards, grown to the
    largest input seen. A quantized input lives only until its layer (a leaf Linear or Conv, whose output
    never aliases its input) has consumed it, so layers can take turns in one buffer; fresh multi-MB
    allocations at each call (page faults) cost more than the arithmetic on CPU, and one buffer per layer
    held SD 1.5's ~700 layer inputs at once (3.8 GB at batch 2)."""

    def __init__(self):
        self.flat: torch.Tensor | None = None

    def like(self, x: torch.Tensor) -> torch.Tensor:
        f = self.flat
        if f is None or f.numel() < x.numel() or f.dtype != x.dtype or f.device != x.device:
            self.flat = f = None  # the old buffer goes before the new one is made
            self.flat = f = torch.empty(x.numel(), dtype=x.dtype, device=x.device)
        return f[: x.numel()].view(x.shape)


def _input_hook(q: ActQuant, scratch: _Scratch):
    def hook(module, args):
        x = args[0]
        if torch.is_grad_enabled() or x.dtype in (torch.float16, torch.bfloat16):
            return (q(x), *args[1:])
        return (q(x, out=scratch.like(x)), *args[1:])

    return hook


# ---------------------------------------------------------------------------- applying a setting
@contextmanager
def simulated_quantization(
    net: torch.nn.Module,
    plan: dict[str, tuple[int | None, int | None]],
    weights: WeightCache,
    act_ranges: dict[str, tuple[float, float]] | dict[tuple[str, int], tuple[float, float]],
):
    """Run the body with the layers in `plan` quantized; undo everything on exit (also on errors).

    act_ranges maps (name, abits) -> (lo, hi) (MSE-searched ranges depend on the width) or
    name -> (lo, hi). Weight swaps point parameters at cached tensors and back, so the
    original weight tensors are the very same objects afterwards, untouched.
    """
    modules = dict(net.named_modules())
    originals: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    handles = []
    scratch = _Scratch()
    try:
        with torch.no_grad():
            for name, (wb, ab) in plan.items():
                m = modules[name]
                if wb is not None:
                    cached = weights.get(name, wb)
                    if cached is None:  # beyond the cache: quantized at each call of the layer
                        handles.extend(_weight_hooks(m, wb))
                    else:
                        originals.append((m.weight, m.weight.data))
                        m.weight.data = cached
                if ab is not None:
                    lo, hi = act_ranges[(name, ab)] if (name, ab) in act_ranges else act_ranges[name]
                    if not has_grid(lo, hi):
                        continue  # calibration saw only zeros: no grid to build, the input stays full precision
                    handles.append(m.register_forward_pre_hook(_input_hook(ActQuant.from_range(lo, hi, ab), scratch)))
        yield
    finally:
        for h in handles:
            h.remove()
        for p, data in reversed(originals):
            p.data = data
