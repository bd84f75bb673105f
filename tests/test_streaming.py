"""Streaming: whole sample sets are decoded, converted and scored batch by batch; nothing holds
all the decoded images of a set, and the numbers equal a whole-set computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flatcheck.core.checkpoint import load
from flatcheck.core.denoiser import Denoiser
from flatcheck.core.fd import reference
from flatcheck.core.fd.frechet import frechet_bootstrap, kernel_distance
from flatcheck.core.fd.options import FdOptions
from flatcheck.core.fd.score import to_uint8_nchw
from flatcheck.core.fd.scorer import make_scorer
from flatcheck.core.probes import probe_bank
from flatcheck.measures.quantize.drift import FULL, per_sample_mse
from flatcheck.measures.quantize.measure import QuantizeConfig, full_precision_samples, measure_quantization

N, BATCH = 10, 4  # 3 batches: 4, 4, 2


@pytest.fixture(scope="module")
def ldm(tmp_path_factory, family_dir):
    """The tiny LDM (UNet2DModel on 3 x 8 x 8 VQ latents, 3 x 16 x 16 images) and an FD reference for it."""
    root = tmp_path_factory.mktemp("stream")
    den = Denoiser.from_checkpoint(load(str(family_dir("ldm"))))
    ref = root / "ref.npz"
    np.savez(ref, images=np.random.default_rng(0).uniform(-1, 1, size=(32, 3, 16, 16)).astype(np.float32))
    return den, str(ref)


@pytest.fixture
def decodes(ldm):
    """The batch size of every call into the autoencoder's decoder."""
    den, _ = ldm
    sizes: list[int] = []
    h = den.vae.decoder.register_forward_pre_hook(lambda m, a: sizes.append(a[0].shape[0]))
    yield sizes
    h.remove()


def _scorer(den, ref):
    opts = FdOptions(ref=ref, features="digits-cnn", bootstrap=20, kid_subsets=10, kid_subset_size=5, use_cache=False)
    return make_scorer(opts, den, "cpu", BATCH, seed=0)


def test_fd_decodes_and_extracts_one_batch_at_a_time(ldm, decodes, monkeypatch):
    den, ref = ldm
    z = torch.randn(N, *den.sample_shape, generator=torch.Generator().manual_seed(0))
    scorer = _scorer(den, ref)
    ex = scorer.extractor()
    local = ex.extract_local
    monkeypatch.setattr(ex, "extract_local", lambda images, bs=64: (decodes.append(-len(images)), local(images, bs))[1])
    got = scorer.score(z)
    # Each batch decoded once, never more than a batch at a time, and its features taken before the next
    # batch is decoded (features logged as -n); then the reference's 32 images, fitted and extracted 4
    # batches at a time (a reference at a large model's resolution never sits whole in memory).
    assert decodes == [4, -4, 4, -4, 2, -2, -16, -16] and len([d for d in decodes if d > 0]) == math.ceil(N / BATCH)
    # Memoised by the latents' content: a second score decodes nothing.
    assert scorer.score(z.clone()) is got and len(decodes) == 8

    # The whole-set computation, independently: decode all, extract all, FD and KID.
    images = torch.cat([den.decode(b).float() for b in z.split(BATCH)])  # same batch boundaries
    feats = ex.extract(to_uint8_nchw(images), BATCH)
    stats = reference.reference_stats(ref, ex, tuple(images.shape[1:]), batch_size=BATCH, use_cache=False)
    boot = frechet_bootstrap(feats, stats.mu, stats.sigma, rounds=20, seed=0, level=0.95)
    kid, _ = kernel_distance(feats, stats.features, 10, 5, 0)
    assert got.num_samples == N and got.value.value == pytest.approx(boot.value, rel=1e-12, abs=1e-12)
    assert got.value.stderr == pytest.approx(boot.stderr, rel=1e-12, abs=1e-12)
    assert got.kid.value == pytest.approx(kid, rel=1e-12, abs=1e-15)


