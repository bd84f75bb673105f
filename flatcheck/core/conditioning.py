"""What a conditional denoiser is conditioned on: class labels or encoded prompts, per sample.

Every measure sees conditions as *condition ids*, one long per sample or probe:
  class models  the id is the class label; NULL (-1) is the model's null class (DiT: 1000);
  text models   the id is a row of the prompt table (prompt k of --prompts); NULL is the negative
                (or empty) prompt the pipeline uses for classifier-free guidance.
Ids are small, slice like any tensor and travel with the probe bank and the sample set; the
network's keyword arguments are made from them at the call (`Conditioning.kwargs`), so the
prompts are encoded once per run and never again.

Which condition sample i gets depends only on (seed, i), like its noise:
  --labels 3,7 / --prompts FILE   sample i takes entry i mod len(list);
  default, class models           a uniform draw per sample, from `seeds.stream(seed, "labels")`;
  default, text models            DEFAULT_PROMPTS, entry i mod len.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import InputError
from .condition_options import ConditionOptions, parse_labels, read_prompts  # noqa: F401 - their home until now
from .seeds import sample_seed, stream

NULL = -1

# The documented default prompt set for text models without --prompts: short, concrete captions of
# the kind text-to-image models are trained on, covering objects, animals, scenes and styles.
DEFAULT_PROMPTS = (
    "a photo of a cat",
    "a red car on a road",
    "a drawing of a house",
    "a dog in the snow",
    "a bowl of fruit on a table",
    "a mountain lake at sunset",
    "a portrait of an old man",
    "a city street at night",
)


@dataclass
class Conditioning:
    """The conditions of one run. kind 'class' or 'text'; see the module doc for ids."""

    kind: str
    count: int  # number of distinct conditions (classes or prompts)
    guidance_scale: float  # 1: no classifier-free guidance
    null_label: int | None = None  # class models: the label the null class has (None: no null class)
    given: tuple[int, ...] | None = None  # the ids samples cycle through (None: uniform draw)
    names: tuple[str, ...] = ()  # prompts (text) or class names, for reports
    # text models: per-argument tables, row k = prompt k, last row = the null (negative) prompt
    tables: dict[str, torch.Tensor] = field(default_factory=dict)
    added: tuple[str, ...] = ()  # which tables go into added_cond_kwargs (SDXL: text_embeds, time_ids)
    static: dict = field(default_factory=dict)  # fixed keyword arguments (PixArt's added_cond_kwargs)
    guidance_default: str = ""  # where the guidance scale came from, for reports
    encoders: tuple[str, ...] = ()  # text encoder classes, for reports
    embedded_guidance: bool = False  # Flux: the scale is an input of the network (guidance distillation), not CFG

    @property
    def guided(self) -> bool:
        """Whether sampler runs use classifier-free guidance (two passes: conditional and null): above 1 only, as
        diffusers' pipelines decide it (`do_classifier_free_guidance = guidance_scale > 1`); at or below 1 they run
        the conditional pass alone."""
        return self.guidance_scale > 1.0 and not self.embedded_guidance

    def ids(self, seed: int, indices) -> torch.Tensor:
        """Condition id of each sample index (a function of (seed, index) only)."""
        idx = [int(i) for i in indices]
        if self.given is not None:
            return torch.tensor([self.given[i % len(self.given)] for i in idx], dtype=torch.long)
        if self.kind == "text":
            return torch.tensor([i % self.count for i in idx], dtype=torch.long)
        base = stream(seed, "labels")
        return torch.tensor([sample_seed(base, i) % self.count for i in idx], dtype=torch.long)

    def kwargs(self, ids: torch.Tensor, device, dtype) -> dict:
        """The network's keyword arguments for a batch of condition ids."""
        ids = ids.detach().cpu().long()
        if self.kind == "class":
            if self.null_label is None and bool((ids == NULL).any()):
                raise InputError(
                    "this class-conditional model has no null class: classifier-free guidance is not possible"
                )
            labels = torch.where(
                ids == NULL, torch.full_like(ids, self.null_label if self.null_label is not None else 0), ids
            )
            return {"class_labels": labels.to(device)}
        rows = torch.where(ids == NULL, torch.full_like(ids, self.count), ids)
        out: dict = {k: _cast(v[rows], device, dtype) for k, v in self.tables.items() if k not in self.added}
        if self.added:
            out["added_cond_kwargs"] = {k: _cast(self.tables[k][rows], device, dtype) for k in self.added}
        for k, v in self.static.items():
            out.setdefault(k, _cast(v, device, dtype) if torch.is_tensor(v) else v)
        if self.embedded_guidance:
            out["guidance"] = torch.full((len(ids),), self.guidance_scale, dtype=torch.float32, device=device)
        return out

    def describe(self) -> dict:
        doc = {
            "kind": self.kind,
            "count": self.count,
            "guidance_scale": self.guidance_scale,
            "guidance_source": self.guidance_default
            + (
                " (embedded: an input of the network, not CFG)"
                if self.embedded_guidance
                else " (at most 1: no CFG pass, as the pipelines)"
                if self.guidance_scale < 1
                else ""
            ),
            "assignment": ("given list, sample i takes entry i mod " + str(len(self.given)))
            if self.given is not None
            else ("prompt i mod " + str(self.count))
            if self.kind == "text"
            else "uniform draw per sample from the seed",
        }
        if self.kind == "class":
            doc["null_label"] = self.null_label
        else:
            doc["prompts"] = list(self.names)
            doc["encoders"] = list(self.encoders)
        return doc


def _cast(t: torch.Tensor, device, dtype) -> torch.Tensor:
    t = t.to(device)
    return t.to(dtype) if t.is_floating_point() else t


def pipeline_default(pipeline_class: str | None, argument: str):
    """The default of `argument` in the pipeline class's __call__ (None when it has none)."""
    import inspect

    import diffusers

    cls = getattr(diffusers, pipeline_class or "", None)
    if cls is None:
        return None
    p = inspect.signature(cls.__call__).parameters.get(argument)
    return None if p is None or p.default is inspect.Parameter.empty else p.default
