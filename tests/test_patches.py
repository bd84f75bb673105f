"""The RGB patch extractor (flatcheck.core.patches): seeded, deterministic, split by source image."""

from __future__ import annotations

import hashlib

import pytest
import torch

pytest.importorskip("skimage", reason="scikit-image is in the [test] extra; the RGB patches need it")

from flatcheck.core import patches  # noqa: E402
from flatcheck.core.patches import SOURCES, TEST_SOURCES, TRAIN_SOURCES, rgb_patches  # noqa: E402


def digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.numpy().tobytes()).hexdigest()


def test_same_seed_same_bytes_different_seed_different():
    a = rgb_patches("train", n_per_image=64, seed=0)
    patches.source_image.cache_clear()  # reload the photographs from disk: the bytes still match
    b = rgb_patches("train", n_per_image=64, seed=0)
    c = rgb_patches("train", n_per_image=64, seed=1)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)
    assert not torch.equal(a, c)


def test_one_source_does_not_depend_on_the_others():
    train, src = rgb_patches("train", n_per_image=16, seed=3, return_sources=True)
    everything, src_all = rgb_patches("all", n_per_image=16, seed=3, return_sources=True)
    for i in range(len(SOURCES)):
        if (src == i).any():
            assert torch.equal(train[src == i], everything[src_all == i])


def test_shape_range_and_uint8_grid():
    x = rgb_patches("test", n_per_image=50, seed=0)
    assert x.shape == (50 * len(TEST_SOURCES), 3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    v = (x + 1) * 127.5  # every value is a uint8 level
    assert torch.allclose(v, v.round(), atol=1e-4)
    assert float(x.std()) > 0.1  # real images, not a constant


def test_split_is_by_source_image():
    assert set(TRAIN_SOURCES).isdisjoint(TEST_SOURCES)
    assert set(TRAIN_SOURCES) | set(TEST_SOURCES) == set(SOURCES)
    _, tr = rgb_patches("train", n_per_image=8, return_sources=True)
    _, te = rgb_patches("test", n_per_image=8, return_sources=True)
    assert set(tr.tolist()).isdisjoint(te.tolist())
    assert {SOURCES[i] for i in tr.tolist()} == set(TRAIN_SOURCES)
    assert {SOURCES[i] for i in te.tolist()} == set(TEST_SOURCES)
    # No train patch appears in the test split (distinct photographs, so no shared pixels).
    xtr = rgb_patches("train", n_per_image=32)
    xte = rgb_patches("test", n_per_image=32)
    assert torch.cdist(xtr.flatten(1), xte.flatten(1)).min() > 0


def test_patches_cnn_fd_orders_real_heldout_and_noise(tmp_path):
    """FD (patches-cnn) against --ref patches: new crops of the training photographs score lowest,
    the held-out photographs higher, uniform noise far higher."""
    from flatcheck.core.fd import score_samples

    kw = dict(features="patches-cnn", bootstrap=20, cache_dir=tmp_path)
    same = score_samples(rgb_patches("train", n_per_image=100, seed=5), "patches", **kw)
    other = score_samples(rgb_patches("test", n_per_image=250, seed=5), "patches", **kw)
    noise = score_samples(
        torch.rand(500, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1, "patches", **kw
    )
    assert same.label == "FD (patches-cnn)" and same.feature_dim == 128
    assert same.value.value < other.value.value < noise.value.value
    assert noise.value.value > 10 * other.value.value
