"""flatcheck fid: Frechet distance against closed forms, bootstrap, KID, digits-cnn, cache, references, Inception
plumbing, CLI."""

from __future__ import annotations

import json
import sys
import urllib.error

import numpy as np
import pytest
import torch

from flatcheck.core.fd import extractors, reference
from flatcheck.core.fd.frechet import frechet_bootstrap, frechet_distance, gaussian_stats, kernel_distance
from flatcheck.core.fd.score import score_samples, to_uint8_nchw
from flatcheck.errors import InputError


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own statistics cache and forgets the in-memory one."""
    monkeypatch.setenv("FLATCHECK_CACHE", str(tmp_path / "cache"))
    reference.clear_memory_cache()
    yield
    reference.clear_memory_cache()


def _random_psd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d + (0 if rank else 0.05 * np.eye(d))


# ------------------------------------------------------------------ Frechet distance: closed forms
def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(want, rel=1e-10)
    assert frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0, abs=1e-10)


def test_frechet_full_covariances_match_sqrtm_and_torch_fidelity():
    from scipy.linalg import sqrtm
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(1)
    for rank in (None, 3):  # full rank, and rank deficient like a small-N covariance
        mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
        s1, s2 = _random_psd(rng, 8, rank), _random_psd(rng, 8)
        want = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(sqrtm(s1 @ s2)).real
        ours = frechet_distance(mu1, s1, mu2, s2)
        tf = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)[
            "frechet_inception_distance"
        ]
        assert ours == pytest.approx(want, rel=1e-8)
        assert ours == pytest.approx(tf, rel=1e-8)


def test_frechet_of_sampled_gaussians_approaches_closed_form():
    rng = np.random.default_rng(2)
    d = 3
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.25])
    s1, s2 = np.diag([1.0, 2.0, 0.5]), np.diag([0.5, 2.0, 2.0])
    exact = frechet_distance(mu1, s1, mu2, s2)
    x = rng.multivariate_normal(mu1, s1, 40000)
    y = rng.multivariate_normal(mu2, s2, 40000)
    est = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    assert est == pytest.approx(exact, rel=0.03)
    assert frechet_distance(*gaussian_stats(x[:20000]), *gaussian_stats(x[20000:])) < 0.01 * exact


# ------------------------------------------------------------------ bootstrap
@pytest.mark.parametrize("n,d", [(300, 8), (6, 10)])  # moment path (n > rank) and Gram path (n <= rank)
def test_bootstrap_rounds_equal_recomputed_resamples(n, d):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, d)) + 0.3
    mu, sigma = rng.normal(size=d) * 0.1, _random_psd(rng, d)
    b = frechet_bootstrap(x, mu, sigma, rounds=20, seed=7)
    assert b.value == pytest.approx(frechet_distance(*gaussian_stats(x), mu, sigma), rel=1e-9)
    counts = np.random.default_rng(7).multinomial(n, np.full(n, 1 / n), size=20)
    for k in (0, 5, 19):
        rows = np.repeat(np.arange(n), counts[k])
        assert b.rounds[k] == pytest.approx(frechet_distance(*gaussian_stats(x[rows]), mu, sigma), rel=1e-8)
    again = frechet_bootstrap(x, mu, sigma, rounds=20, seed=7)
    other = frechet_bootstrap(x, mu, sigma, rounds=20, seed=8)
    assert np.array_equal(b.rounds, again.rounds) and not np.array_equal(b.rounds, other.rounds)
    # Basic bootstrap interval, from the sorted rounds by hand: [2 v - q_97.5, 2 v - q_2.5], clipped at 0.
    r = np.sort(b.rounds)
    q = lambda p: (  # noqa: E731
        r[int(np.floor(p * 19))] + (p * 19 % 1) * (r[min(int(np.floor(p * 19)) + 1, 19)] - r[int(np.floor(p * 19))])
    )
    lo, hi = b.interval()
    assert hi == pytest.approx(max(2 * b.value - q(0.025), 0.0), rel=1e-9, abs=1e-12)
    assert lo == pytest.approx(max(2 * b.value - q(0.975), 0.0), rel=1e-9, abs=1e-12)
    assert b.stderr == pytest.approx(np.std(b.rounds, ddof=1))


def test_basic_interval_covers_the_true_fd_that_the_biased_estimate_misses():
    """Samples N(m, diag(s)) against exact N(0, I) statistics, D = 16, N = 200: the estimate sits
    ~0.4 above the closed-form FD (small-N bias, 5x its sd). The basic bootstrap interval covers the
    true FD; an interval centred on the estimate (FD +- 1.96 sd, the old one) never does."""
    rng = np.random.default_rng(11)
    d, n = 16, 200
    m, s = np.full(d, 0.125), np.linspace(0.6, 1.4, d)
    true = frechet_distance(m, np.diag(s), np.zeros(d), np.eye(d))
    covered = centred = 0
    for k in range(20):
        x = rng.normal(size=(n, d)) * np.sqrt(s) + m
        b = frechet_bootstrap(x, np.zeros(d), np.eye(d), rounds=100, seed=k)
        lo, hi = b.interval()
        covered += lo <= true <= hi
        centred += abs(b.value - true) <= 1.959964 * b.stderr
    assert covered >= 18 and centred <= 2, (covered, centred)


def test_kid_matches_direct_unbiased_mmd():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(40, 5)) + 0.5
    k = lambda a, b: (a @ b.T / 5 + 1) ** 3  # noqa: E731 - the cubic polynomial kernel of KID
    m = 40
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    want = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    mean, std = kernel_distance(x, y, subsets=1, subset_size=m, seed=0)  # one subset = all rows (a permutation)
    assert mean == pytest.approx(want, rel=1e-9) and std == 0
    # Same distribution: KID is unbiased, so every subset's value has expectation 0 and so has their
    # mean; however correlated the overlapping subsets are, its spread is at most one subset's std.
    # (A biased V-statistic MMD^2 averages 0.34 here: 2/m (E k(x,x) - E k(x,x')), above 3 std = 0.29.)
    z = rng.normal(size=(400, 5))
    near, near_std = kernel_distance(z[:200], z[200:], subsets=200, subset_size=50, seed=1)
    assert 0 < near_std < 0.2 and abs(near) < 3 * near_std
    assert mean > 10 * near_std  # a 0.5 shift in every dimension: far outside that spread
    from flatcheck.core.fd.score import kid_estimate

    est = kid_estimate(near, near_std, 200)
    assert est.value == near and est.stderr == pytest.approx(near_std / np.sqrt(200)) and est.n == 200


# ------------------------------------------------------------------ digits-cnn: real vs real, real vs noise, cache
@pytest.fixture(scope="module")
def digits_halves():
    from flatcheck.core.datasets import digits_images

    x = digits_images()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:600]], x[perm[600:1200]]


def _save_images(path, x):
    np.savez(path, images=to_uint8_nchw(x).numpy())
    return str(path)


def test_digits_cnn_separates_real_from_noise(digits_halves, tmp_path):
    a, b = digits_halves
    ref = _save_images(tmp_path / "b.npz", b)
    real = score_samples(a, ref, features="digits-cnn", bootstrap=50)
    noise = score_samples(torch.rand(600, 1, 16, 16) * 2 - 1, ref, features="digits-cnn", bootstrap=50)
    assert real.label == "FD (digits-cnn)" and real.feature_dim == 64 and real.num_samples == 600
    assert real.value.value < 0.05 * noise.value.value
    assert noise.value.ci_low > real.value.ci_high  # the intervals do not overlap
    assert noise.kid.value > 20 * abs(real.kid.value)
    # KID's ± is the standard error of its mean over subsets; the spread of one subset is kept apart.
    for r in (real, noise):
        assert r.kid.n == r.kid_subsets == 100 and r.kid_subset_std > 0
        assert r.kid.stderr == pytest.approx(r.kid_subset_std / 10, rel=1e-12)
    assert real.ci_method == "basic bootstrap"
    assert real.warning is not None and "600 samples" in real.warning


def test_digits_cnn_classifies_digits():
    from flatcheck.core.datasets import digits_images, digits_labels
    from flatcheck.core.fd.digits_cnn import load_digits_cnn, prepare, weights_metadata

    net = load_digits_cnn()
    with torch.no_grad():
        pred = net(prepare(to_uint8_nchw(digits_images()))).argmax(1)
    assert float((pred == digits_labels()).float().mean()) > 0.97  # train + test split together
    assert float(weights_metadata()["test_accuracy"]) > 0.95


def test_reference_cache_skips_the_feature_pass(digits_halves, tmp_path):
    a, b = digits_halves
    ref = _save_images(tmp_path / "b.npz", b)
    ex = extractors.load_extractor("digits-cnn")
    p0 = ex.passes
    first = score_samples(a[:100], ref, features="digits-cnn", bootstrap=20)
    assert ex.passes - p0 == 2 and first.reference.cache == "computed"  # samples + reference
    second = score_samples(a[:100], ref, features="digits-cnn", bootstrap=20)
    assert ex.passes - p0 == 3 and second.reference.cache == "memory"  # samples only
    reference.clear_memory_cache()  # a new process: the disk cache answers
    third = score_samples(a[:100], ref, features="digits-cnn", bootstrap=20)
    assert ex.passes - p0 == 4 and third.reference.cache == "disk"
    assert first.value.value == second.value.value == third.value.value
    cache_files = list((tmp_path / "cache" / "fid").iterdir())
    assert len(cache_files) == 1 and cache_files[0].suffix == ".npz"  # atomic: no temp file left behind
    # Other content (same file name) is another key: recomputed.
    _save_images(tmp_path / "b.npz", b[:300])
    fourth = score_samples(a[:100], ref, features="digits-cnn", bootstrap=20)
    assert ex.passes - p0 == 6 and fourth.reference.cache == "computed" and fourth.reference.num_images == 300


def test_fd_change_is_paired(digits_halves, tmp_path):
    from flatcheck.core.fd import fd_change

    a, b = digits_halves
    ref = _save_images(tmp_path / "b.npz", b)
    base = score_samples(a[:300], ref, features="digits-cnn", bootstrap=100)
    same = fd_change(base, base)
    assert same.value == 0 and same.stderr == 0
    noisy = score_samples(
        (a[:300] + 0.3 * torch.randn(300, 1, 16, 16, generator=torch.Generator().manual_seed(1))).clamp(-1, 1),
        ref,
        features="digits-cnn",
        bootstrap=100,
    )
    change = fd_change(noisy, base)
    assert change.value == pytest.approx(noisy.value.value - base.value.value)
    d = np.sort(noisy._rounds - base._rounds)  # same resample indices: the rounds pair up
    lo_q, hi_q = np.quantile(d, [0.025, 0.975])
    assert (change.ci_low, change.ci_high) == pytest.approx(
        (2 * change.value - hi_q, 2 * change.value - lo_q), rel=1e-12
    )
    assert change.stderr == pytest.approx(np.std(d, ddof=1), rel=1e-12)
    assert change.ci_low > 0  # noise clearly makes it worse
    assert change.stderr < 0.8 * (noisy.value.stderr**2 + base.value.stderr**2) ** 0.5  # pairing cancels shared noise
    other = score_samples(a[:300], ref, features="digits-cnn", bootstrap=100, seed=1)
    with pytest.raises(ValueError):
        fd_change(other, base)


def test_compare_combines_standard_errors_of_fd_and_kid(digits_halves, tmp_path):
    """compare adds the two columns' ± in quadrature: each must be a standard error (KID's: of its
    mean over subsets, std / sqrt(subsets); it was the std over subsets, 10x larger at 100 subsets)."""
    import math

    from flatcheck.compare import compare_reports
    from flatcheck.results import to_jsonable

    a, b = digits_halves
    ref = _save_images(tmp_path / "b.npz", b)
    blurred = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(a[:200], 2), scale_factor=2)
    runs = [score_samples(x, ref, features="digits-cnn", bootstrap=50) for x in (a[:200], blurred)]
    comp = compare_reports([{"fid": to_jsonable(r), "verdicts": []} for r in runs], ["real", "blurred"])
    rows = {r["path"]: r for r in comp.rows}
    kid, fd = rows["fid.kid"], rows["fid.value"]
    assert kid["stderrs"] == pytest.approx([r.kid_subset_std / math.sqrt(r.kid_subsets) for r in runs], rel=1e-12)
    assert kid["stderr_diff"][0] == pytest.approx(math.hypot(*kid["stderrs"]), rel=1e-12)
    assert fd["stderrs"] == pytest.approx([float(np.std(r._rounds, ddof=1)) for r in runs], rel=1e-12)
    assert kid["diff"][0] > 2 * kid["stderr_diff"][0]  # blur: a real difference, flagged


def test_fid_view_names_the_interval_and_says_where_it_lies(digits_halves, tmp_path):
    """At N = 40 < 64 feature dimensions the basic interval excludes the estimate: the table says so,
    on the right side."""
    from rich.console import Console

    from flatcheck.measures.fid.view import view

    a, b = digits_halves
    r = score_samples(a[:40], _save_images(tmp_path / "b.npz", b), features="digits-cnn", bootstrap=50)
    v = r.value
    assert not v.ci_low <= v.value <= v.ci_high
    con = Console(width=400, record=True)
    for part in view(r):
        con.print(part)
    text = " ".join(con.export_text().split())
    assert "95% basic bootstrap interval" in text and f"[{v.ci_low:.4g}, {v.ci_high:.4g}]" in text
    assert f"the interval lies {'below' if v.value > v.ci_high else 'above'} the estimate" in text
    assert f"std over subsets {r.kid_subset_std:.2g}" in text
    # Issue 27: '4.38 [0, 3.11]' read as a bug. The cell names the value the interval is built around.
    c = v.bias_corrected
    assert c == pytest.approx(max(2 * v.value - float(np.mean(r._rounds)), 0.0), rel=1e-12)
    assert v.ci_low <= c <= v.ci_high
    cell = f"{v.value:.4g} (bias-corrected {c:.4g}) [{v.ci_low:.4g}, {v.ci_high:.4g}]"
    assert cell in text
    from flatcheck.measures.fid import verdict

    assert f"{r.label} {cell} (95% basic bootstrap)" in verdict(r).line


def test_every_report_prints_the_bias_corrected_fd_where_the_interval_excludes_the_estimate(digits_halves, tmp_path):
    """Markdown, HTML and compare print FD cells from the JSON: the same cell there, and a plain one
    where the interval holds the estimate."""
    from flatcheck.compare import compare_reports
    from flatcheck.measures.fid.view import fd_text
    from flatcheck.report.html import audit_html
    from flatcheck.report.markdown import audit_markdown
    from flatcheck.results import to_jsonable

    a, b = digits_halves
    ref = _save_images(tmp_path / "b.npz", b)
    small, large = (score_samples(a[:n], ref, features="digits-cnn", bootstrap=50) for n in (40, 600))
    v = small.value
    assert not v.ci_low <= v.value <= v.ci_high and large.value.ci_low <= large.value.value <= large.value.ci_high
    cell = f"{v.value:.4g} ± {v.stderr:.2g} (bias-corrected {v.bias_corrected:.4g}) [{v.ci_low:.4g}, {v.ci_high:.4g}]"
    docs = [
        {"fid": to_jsonable(r), "verdicts": [{"area": "fid", "status": "info", "line": fd_text(r)}]}
        for r in (small, large)
    ]
    assert docs[0]["fid"]["value"]["bias_corrected"] == v.bias_corrected
    md, html = audit_markdown(docs[0]), audit_html(docs[0])
    assert f"`fid.value` | {cell} |" in md and f"<code>fid.value</code></td><td class='num'>{cell}</td>" in html
    plain = f"{large.value.value:.4g} ± {large.value.stderr:.2g} |"
    assert f"`fid.value` | {plain}" in audit_markdown(docs[1]) and "bias-corrected" not in audit_markdown(docs[1])
    rows = {r["path"]: r for r in compare_reports(docs, ["small", "large"]).rows}
    assert rows["fid.value"]["text"][0] == cell


def test_the_paired_change_carries_its_bias_corrected_value(digits_halves, tmp_path):
    from flatcheck.core.fd import fd_change
    from flatcheck.core.stats import interval_text

    a, b = digits_halves
    ref = _save_images(tmp_path / "b.npz", b)
    base = score_samples(a[:40], ref, features="digits-cnn", bootstrap=50)
    blurred = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(a[:40], 2), scale_factor=2)
    blurred = score_samples(blurred, ref, features="digits-cnn", bootstrap=50)
    change = fd_change(blurred, base)
    d = blurred._rounds - base._rounds
    assert change.bias_corrected == pytest.approx(2 * change.value - d.mean(), rel=1e-12)  # not clipped
    inside = change.ci_low <= change.value <= change.ci_high
    text = interval_text(change.value, change.ci_low, change.ci_high, change.bias_corrected, "{:+.3g}", "{:.3g}")
    assert ("bias-corrected" in text) != inside and text.endswith(f"[{change.ci_low:.3g}, {change.ci_high:.3g}]")


def test_quantize_table_prints_the_bias_corrected_cells():
    """The quantize command's FD table: an FD and a paired change whose intervals exclude them."""
    from types import SimpleNamespace as NS

    from rich.console import Console

    from flatcheck.core.stats import BootstrapEstimate, Estimate
    from flatcheck.measures.quantize.view import fid_table

    fd = BootstrapEstimate(4.38, 1.1, 0.0, 3.11, 64, bias_corrected=1.62)
    change = BootstrapEstimate(0.5, 0.2, 0.61, 1.2, 64, bias_corrected=0.9)
    kid = Estimate(0.1, 0.01)
    setting = NS(name="W4A4", fid=fd, fid_change=change, kid=kid)
    r = NS(fid_label="FD (digits-cnn)", samples=64, full_precision=NS(fid=fd, kid=kid), settings=[setting])
    con = Console(width=200, record=True)
    con.print(fid_table(r))
    text = con.export_text()
    assert "4.38 (bias-corrected 1.62) [0, 3.11]" in text and "+0.5 (bias-corrected +0.9) [0.61, 1.2]" in text


