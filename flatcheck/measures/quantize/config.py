"""The quantize config: the only place its defaults live (torch-free, so the CLI's --help stays fast).

In a run, sampler, steps, samples, seed and batch_size take the run's values (the shared
full-precision samples) unless given (measures/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import InputError, OptionError, at_least, check_bounds
from .settings import (  # noqa: F401 - the command's API
    ATTENTION_POLICIES,
    FIRST_LAST_POLICIES,
    LayerPolicy,
    QuantSetting,
    parse_setting,
    settings_from_options,
)

METHODS = ("minmax", "percentile", "mse")  # activation calibration
LORA_PRECISIONS = ("fused", "full")


@dataclass
class QuantizeConfig:
    # Settings by object or by name ("W8A8", "W4A-fp", "bnb-nf4"), as a config file writes them.
    settings: list[QuantSetting] = field(default_factory=lambda: [QuantSetting.simulated(b, b) for b in (8, 6, 4)])
    policy: LayerPolicy = field(default_factory=LayerPolicy)
    calibration: str = "mse"  # minmax | percentile | mse
    percentile: float = 99.99
    sampler: str = "ddim"
    steps: int = field(default=50, metadata=at_least(1))
    samples: int = field(default=64, metadata=at_least(1))
    calib_samples: int = field(default=32, metadata=at_least(1))
    sensitivity_samples: int = field(default=8, metadata=at_least(0))  # 0 skips the per-layer scan
    sensitivity_steps: int | None = field(
        default=20, metadata=at_least(1)
    )  # None: the evaluation's steps (reuses its samples as reference)
    sensitivity_setting: str | None = None  # default: the simulated setting with the fewest bits
    seed: int = 0
    batch_size: int = field(default=64, metadata=at_least(1))
    keep_samples: bool = True
    quantize_vae: bool = False  # latent models: quantize the autoencoder's decoder too (decoder.py)
    # With a LoRA (core.lora): "fused" quantizes W + scale * B A; "full" quantizes the base weights and keeps the
    # adapter beside them in full precision, as deployments that load a LoRA on a quantized base do.
    lora_precision: str = "fused"

    def __post_init__(self):
        self.settings = [parse_setting(s) if isinstance(s, str) else s for s in self.settings]
        if isinstance(self.policy, dict):
            self.policy = LayerPolicy(**self.policy)

    def validate(self) -> "QuantizeConfig":
        check_config(self)
        return self


def check_config(config: QuantizeConfig) -> None:
    check_bounds(config)
    if config.calibration not in METHODS:
        raise OptionError("calibration", f"must be one of {', '.join(METHODS)} (got '{config.calibration}')")
    if not 50 < config.percentile <= 100:
        raise OptionError("percentile", f"must be in (50, 100] (got {config.percentile})")
    if not config.settings:
        raise InputError("no quantization setting was asked for")
    if config.lora_precision not in LORA_PRECISIONS:
        raise OptionError(
            "lora_precision", f"must be one of {', '.join(LORA_PRECISIONS)} (got '{config.lora_precision}')"
        )
    sensitivity_setting(config)  # an unknown --sensitivity-setting fails before any sampling


def sensitivity_setting(config: QuantizeConfig) -> QuantSetting | None:
    sim = [s for s in config.settings if s.backend == "simulated"]
    if config.sensitivity_samples == 0 or not sim:
        return None
    if config.sensitivity_setting is None:
        return min(sim, key=lambda s: ((s.wbits or 99) + (s.abits or 99), s.wbits or 99))
    found = next((s for s in sim if s.name.lower() == config.sensitivity_setting.lower()), None)
    if found is None:
        raise OptionError(
            "sensitivity_setting",
            f"'{config.sensitivity_setting}' is not one of the simulated settings ({', '.join(s.name for s in sim)})",
        )
    return found