def test_quantize_decodes_each_batch_once_and_matches_whole_sets(ldm, decodes, monkeypatch):
    from flatcheck.core import sampling

    den, ref = ldm
    scorer = _scorer(den, ref)
    bank = probe_bank(torch.randn(4, *den.sample_shape), 4, 0, (0, 1000), "test")
    cfg = QuantizeConfig(
        settings=["W8A8", "W4A4"], samples=N, steps=2, calib_samples=2, sensitivity_samples=0, batch_size=BATCH
    )
    asked, real = [], sampling.sample
    monkeypatch.setattr(sampling, "sample", lambda *a, **k: (asked.append(a[3]), real(*a, **k))[1])
    r = measure_quantization(den, bank, cfg, scorer=scorer)
    # The settings sample batch by batch inside the pass (the seeds of a batch, each setting in turn), never a
    # whole set: full precision (N) and calibration (2) are the only whole-count calls.
    assert [c for c in asked if isinstance(c, int)] == [N, 2]
    rows = [list(range(0, 4)), list(range(4, 8)), [8, 9]]
    assert [list(c) for c in asked if not isinstance(c, int)] == [r_ for r_ in rows for _ in range(2)]
    # Full precision and each setting: every batch decoded once, one batch at a time, batch by batch across
    # the sets (drift and FD from the same pass; a whole-set decode would give 4, 4, 2, 4, 4, 2, ...).
    assert decodes == [4, 4, 4, 4, 4, 4, 2, 2, 2]
    # The kept images (here every sample: N < 64) are the whole-set decodes; drift and FD equal the whole-set numbers.
    fp, w4 = r.samples_of(FULL), r.samples_of("W4A4")
    assert fp.shape == (N, 3, 16, 16)
    w4_mse = per_sample_mse(fp, w4)
    assert r.settings[1].sample_mse.value == pytest.approx(float(w4_mse.mean()), rel=1e-12)
    assert r.full_precision.sample_std == pytest.approx(float(fp.clamp(-1, 1).double().var()) ** 0.5, rel=1e-12)
    ex = scorer.extractor()
    stats = reference.reference_stats(ref, ex, (3, 16, 16), batch_size=BATCH, use_cache=False)
    for images, est in ((fp, r.full_precision.fid), (w4, r.settings[1].fid)):
        boot = frechet_bootstrap(
            ex.extract(to_uint8_nchw(images), BATCH), stats.mu, stats.sigma, rounds=20, seed=0, level=0.95
        )
        assert est.value == pytest.approx(boot.value, rel=1e-12, abs=1e-12)
    # The fid measure scoring the same full-precision samples afterwards (the same seeds): a memo hit, nothing decoded.
    fp_latents = full_precision_samples(den, cfg)
    n_dec = len(decodes)
    assert scorer.score(fp_latents).value == r.full_precision.fid and len(decodes) == n_dec