def test_stats_file_reference_equals_images_reference(digits_halves, tmp_path):
    a, b = digits_halves
    ex = extractors.load_extractor("digits-cnn")
    mu, sigma = gaussian_stats(ex.extract(to_uint8_nchw(b)))
    np.savez(tmp_path / "stats.npz", mu=mu, sigma=sigma)
    from_stats = score_samples(a, str(tmp_path / "stats.npz"), features="digits-cnn", bootstrap=20)
    from_images = score_samples(a, _save_images(tmp_path / "b.npz", b), features="digits-cnn", bootstrap=20)
    assert from_stats.value.value == pytest.approx(from_images.value.value, rel=1e-9)
    assert from_stats.kid is None and from_stats.reference.kind == "stats" and from_images.kid is not None
    np.savez(tmp_path / "stats2048.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(InputError, match="2048-dimensional"):
        score_samples(a, str(tmp_path / "stats2048.npz"), features="digits-cnn")


def test_fd_and_kid_equal_torch_fidelity_calculate_metrics_on_image_folders(digits_halves, tmp_path):
    """An independent reference: torch-fidelity's own entry point on two PNG folders, with the same
    registered digits-cnn extractor, against score_samples on the same images (as a tensor) and the
    reference folder. torch-fidelity keeps features in float32, flatcheck in float64."""
    import torch_fidelity
    from PIL import Image

    a, b = digits_halves
    blurred = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(a[:300], 2), scale_factor=2)
    for name, imgs in (("samples", blurred), ("ref", b[:300])):
        (tmp_path / name).mkdir()
        for i, img in enumerate(to_uint8_nchw(imgs)):
            Image.fromarray(img[0].numpy()).save(tmp_path / name / f"{i:04d}.png")
    extractors.load_extractor("digits-cnn")  # registers it with torch-fidelity
    tf = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "samples"),
        input2=str(tmp_path / "ref"),
        feature_extractor="digits-cnn",
        fid=True,
        kid=True,
        kid_subsets=20,
        kid_subset_size=100,
        rng_seed=0,
        cuda=False,
        save_cpu_ram=True,
        cache=False,
        verbose=False,
    )
    ours = score_samples(
        blurred,
        str(tmp_path / "ref"),
        features="digits-cnn",
        bootstrap=10,
        kid_subsets=20,
        kid_subset_size=100,
        seed=0,
        use_cache=False,
    )
    assert ours.value.value == pytest.approx(tf["frechet_inception_distance"], rel=1e-6)
    assert ours.kid.value == pytest.approx(tf["kernel_inception_distance_mean"], rel=1e-5)
    assert ours.kid_subset_std == pytest.approx(tf["kernel_inception_distance_std"], rel=1e-5)
    assert ours.value.value > 1.0  # a blur: a real distance, not a trivial 0 = 0


