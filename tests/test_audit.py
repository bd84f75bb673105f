"""The audit: shared inputs computed once, profiles, compare == separate audits, the example gate config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flatcheck.errors import InputError
from tests.audit_fixtures import TINY_CLI, tiny_audit, tiny_options  # noqa: F401 - fixture

EXAMPLE_GATE = Path(__file__).resolve().parents[1] / "examples" / "gate" / "flatcheck.toml"


def test_samples_are_made_once_and_equal_plain_sampling(tiny_audit, tiny_pipeline):
    from flatcheck.auditing import generate_samples
    from flatcheck.core.checkpoint import load
    from flatcheck.core.denoiser import Denoiser

    report, doc = tiny_audit
    # With --data the exposure measure's own sampler run made the shared samples: no separate pass.
    assert "samples" not in doc["timings"]
    assert doc["quantize"]["samples"] == doc["samples"]["n"] == 4
    assert doc["fid"]["num_samples"] == 4
    fresh = generate_samples(Denoiser.from_checkpoint(load(str(tiny_pipeline))), tiny_options())
    assert torch.equal(report._samples, fresh)
    # FD of every quantized setting filled into the quantize result's slots, against the same reference.
    fp_fd = doc["quantize"]["full_precision"]["fid"]
    assert fp_fd == doc["fid"]["value"] == doc["exposure"]["runs"][0]["fid"]
    for s in doc["quantize"]["settings"]:
        assert s["fid_change"]["value"] == pytest.approx(s["fid"]["value"] - fp_fd["value"])


def test_verdict_lines_read_the_numbers(tiny_audit):
    """Each verdict's level is what its stated rule gives for the report's own numbers, and its line
    prints those numbers."""
    _, doc = tiny_audit
    v = {x["area"]: x for x in doc["verdicts"]}
    h = doc["sharpness"]["hessian"]
    eig, trace = h["eigen"], h["trace"]
    assert v["sharpness"]["status"] == "info"
    assert (
        f"top Hessian eigenvalue {eig['eigenvalues'][0]:.4g}{'' if eig['converged'] else ' (not converged)'}, "
        f"trace {trace['value']:.4g} ± {trace['stderr']:.2g}"
    ) in v["sharpness"]["line"]
    # quantize: good / fair / poor at 1% / 5% for the worst 8-bit setting's drift (10% / 30% without one)
    settings = doc["quantize"]["settings"]
    eight = [s for s in settings if (s["wbits"] or 16) >= 8 and (s["abits"] or 16) >= 8]
    judged = max(s["relative_mse"] for s in (eight or settings))
    lo, hi = (0.01, 0.05) if eight else (0.10, 0.30)
    assert v["quantize"]["status"] == ("good" if judged < lo else "fair" if judged < hi else "poor")
    for s in settings:
        assert f"{s['name']} drift {s['relative_mse']:.2%}" in v["quantize"]["line"]
        change = s["fid_change"]
        assert f"{s['name']} {change['value']:+.3g} ± {change['stderr']:.2g}" in v["quantize"]["line"]
    # exposure: good / fair / poor at |gap| 1% / 3% of the forward norm
    run = doc["exposure"]["runs"][0]
    rel = run["gap_relative"]
    assert v["exposure"]["status"] == ("good" if abs(rel) < 0.01 else "fair" if abs(rel) < 0.03 else "poor")
    assert f"eps-norm gap {rel:+.2%} of the forward norm over {run['steps']} steps" in v["exposure"]["line"]
    # fid: info, the FD with its basic bootstrap interval, and KID ± its standard error
    f = doc["fid"]
    fd, kid = f["value"], f["kid"]
    assert v["fid"]["status"] == "info"
    # the bias-corrected value beside the FD where the basic interval, built around it, excludes the FD
    inside = fd["ci_low"] <= fd["value"] <= fd["ci_high"]
    corrected = "" if inside else f" (bias-corrected {fd['bias_corrected']:.4g})"
    assert (
        f"{f['label']} {fd['value']:.4g}{corrected} [{fd['ci_low']:.4g}, {fd['ci_high']:.4g}] (95% basic bootstrap) vs "
        f"{f['reference']['spec']} ({f['num_samples']} samples)"
    ) in v["fid"]["line"]
    assert f"KID {kid['value']:.4g} ± {kid['stderr']:.2g} (± s.e. over {f['kid_subsets']} subsets)" in v["fid"]["line"]


def test_exposure_and_sharpness_verdict_levels():
    from types import SimpleNamespace as NS

    from flatcheck.core.stats import Estimate
    from flatcheck.measures.exposure import verdict as exposure_verdict
    from flatcheck.measures.sharpness import verdict as sharpness_verdict

    def exposure(rel):
        run = NS(
            gap_relative=rel, steps=20, scaling=[], gap_total=Estimate(1.0, 0.1), variance_error_mean=Estimate(0.0, 0.1)
        )
        return exposure_verdict(NS(runs=[run]))

    assert [exposure(r).status for r in (0.005, -0.009, 0.02, -0.029, 0.031, -0.5)] == [
        "good",
        "good",
        "fair",
        "fair",
        "poor",
        "poor",
    ]
    assert "+2.00% of the forward norm over 20 steps" in exposure(0.02).line
    eig = NS(eigenvalues=[12.5, 3.0], converged=False)
    hess = NS(eigen=eig, trace=Estimate(40.0, 2.0))
    line = sharpness_verdict(NS(hessian=hess, average=[], worst=[], landscape=None)).line
    assert line == "top Hessian eigenvalue 12.5 (not converged), trace 40 ± 2"


def test_quantize_verdict_thresholds():
    from types import SimpleNamespace as NS

    from flatcheck.core.stats import Estimate
    from flatcheck.measures.quantize import verdict as quantize_verdict

    def res(*pairs):
        return NS(
            settings=[
                NS(name=n, wbits=w, abits=a, relative_mse=r, probe_loss_change=Estimate(0.0, 0.0))
                for n, w, a, r in pairs
            ]
        )

    assert quantize_verdict(res(("W8A8", 8, 8, 0.005), ("W4A4", 4, 4, 0.5))).status == "good"
    assert quantize_verdict(res(("W8A8", 8, 8, 0.03))).status == "fair"
    assert quantize_verdict(res(("W8A8", 8, 8, 0.2))).status == "poor"
    assert quantize_verdict(res(("W4A4", 4, 4, 0.05))).status == "good"  # no 8-bit setting: looser scale


def test_profiles_and_option_errors():
    from flatcheck.auditing import options_for

    q, d, f = options_for("quick"), options_for("default"), options_for("full")
    assert q.samples < d.samples < f.samples == 50_000 and q.steps < d.steps
    assert options_for("quick", samples=10).samples == 10 and options_for("quick", samples=None).samples == q.samples
    for bad, msg in [
        ({"samples": 0}, ">= 1"),
        ({"skip": ("speed",)}, "no such area"),
        ({"probes": "8"}, "audit option .probes. must be int"),
        ({"colour": 1}, "unknown audit option"),
    ]:
        with pytest.raises(InputError, match=msg):
            options_for("quick", **bad)
    with pytest.raises(InputError, match="unknown profile"):
        options_for("fast")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--quick", "--full"], "exclude each other"),
        (["--full"], "needs a GPU"),
        (["--skip", "speed"], "no such area"),
        (["--samples", "0"], ">= 1"),
        (["--data", "/no/such/folder"], "does not exist"),
        (["--sampler", "nope"], "unknown sampler"),
    ],
)
def test_cli_audit_bad_input_is_one_line_exit_2(cli, tiny_pipeline, args, message):
    code, out, err = cli("audit", tiny_pipeline, "--device", "cpu", *args)
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_compare_shows_the_numbers_of_separate_audits(cli, tiny_pipeline, tmp_path):
    """compare A B == audit A, audit B (same bank: --data), and the table has their differences."""
    from diffusers import DDPMPipeline

    other = tmp_path / "other"
    pipe = DDPMPipeline.from_pretrained(str(tiny_pipeline))
    with torch.no_grad():
        for p in pipe.unet.parameters():
            p.mul_(1.05)
    pipe.save_pretrained(other)
    common = [*TINY_CLI, "--skip", "sharpness", "--device", "cpu"]
    code, out, err = cli("compare", tiny_pipeline, other, *common, "--json", "-")
    assert code == 0, err
    comp = json.loads(out)
    code, out, err = cli("audit", other, *common, "--json", "-")
    assert code == 0, err
    alone = json.loads(out)
    in_compare = comp["reports"][1]
    for area in ("exposure", "quantize", "fid"):
        assert _numbers(in_compare[area]) == _numbers(alone[area]), area
    assert in_compare["bank"] == alone["bank"]
    rows = {r["path"]: r for r in comp["rows"]}
    r = rows["quantize.settings.W4A4.sample_mse"]
    assert r["values"][1] == alone["quantize"]["settings"][1]["sample_mse"]["value"]
    assert r["diff"][0] == pytest.approx(r["values"][1] - r["values"][0])
    assert comp["models"] == [str(tiny_pipeline), str(other)]
    assert set(comp["verdicts"]) == {"sharpness", "exposure", "quantize", "fid"}


def _numbers(node):
    """Every number except wall-clock seconds (which differ run to run)."""
    from flatcheck.results import number_rows

    return {
        r.path: (r.value, r.stderr) for r in number_rows(node) if "seconds" not in r.path and "time_ratio" not in r.path
    }


@pytest.fixture(scope="module")
def degraded_base(tmp_path_factory):
    """digits-base with Gaussian noise of each tensor's own std added to every weight."""
    from diffusers import DDPMPipeline

    from flatcheck.core.checkpoint import bundled_root

    pipe = DDPMPipeline.from_pretrained(str(bundled_root() / "digits-base"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in pipe.unet.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=gen) * p.std())
    folder = tmp_path_factory.mktemp("degraded") / "digits-base-noisy"
    pipe.save_pretrained(folder)
    return folder


