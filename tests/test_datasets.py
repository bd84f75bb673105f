"""The bundled digits data: read from scikit-learn's CSV without importing sklearn.datasets."""

import importlib.util

import numpy as np
import torch

from flatcheck.core import datasets


def test_digits_table_is_load_digits_exactly(monkeypatch):
    from sklearn.datasets import load_digits

    ref = load_digits()
    datasets.digits_table.cache_clear()
    images, labels = datasets.digits_table()
    assert images.shape == (1797, 8, 8) and np.array_equal(images, ref.images)
    assert np.array_equal(labels, ref.target) and labels.dtype == np.int64
    assert not images.flags.writeable  # cached: a caller cannot change what the next one gets

    # Without the CSV where it is expected (another scikit-learn layout): load_digits, the same arrays.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    datasets.digits_table.cache_clear()
    try:
        images2, labels2 = datasets.digits_table()
    finally:
        datasets.digits_table.cache_clear()
    assert np.array_equal(images2, images) and np.array_equal(labels2, labels)


def test_digits_images_range_and_labels():
    x, y = datasets.digits_images(), datasets.digits_labels()
    assert x.shape == (1797, 1, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert y.shape == (1797,) and set(y.tolist()) == set(range(10))
    y[0] = 99  # a copy: the cached table is untouched
    assert int(datasets.digits_labels()[0]) != 99


def test_bundled_digits_fit_an_rgb_model():
    """Grey digits for a 3-channel model are brought to RGB as any grey image is (channel repeated), not fed to
    the network with one channel (a conv2d channel mismatch)."""
    from flatcheck.core.data import load_images

    grey = load_images("digits", (1, 8, 8), limit=4)
    rgb = load_images("digits", (3, 8, 8), limit=4)
    assert rgb.shape == (4, 3, 8, 8)
    assert torch.equal(rgb, grey.expand(-1, 3, -1, -1))