def test_image_folder_reference(digits_halves, tmp_path):
    from PIL import Image

    _, b = digits_halves
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(to_uint8_nchw(b[:40])):
        Image.fromarray(img[0].numpy()).save(folder / f"{i:03d}.png")
    r1 = score_samples(b[:40], str(folder), features="digits-cnn", bootstrap=20)
    assert r1.reference.kind == "folder" and r1.reference.num_images == 40
    assert r1.value.value < 1e-6  # the very same images: identical statistics


# ------------------------------------------------------------------ Inception: plumbing, random weights, both formats
@pytest.fixture(scope="module")
def inception_pth(tmp_path_factory):
    """torch-fidelity's Inception with random weights saved as its .pth state dict (plumbing only: never a real FID)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("w") / "weights-inception-random.pth"
    torch.save(net.state_dict(), path)
    return path


class _TinyTorchScriptInception(torch.nn.Module):
    """The interface of NVIDIA's inception-2015-12-05.pt: forward(x in [0, 255], return_features) -> [N, 2048]."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.fc = torch.nn.Linear(8, 2048)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        f = self.fc(self.conv((x - 128) / 128).mean((2, 3)))
        return f if return_features else f[:, :1008]


def test_inception_pth_and_torchscript_weights(inception_pth, tmp_path, digits_halves):
    a, b = digits_halves
    ref = _save_images(tmp_path / "ref.npz", b[:4])
    r = score_samples(a[:4], ref, features="inception", weights=inception_pth, bootstrap=10, kid_subset_size=2)
    assert r.label == "FID" and r.features == "inception" and r.feature_dim == 2048 and np.isfinite(r.value.value)
    assert extractors.load_extractor("inception", inception_pth).tf_name == "inception-v3-compat"

    torch.manual_seed(0)
    ts = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(_TinyTorchScriptInception()), str(ts))
    r2 = score_samples(a[:4], ref, features="inception", weights=ts, bootstrap=10, kid_subset_size=2)
    assert r2.label == "FID" and r2.feature_dim == 2048 and r2.value.value > 0
    assert extractors.load_extractor("inception", ts).tf_name == "inception-v3-torchscript"
    assert r2.reference.cache == "computed"  # other weights, other feature space: not the .pth run's statistics