# Small enough for CI; the example config's thresholds hold at these sizes and at --quick.
GATE_SIZES = [
    "--probes",
    "16",
    "--samples",
    "8",
    "--steps",
    "10",
    "--batch-size",
    "16",
    "--skip",
    "sharpness",
    "--device",
    "cpu",
]


def test_example_gate_config_passes_on_the_bundled_model(cli):
    from flatcheck.core.checkpoint import bundled_models

    if "digits-base" not in bundled_models():
        pytest.skip("bundled digits-base not installed")
    code, out, err = cli("gate", "digits-base", "--config", EXAMPLE_GATE, *GATE_SIZES, "--json", "-")
    doc = json.loads(out)
    assert code == 0, [r for r in doc["gate"]["rows"] if not r["passed"]]
    assert doc["gate"]["passed"] and len(doc["gate"]["rows"]) >= 4


def test_example_gate_config_fails_on_a_degraded_checkpoint(cli, degraded_base):
    code, out, err = cli("gate", degraded_base, "--config", EXAMPLE_GATE, *GATE_SIZES)
    assert code == 1, err
    assert "FAIL" in out and "gate FAILED" in out
    doc_rows = out[out.index("gate FAILED") :]
    assert "bank.loss" in doc_rows and "fid.value" in doc_rows


