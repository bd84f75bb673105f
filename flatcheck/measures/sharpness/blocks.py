"""Where in the network and where along the noise schedule: parameter groups and timestep buckets.

Parameter groups are the denoiser's top-level blocks, named the same way for every diffusers
family so that breakdowns compare across checkpoints:
    embed  time / class / text-projection embeddings
    down   the encoder (down_blocks)
    mid    the bottleneck (mid_block)
    up     the decoder (up_blocks)
    io     the stem: first convolution / patch embedding, output norm and projection
    blocks transformer blocks (DiT-style models have no down/mid/up)
A family adds its own names (flatcheck.families: Family.blocks). Anything unknown keeps its own top-level
module name, so no parameter is ever dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

# First component of a parameter name -> group.
_GROUP_OF = {
    "down_blocks": "down",
    "mid_block": "mid",
    "up_blocks": "up",
    "time_embedding": "embed",
    "time_proj": "embed",
    "class_embedding": "embed",
    "add_embedding": "embed",
    "encoder_hid_proj": "embed",
    "emb": "embed",
    "conv_in": "io",
    "conv_norm_out": "io",
    "conv_out": "io",
    "conv_act": "io",
    "pos_embed": "io",
    "patch_embed": "io",
    "norm_out": "io",
    "proj_out": "io",
    "proj_out_1": "io",
    "proj_out_2": "io",
    "proj_in": "io",
    "transformer_blocks": "blocks",
}
GROUP_ORDER = ("embed", "io", "down", "mid", "up", "blocks")


@dataclass(frozen=True)
class ParamGroup:
    name: str
    indices: tuple[int, ...]  # positions in the measured parameter list
    numel: int


def group_name(param_name: str, family_blocks: Mapping[str, str] | None = None) -> str:
    head = param_name.split(".", 1)[0]
    return (family_blocks or {}).get(head) or _GROUP_OF.get(head, head)


def parameter_groups(
    named_params: list[tuple[str, torch.Tensor]], family_blocks: Mapping[str, str] | None = None
) -> list[ParamGroup]:
    """Top-level blocks over a list of (name, parameter), in GROUP_ORDER then first appearance; family_blocks:
    the model family's own names (Family.blocks)."""
    members: dict[str, list[int]] = {}
    for i, (name, _) in enumerate(named_params):
        members.setdefault(group_name(name, family_blocks), []).append(i)
    rank = {g: k for k, g in enumerate(GROUP_ORDER)}
    names = sorted(members, key=lambda g: (rank.get(g, len(rank)), list(members).index(g)))
    return [ParamGroup(g, tuple(members[g]), sum(named_params[i][1].numel() for i in members[g])) for g in names]


def bucket_edges(t_range: tuple[int, int], n_buckets: int) -> list[tuple[int, int]]:
    """n equal [lo, hi) slices of the timestep range (fewer if the range is shorter than n)."""
    lo, hi = t_range
    n = max(1, min(n_buckets, hi - lo))
    cuts = [lo + (hi - lo) * k // n for k in range(n + 1)]
    return [(cuts[k], cuts[k + 1]) for k in range(n)]


def bucket_index(t: torch.Tensor, edges: list[tuple[int, int]]) -> torch.Tensor:
    """Bucket number of each timestep in t ([N] long)."""
    upper = torch.tensor([hi for _, hi in edges[:-1]], dtype=torch.long)
    return torch.bucketize(t.cpu().long(), upper, right=True)


def spread_indices(n_total: int, n: int) -> torch.Tensor:
    """n indices evenly spread over range(n_total): a sub-bank that keeps the bank's timestep spread
    (bank timesteps are stratified, so in increasing order)."""
    n = min(n, n_total)
    return torch.floor((torch.arange(n, dtype=torch.float64) + 0.5) * n_total / n).long()
