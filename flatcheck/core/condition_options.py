"""The condition options of a run (--labels, --prompts, --guidance-scale, --sample-size) and their checks.

Torch-free, so that a run's options are checked before torch is imported (core.conditioning, which
turns them into conditions, re-exports them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import OptionError


@dataclass(frozen=True)
class ConditionOptions:
    """How samples and probes are conditioned (recorded in every report)."""

    labels: str | None = None  # '3,7' or a file of integers; None: drawn uniformly from the seed
    prompts: str | None = None  # a file, one prompt per line; None: DEFAULT_PROMPTS
    guidance_scale: float | None = None  # None: the pipeline's default (1 = no guidance)
    sample_size: int | None = (
        None  # the input side (latents) of a model whose config has none (Flux); None: the pipeline's
    )

    def check(self) -> "ConditionOptions":
        if self.guidance_scale is not None and not 0 <= self.guidance_scale < float("inf"):
            raise OptionError("guidance_scale", f"must be a finite number >= 0 (got {self.guidance_scale})")
        if self.sample_size is not None and (self.sample_size < 2 or self.sample_size % 2):
            raise OptionError("sample_size", f"must be an even number >= 2 (got {self.sample_size})")
        if self.labels is not None:
            parse_labels(self.labels)
        if self.prompts is not None:
            read_prompts(self.prompts)
        return self


def parse_labels(spec: str) -> tuple[int, ...]:
    """'3,7' or a file of whitespace/comma separated integers -> (3, 7)."""
    text = spec
    if Path(spec).is_file():
        try:
            text = Path(spec).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OptionError("labels", f"cannot read '{spec}' as UTF-8 text ({exc})") from None
    try:
        labels = tuple(int(s) for s in text.replace(",", " ").split())
    except ValueError:
        raise OptionError(
            "labels", f"'{spec}' is neither a comma list of class labels (e.g. 3,7) nor a file of them"
        ) from None
    if not labels:
        raise OptionError("labels", f"'{spec}' holds no label")
    return labels


def read_prompts(path: str) -> tuple[str, ...]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise OptionError("prompts", f"'{path}' is not a file (one prompt per line)")
    try:
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError("prompts", f"cannot read '{path}' as UTF-8 text ({exc})") from None
    prompts = tuple(ln for ln in lines if ln)
    if not prompts:
        raise OptionError("prompts", f"'{path}' holds no prompt")
    return prompts