def test_gate_on_a_report_relative_to_a_baseline_report(cli, tiny_audit, tmp_path):
    """--report + --baseline: no audit at all; relative rules in both directions; exit 1 lists the failing row."""
    _, doc = tiny_audit
    base = json.loads(json.dumps(doc))
    base["bank"]["loss"]["value"] = doc["bank"]["loss"]["value"] / 1.5  # the new report is 1.5x worse
    (tmp_path / "new.json").write_text(json.dumps(doc))
    (tmp_path / "base.json").write_text(json.dumps(base))
    cfg = tmp_path / "flatcheck.toml"
    cfg.write_text(
        '[gate]\nbaseline = "base.json"\n[[gate.rules]]\nmetric = "bank.loss"\nmax = 2.0\nrelative = "ratio"\n'
    )
    code, out, err = cli(
        "gate", "--report", tmp_path / "new.json", "--config", cfg, "--baseline", tmp_path / "base.json"
    )
    assert code == 0, out + err
    cfg.write_text('[[gate.rules]]\nmetric = "bank.loss"\nmax = 1.2\nrelative = "ratio"\n[gate]\n')
    cfg.write_text('[gate]\n[[gate.rules]]\nmetric = "bank.loss"\nmax = 1.2\nrelative = "ratio"\n')
    code, out, err = cli(
        "gate", "--report", tmp_path / "new.json", "--config", cfg, "--baseline", tmp_path / "base.json"
    )
    assert code == 1 and "FAIL" in out and "bank.loss" in out
    # A baseline audited with other options is refused rather than compared.
    base["options"]["samples"] = 99
    (tmp_path / "base.json").write_text(json.dumps(base))
    code, out, err = cli(
        "gate", "--report", tmp_path / "new.json", "--config", cfg, "--baseline", tmp_path / "base.json"
    )
    assert code == 2 and "other options (samples)" in err


