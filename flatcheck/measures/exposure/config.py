"""The exposure config: the only place its defaults live (torch-free, so the CLI's --help stays fast).

In a run, the fields named like the shared inputs (sampler, samples, batch_size, seed; steps as a
one-element tuple) take the run's values unless given (measures/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import OptionError, at_least, check_bounds


@dataclass
class ExposureConfig:
    steps: tuple[int, ...] = field(default=(20,), metadata=at_least(1))
    sampler: str | None = None  # None: the checkpoint's own scheduler class
    samples: int = field(default=128, metadata=at_least(1))  # generated samples per sampler run
    batch_size: int = field(default=64, metadata=at_least(1))
    seed: int = 0
    linear_scale: bool = False  # also fit and check lambda_t = b + k t (one more sampler run)
    check_scaling: bool = True  # rerun the sampler with each fitted eps scaling and measure the gap again
    keep_samples: bool = False  # keep the generated samples (run a) in ExposureRun._samples

    def validate(self) -> "ExposureConfig":
        if not self.steps:
            raise OptionError("steps", "is empty (e.g. 20 or 20,100)")
        check_bounds(self)
        return self
