"""Real quantized kernels from bitsandbytes for the Linear layers (module swap).

This is what users deploy on a GPU (diffusers' BitsAndBytesConfig does the same swap, but
refuses to run without CUDA). bitsandbytes quantizes nn.Linear only, so Conv2d layers stay
in full precision; `BnbSwap.weight_share` states how much of the model that covers.

    int8  LLM.int8 (Linear8bitLt, threshold 6.0: outlier features in fp16/fp32)
    nf4   4-bit NormalFloat (Linear4bit, blockwise absmax, block 64)
    fp4   4-bit float (Linear4bit)
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ...errors import InputError, RunError


@dataclass
class BnbSwap:
    kind: str
    layers: list[str]  # Linear layers that were swapped
    weights: int  # weight elements now stored quantized
    weight_share: float  # weights / all parameters of the denoiser


def import_bitsandbytes():
    """bitsandbytes, imported quietly (on CPU it prints a harmless kernel-hub warning)."""
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            previous = logging.root.manager.disable
            logging.disable(logging.WARNING)
            try:
                import bitsandbytes
            finally:
                logging.disable(previous)
    except Exception as exc:  # ImportError, or a broken CUDA setup
        raise InputError(
            f"--bnb needs bitsandbytes ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'import failed'})"
        ) from None
    return bitsandbytes


def _make(bnb, kind: str, lin: torch.nn.Linear) -> torch.nn.Module:
    bias = lin.bias is not None
    if kind == "int8":
        new = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=bias, has_fp16_weights=False, threshold=6.0)
    else:
        new = bnb.nn.Linear4bit(
            lin.in_features, lin.out_features, bias=bias, compute_dtype=lin.weight.dtype, quant_type=kind
        )
    # load_state_dict copies the values into bitsandbytes' own parameters; quantization happens
    # on .to(device). The original Linear and its tensors are left as they were.
    new.load_state_dict({k: v.detach().clone() for k, v in lin.state_dict().items()})
    return new.to(lin.weight.device)


@contextmanager
def bnb_linear_swap(net: torch.nn.Module, kind: str, names: list[str]):
    """Swap the nn.Linear layers `names` for bitsandbytes modules; put the originals back on exit."""
    bnb = import_bitsandbytes()
    modules = dict(net.named_modules())
    swapped: list[tuple[str, torch.nn.Module, str, torch.nn.Module]] = []
    try:
        total = sum(p.numel() for p in net.parameters())
        for name in names:
            lin = modules[name]
            if type(lin) is not torch.nn.Linear:
                continue
            parent_name, _, leaf = name.rpartition(".")
            parent = modules[parent_name] if parent_name else net
            try:
                new = _make(bnb, kind, lin)
            except Exception as exc:
                raise RunError(f"bitsandbytes {kind} could not quantize '{name}': {str(exc).splitlines()[0]}") from None
            setattr(parent, leaf, new)
            swapped.append((name, parent, leaf, lin))
        quantized = sum(lin.weight.numel() for *_, lin in swapped)
        yield BnbSwap(kind, [s[0] for s in swapped], quantized, quantized / total if total else 0.0)
    finally:
        for _, parent, leaf, lin in reversed(swapped):
            setattr(parent, leaf, lin)