def test_gate_holds_the_peak_memory_down_against_a_baseline(cli, tiny_audit, tmp_path):
    """environment.peak_memory.run_bytes is a gate path like any number: a run at twice the baseline's peak
    fails 1.5x."""
    _, doc = tiny_audit
    base = json.loads(json.dumps(doc))
    base["environment"]["peak_memory"]["run_bytes"] = doc["environment"]["peak_memory"]["run_bytes"] // 2
    (tmp_path / "new.json").write_text(json.dumps(doc))
    (tmp_path / "base.json").write_text(json.dumps(base))
    cfg = tmp_path / "flatcheck.toml"
    for bound, code_wanted in ((1.5, 1), (2.5, 0)):
        cfg.write_text(
            f'[gate]\n[[gate.rules]]\nmetric = "environment.peak_memory.run_bytes"\nmax = {bound}\nrelative = "ratio"\n'
        )
        code, out, err = cli(
            "gate", "--report", tmp_path / "new.json", "--config", cfg, "--baseline", tmp_path / "base.json"
        )
        assert code == code_wanted, out + err


@pytest.mark.parametrize(
    "config, message",
    [
        ('[gate]\n[[gate.rules]]\nmetric = "bank.loss"\nmaximum = 1\n', "unknown key"),
        ('[gate]\n[[gate.rules]]\nmetric = "bank.loss"\nmax = 1\nrelative = "ratio"\n', "relative rules"),
        (
            '[audit]\nprobes = "many"\n[gate]\n[[gate.rules]]\nmetric = "bank.loss"\nmax = 1\n',
            "audit option 'probes' must be int",
        ),
        ("[gate\n", "not valid TOML"),
    ],
)
def test_gate_config_errors_exit_2_before_auditing(cli, tiny_pipeline, tmp_path, config, message):
    cfg = tmp_path / "flatcheck.toml"
    cfg.write_text(config)
    code, out, err = cli("gate", tiny_pipeline, "--config", cfg, "--device", "cpu")
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_gate_metric_missing_from_the_report_is_exit_2(cli, tiny_audit, tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(tiny_audit[1]))
    cfg = tmp_path / "flatcheck.toml"
    cfg.write_text('[gate]\n[[gate.rules]]\nmetric = "quantize.settings.W2A2.sample_mse"\nmax = 1\n')
    code, out, err = cli("gate", "--report", tmp_path / "r.json", "--config", cfg)
    assert code == 2 and "names: W8A8, W4A4" in err


def test_data_free_the_shared_samples_are_sampled_once(tiny_pipeline):
    """Data-free, the bank is drawn from the shared samples and exposure's run (a) is those very samples:
    that run happens once, watched by exposure (before, the bank made them plainly and exposure sampled
    them again). Counted as sampler runs of the samples' size through the network."""
    from flatcheck.auditing import audit_checkpoint
    from flatcheck.core import sampling
    from flatcheck.core.checkpoint import load
    from flatcheck.results import to_jsonable

    runs = []
    original = sampling.sample

    def counted(denoiser, scheduler, steps, n, seed, *args, **kwargs):
        runs.append((steps, n, seed, kwargs.get("x_init") is None, bool(kwargs.get("hooks"))))
        return original(denoiser, scheduler, steps, n, seed, *args, **kwargs)

    import flatcheck.core.inputs as inputs_mod
    import flatcheck.measures.exposure.measure as exposure_mod

    opts = tiny_options(data="none", skip=("quantize", "sharpness", "fid"))
    with pytest.MonkeyPatch.context() as mp:
        for mod in (sampling, inputs_mod, exposure_mod):
            mp.setattr(mod, "sample", counted)
        doc = to_jsonable(audit_checkpoint(load(str(tiny_pipeline)), opts))
    from_noise_with_seed0 = [r for r in runs if r[:3] == (2, 4, 0) and r[3]]
    # run (a) = the shared samples, watched; nothing else starts from that noise (--quick fits the eps
    # scaling without the rerun that checks it)
    assert from_noise_with_seed0 == [(2, 4, 0, True, True)]
    assert doc["exposure"]["runs"][0]["scaling"][0]["gap_total"] is None
    assert "samples" not in doc["timings"] and doc["bank"]["source"].startswith("data-free")
    assert doc["exposure"]["reference"] == doc["bank"]["source"]
