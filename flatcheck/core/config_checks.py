"""The values of a checkpoint's configs that flatcheck relies on, checked when it is located (no torch).

diffusers builds a model or scheduler from whatever its config says and fails later, deep inside, with a raw
ValueError or IndexError (num_train_timesteps 0 failed as an IndexError in the plan) or not at all (NaN betas
sample NaN images). Each rule here names the file, the key and the value: InputError, exit 2, before any work.
Keys a config leaves out take diffusers' defaults and are not checked.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import InputError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow_prediction")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "exp", "laplace")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range")
MAX_TRAIN_TIMESTEPS = 1_000_000  # tables of this length are built in memory: more is a corrupt value, not a schedule


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bad(where: Path, key: str, value, want: str) -> InputError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return InputError(f"{where}: {key} = {shown} is not {want}")


def check_schedule(config: dict, where: Path | None) -> None:
    """A schedule that can sample: timesteps >= 1, a known prediction type, finite betas in (0, 1)."""
    where = Path(where or "(default scheduler)")
    if where.is_dir():
        where = where / "scheduler_config.json"
    n = config.get("num_train_timesteps", 1000)
    if not _int(n) or not 1 <= n <= MAX_TRAIN_TIMESTEPS:
        raise _bad(where, "num_train_timesteps", n, f"a whole number from 1 to {MAX_TRAIN_TIMESTEPS:,}")
    choices = (
        ("prediction_type", PREDICTION_TYPES),
        ("beta_schedule", BETA_SCHEDULES),
        ("timestep_spacing", TIMESTEP_SPACINGS),
    )
    for key, known in choices:
        if key in config and config[key] not in known:
            raise _bad(where, key, config[key], f"one of {', '.join(known)}")
    if config.get("variance_type") is not None and config["variance_type"] not in VARIANCE_TYPES:
        raise _bad(where, "variance_type", config["variance_type"], f"null or one of {', '.join(VARIANCE_TYPES)}")
    for key in ("beta_start", "beta_end"):
        if key in config and not (_number(config[key]) and 0 < config[key] < 1):
            raise _bad(where, key, config[key], "a finite number between 0 and 1")
    if "steps_offset" in config and not (_int(config["steps_offset"]) and config["steps_offset"] >= 0):
        raise _bad(where, "steps_offset", config["steps_offset"], "a whole number >= 0")
    betas = config.get("trained_betas")
    if betas is not None:
        if not isinstance(betas, list) or not all(_number(b) and 0 < b < 1 for b in betas):
            raise _bad(where, "trained_betas", betas, "null or a list of finite numbers between 0 and 1")
        if len(betas) != n:
            raise InputError(f"{where}: trained_betas has {len(betas)} values, num_train_timesteps is {n}")


SIZES = ("in_channels", "out_channels", "latent_channels", "norm_num_groups", "patch_size")


def check_denoiser_config(config: dict, where: Path) -> None:
    """The sizes of a model config: positive whole numbers (or lists of them) where diffusers expects them."""
    for key in SIZES:
        value = config.get(key)
        if value is not None and not (_int(value) and value >= 1):
            raise _bad(where, key, value, "a whole number >= 1")
    size = config.get("sample_size")
    ok = size is None or (_int(size) and size >= 1)
    ok = ok or (isinstance(size, list) and len(size) == 2 and all(_int(s) and s >= 1 for s in size))
    if not ok:
        raise _bad(where, "sample_size", size, "a whole number >= 1 or [height, width]")
    for key in ("block_out_channels", "down_block_types", "up_block_types"):
        value = config.get(key)
        kind = _int if key == "block_out_channels" else lambda v: isinstance(v, str) and v.isidentifier()
        if value is not None and not (
            isinstance(value, list) and value and all(kind(v) and (not _int(v) or v >= 1) for v in value)
        ):
            want = "a list of whole numbers >= 1" if key == "block_out_channels" else "a list of block class names"
            raise _bad(where, key, value, want)
    layers = config.get("layers_per_block")
    if layers is not None and not (
        (_int(layers) and layers >= 1)
        or (isinstance(layers, list) and layers and all(_int(v) and v >= 1 for v in layers))
    ):
        raise _bad(where, "layers_per_block", layers, "a whole number >= 1 (or a list of them)")
