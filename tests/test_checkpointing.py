"""Checkpointing that bounds Hessian-vector products (core.checkpointing) gives plain autograd's numbers.

Float64, a tiny text-conditioned UNet (resnets, transformer blocks, self- and cross-attention), every
parameter or a few blocks measured: the gradient and the HVP through the checkpointed segments and the
chunked attention equal those of an uncheckpointed double backward to rounding.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from flatcheck.core import checkpointing as C


def _unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    net = (
        UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(16, 32),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=16,
            attention_head_dim=4,
            norm_num_groups=8,
        )
        .double()
        .eval()
    )
    return net.requires_grad_(False)


def _grad_and_hvp(net, params, vs, checkpointed: bool, chunked: bool):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    ehs = torch.randn(2, 5, 16, generator=g, dtype=torch.float64)
    t = torch.tensor([700, 30])
    if checkpointed:
        net.enable_gradient_checkpointing(C.checkpoint)
    else:
        net.disable_gradient_checkpointing()
    with sdpa_kernel(SDPBackend.MATH), C.ChunkedAttention() if chunked else contextlib.nullcontext():
        out = net(sample=x, timestep=t, encoder_hidden_states=ehs, return_dict=False)[0]
        grads = torch.autograd.grad(((out - noise) ** 2).mean(), params, create_graph=True)
        hv = torch.autograd.grad(grads, params, grad_outputs=vs)
    net.disable_gradient_checkpointing()
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])  # noqa: E731
    return flat(grads).detach(), flat(hv)


@pytest.mark.parametrize("prefix", ["", "mid_block", "up_blocks.1.attentions"])
def test_checkpointed_segments_and_chunked_attention_give_autograds_hvp(prefix, monkeypatch):
    net = _unet()
    params = [p for n, p in net.named_parameters() if n.startswith(prefix)]
    for p in params:
        p.requires_grad_(True)
    g = torch.Generator().manual_seed(2)
    vs = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    g0, h0 = _grad_and_hvp(net, params, vs, checkpointed=False, chunked=False)
    calls = []
    attend = C._attend
    monkeypatch.setattr(C, "_attend", lambda *a: calls.append(1) or attend(*a))
    monkeypatch.setattr(C, "ATTENTION_CHUNK_BYTES", 20_000)  # 8x8 latents: 64-token self-attention, split in chunks
    g1, h1 = _grad_and_hvp(net, params, vs, checkpointed=True, chunked=True)
    assert calls, "the attention was not computed in chunks"
    assert torch.allclose(g1, g0, rtol=1e-10, atol=1e-14)
    assert torch.allclose(h1, h0, rtol=1e-9, atol=1e-13)
    assert h0.norm() > 0


def test_checkpointing_without_chunks_and_first_order_only():
    net = _unet()
    params = list(net.parameters())
    for p in params:
        p.requires_grad_(True)
    g = torch.Generator().manual_seed(3)
    vs = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    g0, h0 = _grad_and_hvp(net, params, vs, checkpointed=False, chunked=False)
    g1, h1 = _grad_and_hvp(net, params, vs, checkpointed=True, chunked=False)
    assert torch.allclose(g1, g0, rtol=1e-10, atol=1e-14) and torch.allclose(h1, h0, rtol=1e-9, atol=1e-13)


def test_chunked_attention_matches_sdpa_with_masks_and_causal():
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 3, 40, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bool_mask = torch.rand(2, 1, 40, 40, generator=g) > 0.2
    bool_mask[..., 0] = True  # every row keeps a key
    float_mask = torch.randn(2, 3, 40, 40, generator=g, dtype=torch.float64)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    old = C.ATTENTION_CHUNK_BYTES
    C.ATTENTION_CHUNK_BYTES = 2 * 3 * 40 * 8 * 8  # 8 query rows per chunk
    try:
        for kwargs in ({}, {"attn_mask": bool_mask}, {"attn_mask": float_mask}, {"is_causal": True}, {"scale": 0.3}):
            want = sdpa(q, k, v, **kwargs)
            got = C.chunked_attention(sdpa, q, k, v, **kwargs)
            assert torch.allclose(got, want, rtol=1e-12, atol=1e-12), kwargs
            gw = torch.autograd.grad(want.square().sum(), (q, k, v))
            gg = torch.autograd.grad(got.square().sum(), (q, k, v))
            assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-12) for a, b in zip(gw, gg)), kwargs
    finally:
        C.ATTENTION_CHUNK_BYTES = old
