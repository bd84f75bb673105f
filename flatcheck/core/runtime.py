"""Device and dtype resolution, seeding, and the environment a report records."""

from __future__ import annotations

import platform
import random

import numpy as np
import torch

from ..errors import InputError
from .run_options import DTYPE_ALIASES, check_device_form, dtype_key

DTYPES = {alias: getattr(torch, name) for alias, name in DTYPE_ALIASES.items()}
DTYPE_NAMES = ("float32", "float16", "bfloat16")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda[:i]' must exist; 'cpu'; 'mps' if built."""
    check_device_form(name)
    name = ("auto" if name is None else name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device '{name}' was asked for but CUDA is not available on this machine (use --device cpu)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"device '{name}' does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"device '{name}' was asked for but MPS is not available on this machine")
    elif dev.type != "cpu":
        raise InputError(f"unsupported device '{name}' (use auto, cpu, cuda, cuda:N or mps)")
    return dev


def resolve_dtype(name: str = "float32") -> torch.dtype:
    return getattr(torch, dtype_key(name))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def deterministic_kernels(device: torch.device) -> None:
    """Ask cuDNN for deterministic algorithms on CUDA: with its defaults, cuDNN may pick kernels that
    accumulate with atomics (convolution weight gradients, which the Hessian-vector products use), so
    two runs on one GPU could differ in the last bits. CPU kernels are deterministic for a fixed
    thread count already. The choice is recorded in the report's environment."""
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def environment(device: torch.device | None = None) -> dict:
    """Versions and hardware, recorded in every report."""
    import diffusers

    from .. import __version__
    from . import dist, fastpath
    from .threads import available_cpus, threads_reason, wait_policy

    env = {
        "flatcheck": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device) if device is not None else None,
        # CPU float results depend on the thread count (how reductions are split) and on the
        # instruction set torch dispatches to (AVX2, AVX512 ...): both are part of "same device".
        "torch_threads": torch.get_num_threads(),
        "threads_reason": threads_reason(torch.get_num_threads()),
        "omp_wait_policy": wait_policy(),
        "available_cpus": available_cpus(),
        "processes": dist.world(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **fastpath.describe(),  # how the denoiser computed: mixed precision, memory layout, torch.compile
    }
    if device is not None and device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["cudnn_deterministic"] = bool(torch.backends.cudnn.deterministic)
    return env