def test_a_reference_folder_is_read_a_chunk_at_a_time_with_the_numbers_of_a_whole_load(tmp_path, monkeypatch):
    """An image-folder reference (mixed sizes, as people's folders are) is read, fitted and passed through
    the feature network 4 batches at a time, never whole; its statistics equal those of loading the folder
    whole (load_images) and extracting once."""
    from PIL import Image

    from flatcheck.core import data
    from flatcheck.core.fd.extractors import load_extractor
    from flatcheck.core.fd.frechet import gaussian_stats

    rng = np.random.default_rng(0)
    folder = tmp_path / "ref"
    folder.mkdir()
    for i in range(37):
        side = 20 if i % 5 else 24  # mixed sizes: fitted to the first image's size, then to 16 x 16
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    ext = load_extractor("digits-cnn", None, torch.device("cpu"))
    passes = ext.passes  # the extractor is shared (cached) across a session's tests

    def fit(x, hw):  # square images: no crop, an antialiased bilinear resize
        return (
            x
            if tuple(x.shape[-2:]) == hw
            else torch.nn.functional.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
        )

    # The whole folder loaded at once, independently of core.data: [-1, 1], the first image's size, 16 x 16
    imgs = [
        torch.from_numpy(np.asarray(Image.open(f), dtype=np.float32))[None, None] / 127.5 - 1
        for f in sorted(folder.glob("*.png"))
    ]
    x = fit(torch.cat([fit(i, tuple(imgs[0].shape[-2:])) for i in imgs]), (16, 16)).clamp(-1, 1)
    whole = ext.extract(torch.from_numpy(np.round((x.numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)), 2)
    chunks = []
    real = data._read_image
    monkeypatch.setattr(data, "_read_image", lambda f, c: chunks.append(f) or real(f, c))
    seen = []
    real_iter = data.iter_folder
    monkeypatch.setattr(reference, "iter_folder", lambda *a: (seen.append(len(x)) or x for x in real_iter(*a)))
    stats = reference.reference_stats(str(folder), ext, (1, 16, 16), batch_size=2, use_cache=False)
    assert seen == [8, 8, 8, 8, 5] and len(chunks) == 37  # batch 2 x 4 per chunk
    mu, sigma = gaussian_stats(whole)
    np.testing.assert_array_equal(stats.mu, mu)
    np.testing.assert_array_equal(stats.sigma, sigma)
    assert stats.info.num_images == 37 and ext.passes - passes == 2  # the whole load, then the chunks: one pass each


# ---------------------------------------------------------------------------- --data: only what the bank draws
def _mixed_folder(root, n=7):
    from PIL import Image

    rng = np.random.default_rng(3)
    folder = root / "imgs"
    folder.mkdir()
    for i in range(n):
        size = (20, 12) if i % 3 == 1 else (16, 16)  # mixed sizes: fitted to the folder's first image first
        Image.fromarray(rng.integers(0, 256, size=(*size[::-1], 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


@pytest.mark.parametrize("kind", ["folder", "npy", "npz", "digits", "patches"])
def test_a_subset_of_data_is_the_whole_sets_images(tmp_path, kind):
    """load_images(rows=...) gives, bit for bit, the rows of the whole set's load; count_images counts it."""
    from flatcheck.core.data import count_images, load_images

    rng = np.random.default_rng(0)
    if kind == "folder":
        spec = str(_mixed_folder(tmp_path))
    elif kind == "npy":
        spec = str(tmp_path / "x.npy")
        np.save(spec, rng.uniform(0, 1, size=(9, 12, 12, 3)).astype(np.float32))  # NHWC in [0, 1]
    elif kind == "npz":
        spec = str(tmp_path / "x.npz")
        np.savez(spec, images=rng.integers(0, 256, size=(9, 3, 10, 10), dtype=np.uint8))
    else:
        spec = kind
    shape = (3, 8, 8)
    whole = load_images(spec, shape)
    assert count_images(spec) == len(whole)
    rows = [1, 2, 5, len(whole) - 1]
    assert torch.equal(load_images(spec, shape, rows=rows), whole[rows])


def test_the_bank_reads_and_encodes_only_the_images_it_draws(ldm, tmp_path, monkeypatch):
    """A latent model's bank from --data: the autoencoder encodes the drawn images only, and the bank
    is the one drawn from the whole set encoded."""
    from flatcheck.core import probes

    den, _ = ldm
    monkeypatch.setenv("FLATCHECK_CACHE", str(tmp_path / "cache"))  # encodes counted: no latents from an earlier run
    data = tmp_path / "data.npz"
    np.savez(data, images=np.random.default_rng(1).uniform(-1, 1, size=(40, 3, 16, 16)).astype(np.float32))
    encoded: list[int] = []
    h = den.vae.encoder.register_forward_pre_hook(lambda m, a: encoded.append(a[0].shape[0]))
    try:
        bank = probes.build_probe_bank(den, n=6, seed=2, data=str(data), batch_size=4)
        assert sum(encoded) == 6 and "(40 images, 6 drawn)" in bank.source
        encoded.clear()
        whole = probes.encode_images(den, probes.reference_images(den, str(data)), 4, use_cache=False)
        ref = probe_bank(whole, 6, 2, (0, den.num_train_timesteps), "whole")
    finally:
        h.remove()
    assert (
        torch.allclose(bank.x0, ref.x0, atol=1e-5) and torch.equal(bank.t, ref.t) and torch.equal(bank.noise, ref.noise)
    )
    # repeats: a bank larger than the pool draws each image once from the disk
    encoded.clear()
    h = den.vae.encoder.register_forward_pre_hook(lambda m, a: encoded.append(a[0].shape[0]))
    try:
        big = probes.build_probe_bank(den, n=50, seed=2, data=str(data), batch_size=64)
    finally:
        h.remove()
    assert sum(encoded) == 40 and len(big) == 50