def _offline(monkeypatch, tmp_path):
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    def refuse(*a, **k):
        # As torch.hub does offline: announce the download on stderr, then fail.
        sys.stderr.write('Downloading: "https://github.com/toshas/torch-fidelity/..." to /root/.cache/...\n')
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(fe, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no cached download either


def test_missing_inception_weights_offline_is_one_line(monkeypatch, tmp_path, tiny_pipeline, cli):
    _offline(monkeypatch, tmp_path)
    with pytest.raises(InputError, match="--fid-weights"):
        extractors.load_extractor("inception")
    code, out, err = cli("fid", tiny_pipeline, "--ref", "digits", "--samples", "4", "--steps", "2")
    assert code == 2 and out == ""
    assert err.startswith("flatcheck: error: Inception weights are not available offline") and "--fid-weights" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--features", "vgg"], "unknown --features"),
        (["--features", "digits-cnn", "--ref", "/no/such/dir"], "is not a file or folder"),
        (["--features", "digits-cnn", "--ref", "digits", "--fid-weights", "/no/such.pth"], "is not a file"),
        (["--samples", "1"], "--samples must be >= 2"),
        (["--bootstrap", "1"], "--bootstrap must be >= 2"),
        (
            ["--features", "inception", "--ref", "digits", "--fid-weights", "GARBAGE"],
            "neither torch-fidelity's Inception",
        ),
        ([], "--ref is required"),
    ],
)
def test_bad_input_exits_2(args, fragment, tiny_pipeline, cli, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    args = [str(garbage) if a == "GARBAGE" else a for a in args]
    code, out, err = cli("fid", tiny_pipeline, "--samples", "4", "--steps", "2", *args)
    assert code == 2, err
    assert fragment in err and err.startswith("flatcheck: error:") and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ CLI
def test_cli_bundled_digits_defaults_json(cli):
    code, out, err = cli("fid", "digits-base", "--samples", "12", "--steps", "2", "--bootstrap", "20", "--json", "-")
    assert code == 0, err
    payload = json.loads(out)
    r = payload["fid"]
    assert r["label"] == "FD (digits-cnn)" and r["features"] == "digits-cnn" and r["reference"]["spec"] == "digits"
    assert (
        r["num_samples"] == 12
        and 0 <= r["value"]["ci_low"] < r["value"]["ci_high"]
        and r["ci_method"] == "basic bootstrap"
    )
    assert r["kid"]["stderr"] == pytest.approx(r["kid_subset_std"] / r["kid_subsets"] ** 0.5)
    assert "12 samples" in r["warning"]
    code2, out2, _ = cli("fid", "digits-base", "--samples", "12", "--steps", "2", "--bootstrap", "20", "--json", "-")
    assert json.loads(out2)["fid"]["value"] == r["value"]  # same seed, same numbers


def test_cli_sample_dir_written_once_and_reused(tiny_pipeline, cli, tmp_path):
    d = tmp_path / "samples"
    args = (
        "fid",
        tiny_pipeline,
        "--ref",
        "digits",
        "--features",
        "digits-cnn",
        "--samples",
        "6",
        "--steps",
        "2",
        "--bootstrap",
        "10",
        "--sample-dir",
        d,
        "--json",
        "-",
    )
    code, out, err = cli(*args)
    assert code == 0, err
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["count"] == 6
    stamp = {p.name: p.stat().st_mtime_ns for p in d.glob("shard-*.npy")}
    code, out2, err = cli(*args)
    assert code == 0, err
    assert {p.name: p.stat().st_mtime_ns for p in d.glob("shard-*.npy")} == stamp  # nothing regenerated
    assert json.loads(out2)["fid"]["value"] == json.loads(out)["fid"]["value"]
    code, out3, err = cli(
        "fid",
        tiny_pipeline,
        "--ref",
        "digits",
        "--features",
        "digits-cnn",  # all 6 samples
        "--bootstrap",
        "10",
        "--samples-from",
        d,
        "--json",
        "-",
    )
    assert code == 0, err
    assert json.loads(out3)["fid"]["value"] == json.loads(out)["fid"]["value"]


def test_cli_table_says_fd_not_fid(cli, tmp_path):
    code, out, err = cli(
        "fid", "digits-base", "--samples", "8", "--steps", "2", "--bootstrap", "10", "--out", tmp_path / "o"
    )
    assert code == 0, err
    flat = " ".join(out.split())  # rich wraps lines
    assert "FD (digits-cnn)" in flat and flat.count("FID") == flat.count("not comparable with FID") == 1
    assert (tmp_path / "o" / "fid-samples.png").is_file() and (
        tmp_path / "o" / "samples-ddim-2" / "manifest.json"
    ).is_file()
