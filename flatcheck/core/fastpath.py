"""The GPU fast path: mixed precision, channels_last and torch.compile for the denoiser's forwards.

    mixed_precision  'no' | 'bf16' | 'fp16' (Accelerate's names): the weights stay in --dtype and the
                     network's forward runs under torch.autocast; its output is cast back to the
                     caller's dtype, so losses, gradients, Hessian-vector products and sampler steps
                     are computed in float32 (as Accelerate's convert_to_fp32 does).
    channels_last    conv weights (denoiser and VAE) and the network's 4-D inputs in NHWC memory
                     order; the values are the same, only the layout (and the speed of cuDNN convs)
                     changes. Transformers are mostly Linear layers: little or no effect there.
    compile          torch.compile of the denoiser, used only for forwards without gradients of the
                     network as loaded (sampling, no-grad losses): torch.compile has no double
                     backward (HVPs), and quantization's activation and calibration hooks and its
                     bitsandbytes module swaps must see every layer call, so forwards with module
                     hooks or swapped modules run the eager module. The eager module stays
                     `Denoiser.net` (state_dict keys unchanged). A compile that fails falls back to
                     eager with one warning line; the report records which one ran.

The settings travel with the loaded network (`attach`), so each Denoiser knows its own; the last
Denoiser built records its settings (and the compile outcome) for the report's environment.
FLATCHECK_COMPILE_BACKEND picks torch.compile's backend (default inductor; eager or aot_eager
test the plumbing in seconds on a CPU).
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..errors import InputError
from .run_options import ENV_MIXED_PRECISION, MIXED_PRECISION_DTYPES, mixed_precision_key

MIXED_PRECISION = {k: getattr(torch, v) if v else None for k, v in MIXED_PRECISION_DTYPES.items()}
ENV_COMPILE_BACKEND = "FLATCHECK_COMPILE_BACKEND"
ATTRIBUTE = "flatcheck_fastpath"  # where attach() leaves the settings on the loaded network


@dataclass(frozen=True)
class FastPath:
    mixed_precision: str = "no"
    channels_last: bool = False
    compile: bool = False

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return MIXED_PRECISION[self.mixed_precision]


def resolve(
    mixed_precision: str | None, channels_last: bool = False, compile: bool = False, device: torch.device | str = "cpu"
) -> FastPath:
    """Validated settings; mixed_precision None: $ACCELERATE_MIXED_PRECISION, else 'no'."""
    source = "--mixed-precision" if mixed_precision is not None else ENV_MIXED_PRECISION
    key = mixed_precision_key(mixed_precision)
    fast = FastPath(key, bool(channels_last), bool(compile))
    if fast.autocast_dtype is not None:
        check_autocast(torch.device(device).type, fast.autocast_dtype, source)
    return fast


def check_autocast(device_type: str, dtype: torch.dtype, source: str = "--mixed-precision") -> None:
    """InputError when this torch cannot autocast to `dtype` on the device (older torch builds
    warn and silently run in float32 instead: a run would claim a precision it did not use)."""
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    problem = None
    if not torch.amp.is_autocast_available(device_type):
        problem = f"torch has no autocast for device type '{device_type}'"
    else:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with torch.autocast(device_type, dtype=dtype):
                    enabled = torch.is_autocast_enabled(device_type)
        except RuntimeError as exc:  # e.g. a GPU without bf16 ("Current CUDA Device does not support bfloat16")
            enabled, caught, problem = False, [], (str(exc).strip().splitlines() or [""])[0]
        if problem is None and (not enabled or caught):
            problem = f"torch {torch.__version__} does not autocast to {name} on {device_type}"
    if problem:
        raise InputError(f"{source} {name}: {problem} (use --mixed-precision no)")


def attach(net: torch.nn.Module, fast: FastPath) -> None:
    """Leave the settings on a loaded network: Denoiser.from_checkpoint picks them up there."""
    setattr(net, ATTRIBUTE, fast)


def attached(net: torch.nn.Module) -> FastPath:
    return getattr(net, ATTRIBUTE, None) or FastPath()


def autocast(fast: FastPath, device: torch.device):
    """The context of a network forward: autocast to the mixed-precision dtype, or nothing."""
    dt = fast.autocast_dtype
    return torch.autocast(device.type, dtype=dt) if dt is not None else nullcontext()


def to_channels_last(module: torch.nn.Module | None) -> None:
    """Conv weights in NHWC order, in place (parameters of other ranks are untouched)."""
    if module is not None:
        module.to(memory_format=torch.channels_last)


def module_ids(net: torch.nn.Module) -> tuple[int, ...]:
    """The network's modules, by identity: what compiled forwards are valid for."""
    return tuple(id(m) for m in net.modules())


def as_compiled(net: torch.nn.Module, ids: tuple[int, ...]) -> bool:
    """True when the network is the one that was compiled, untouched: the same modules (bitsandbytes
    quantization swaps Linear layers) and no forward hooks, global or on any module (simulated
    activation quantization and calibration hook every layer: those runs stay eager)."""
    from torch.nn.modules import module as nn_module

    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return False
    mods = list(net.modules())
    return len(mods) == len(ids) and all(
        id(m) == i and not (m._forward_hooks or m._forward_pre_hooks) for m, i in zip(mods, ids)
    )


def compiled_module(net: torch.nn.Module):
    """torch.compile(net) with the chosen backend (lazy: failures surface at the first call)."""
    # diffusers calls an lru_cache'd version check inside forward (upsampling): Dynamo warns about every
    # such call site in several lines; the check is a constant, so the warning is noise for our users.
    warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`", category=UserWarning)
    return torch.compile(net, backend=compile_backend())


def compile_backend() -> str:
    return os.environ.get(ENV_COMPILE_BACKEND, "").strip() or "inductor"


# What the report's environment says: the settings of the last Denoiser built and how compile went.
_IN_USE: dict = {"fast": FastPath(), "backend": None, "used": False, "fallback": None}


def note_in_use(fast: FastPath) -> None:
    _IN_USE.update(fast=fast, backend=compile_backend() if fast.compile else None, used=False, fallback=None)


def note_compiled_run() -> None:
    _IN_USE["used"] = True


def note_fallback(exc: BaseException) -> None:
    """A compile that failed: one warning line (main process only), and the reason for the report."""
    while exc.__cause__ is not None or getattr(exc, "inner_exception", None) is not None:
        exc = exc.__cause__ or exc.inner_exception  # Dynamo wraps the backend's own error: say that one
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    _IN_USE.update(fallback=reason)
    from . import dist

    if dist.is_main():
        sys.stderr.write(f"flatcheck: warning: --compile ({_IN_USE['backend']}) failed, running eager: {reason}\n")


def describe() -> dict:
    """The report's environment fields."""
    fast = _IN_USE["fast"]
    return {
        "mixed_precision": fast.mixed_precision,
        "channels_last": fast.channels_last,
        "compile": {"backend": _IN_USE["backend"], "used": _IN_USE["used"], "fallback": _IN_USE["fallback"]}
        if fast.compile
        else None,
    }
