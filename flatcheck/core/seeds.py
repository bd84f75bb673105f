"""Every random draw's seed, derived from the run's --seed: which stream feeds which draw.

Two derivations, one per kind of draw:

    stream(seed, name)      a named stream (crc32 of the name mixed into the seed: stable across
                            processes and Python versions, unlike hash())
    sample_seed(seed, i)    sample i's own stream (a SplitMix64 step): sample i draws the same
                            noise whatever the batch it lands in, the batch size or the process

| draw                                              | seed                                    |
|---------------------------------------------------|-----------------------------------------|
| probe bank: x0 pick, timesteps, noise             | `seed` (the run seed itself)            |
| full-precision samples (initial, ancestral noise) | `sample_seed(seed, i)` for sample i     |
| quantized samples, exposure runs from noise       | the same: paired with full precision    |
| sharpness: average case, per norm                 | `stream(seed, "avg-<norm>")`            |
| sharpness: per-block average case                 | `stream(seed, "block-<norm>-<block>")`  |
| sharpness: Lanczos start block, Hutchinson probes | `stream(seed, "lanczos")`, `"hutchinson"` |
| sharpness: landscape directions                   | `stream(seed, "landscape")`             |
| quantize: calibration samples (other seeds)       | `calibration_seed(seed)`, per sample i  |
| exposure: variance run's ancestral noise          | `exposure_variance_seed(seed)`, per i   |
| FD bootstrap resamples, KID subsets               | `seed`                                  |

The last two named seeds predate `stream`: they keep their own derivation so that recorded
numbers (examples/evidence) stay reproducible; they move onto `stream` when the evidence is
regenerated from its script.
"""

from __future__ import annotations

import hashlib
import zlib

_MASK64 = 0xFFFFFFFFFFFFFFFF


def stream(seed: int, name: str) -> int:
    """The seed of the named stream `name` of run seed `seed`."""
    return seed * 1_000_003 + zlib.crc32(name.encode())


def generator(seed: int, name: str):
    """A CPU torch.Generator on the named stream (torch imported here: this module stays light)."""
    import torch

    return torch.Generator().manual_seed(stream(seed, name))


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample `index`: a fixed mix of the run seed and the index (SplitMix64 step)."""
    z = (seed * 0x9E3779B97F4A7C15 + index + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def calibration_seed(seed: int) -> int:
    """Run seed of the quantize measure's calibration samples (never the evaluated samples' seeds)."""
    return seed + 7919


def exposure_variance_seed(seed: int) -> int:
    """Run seed of the exposure measure's variance run (started from data noised to t_0)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:variance".encode(), digest_size=7).digest(), "little")
