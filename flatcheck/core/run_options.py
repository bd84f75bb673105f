"""The accepted spellings of the options that say how a model runs: --dtype, --device, --mixed-precision.

Kept free of torch so that `flatcheck info`, which runs no model, checks them without importing it
(2.5 s and 750 MB here). Whether a device exists or autocast works is asked of torch by the commands
that run (core.runtime.resolve_device, core.fastpath.resolve).
"""

from __future__ import annotations

import os
import re

from ..errors import InputError

# --dtype spelling -> torch dtype name
DTYPE_ALIASES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
# --mixed-precision -> the autocast dtype's torch name (None: no autocast)
MIXED_PRECISION_DTYPES = {"no": None, "bf16": "bfloat16", "fp16": "float16"}
ENV_MIXED_PRECISION = "ACCELERATE_MIXED_PRECISION"  # what `accelerate launch --mixed_precision X` sets
# The devices core.runtime.resolve_device accepts, by form (it also asks torch whether they exist).
DEVICE_FORM = re.compile(r"auto|(cpu|cuda|mps)(:\d+)?")


def dtype_key(name: str | None) -> str:
    """--dtype -> the torch dtype's name; InputError for anything else."""
    key = ("float32" if name is None else name).strip().lower()  # None: the default; "" is a value, and wrong
    if key not in DTYPE_ALIASES:
        raise InputError(f"unknown dtype '{name}' (use float32, float16 or bfloat16)")
    return DTYPE_ALIASES[key]


def mixed_precision_key(value: str | None) -> str:
    """--mixed-precision (None: $ACCELERATE_MIXED_PRECISION, else 'no') -> no, bf16 or fp16."""
    source = "--mixed-precision"
    if value is None:
        value = os.environ.get(ENV_MIXED_PRECISION) or "no"
        source = ENV_MIXED_PRECISION
    key = value.strip().lower()
    if key not in MIXED_PRECISION_DTYPES:
        raise InputError(f"{source} '{value}' is not supported (use no, bf16 or fp16)")
    return key


def check_device_form(name: str | None) -> None:
    """InputError unless --device has the form of a device flatcheck runs on (whether it exists is not asked)."""
    if not DEVICE_FORM.fullmatch(("auto" if name is None else name).strip().lower()):  # "" is not auto
        raise InputError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)")
