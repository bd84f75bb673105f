"""The exposure config: the only place its defaults live (torch-free, so the CLI's --help stays fast).

In a run, the fields named like the shared inputs (sampler, samples, batch_size, seed; steps as a
one-element tuple) take the run's values unless given (measures/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import OptionError


@dataclass
class ExposureConfig:
    steps: tuple[int, ...] = (20,)
    sampler: str | None = None  # None: the checkpoint's own scheduler class
    samples: int = 128  # generated samples per sampler run
    batch_size: int = 64
    seed: int = 0
    linear_scale: bool = False  # also fit and check lambda_t = b + k t (one more sampler run)
    check_scaling: bool = True  # rerun the sampler with each fitted eps scaling and measure the gap again
    keep_samples: bool = False  # keep the generated samples (run a) in ExposureRun._samples

    def validate(self) -> "ExposureConfig":
        if not self.steps:
            raise OptionError("steps", "is empty (e.g. 20 or 20,100)")
        for name, value in (("samples", self.samples), ("batch_size", self.batch_size), *(("steps", s) for s in self.steps)):
            if value < 1:
                raise OptionError(name, f"must be >= 1 (got {value})")
        return self
