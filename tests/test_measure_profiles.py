"""Every measure command has the audit's profiles (--quick, the default, --full), and the bundled models'
Hessian eigenvalues converge at sharpness's default Lanczos settings (issue 27, item 7)."""

from __future__ import annotations

import json

import pytest

from flatcheck.auditing import PROFILE_SIZES, options_for
from flatcheck.measures import REGISTRY
from flatcheck.measures.sharpness.config import SharpnessConfig


def test_sharpness_quick_runs_the_audit_profile_and_given_options_win(cli, tiny_pipeline, tmp_path):
    out = tmp_path / "quick.json"
    code, _, err = cli(
        "sharpness", tiny_pipeline, "--quick", "--draws", "3", "--batch-size", "32", "--threads", "1", "--json", out
    )
    assert code == 0, err
    doc = json.loads(out.read_text())
    options, config = doc["options"], doc["sharpness"]["config"]
    assert options["profile"] == "quick"
    # The audit's quick sizes, not the command's defaults (128 probes, 128 samples x 50 steps)...
    quick = options_for("quick")
    for name in ("probes", "samples", "steps", "sampler"):
        assert options[name] == getattr(quick, name) == PROFILE_SIZES["quick"].get(name, getattr(quick, name))
    assert doc["bank"]["n"] == quick.probes == 64
    # ...the measure's own quick settings (Measure.profiles), where the command line did not give one...
    profile = REGISTRY["sharpness"].profiles["quick"]
    for name in ("lanczos_iters", "top_k", "hessian_probes", "hutchinson_draws", "landscape_grid", "buckets"):
        assert config[name] == profile[name], name
    assert config["radii"] == list(profile["radii"]) and config["norms"] == list(profile["norms"])
    assert doc["sharpness"]["hessian"]["eigen"]["block"] == profile["top_k"] == 1
    # ...and the options given win over the profile.
    assert config["draws"] == 3 != profile["draws"]
    assert options["batch_size"] == config["batch_size"] == 32


@pytest.mark.parametrize("command", ["sharpness", "exposure", "quantize", "fid"])
def test_every_measure_command_plans_its_profile(cli, command, tmp_path):
    """--dry-run plans the run the profile asks for (no weights are run): the plan records the profile."""
    out = tmp_path / "plan.json"
    for flag, profile in (("--quick", "quick"), (None, "default")):
        args = [command, "digits-base", "--dry-run", "--threads", "1", "--json", out] + ([flag] if flag else [])
        code, _, err = cli(*args)
        assert code in (0, 1), err
        assert json.loads(out.read_text())["options"]["profile"] == profile


def test_full_is_refused_on_a_cpu(cli):
    code, _, err = cli("quantize", "digits-base", "--full", "--device", "cpu")
    assert code == 2 and "--full" in err and "GPU" in err and len(err.strip().splitlines()) == 1


def test_the_bundled_models_converge_at_the_default_lanczos_settings(cli, tmp_path):
    """digits-sam is the slowest of the three (its top eigenvalues are the closest together), and seed 2 its
    slowest seed of 0-4 (39 HVPs; the old cap of 36 left it NOT converged): its top 3 must reach --tol within
    --lanczos-iters HVPs on the command's default bank (the counts of all three are in
    examples/evidence/sharpness.md). Only the Hessian runs, with the trace's fewest draws."""
    out = tmp_path / "sam.json"
    args = ["--measures", "hessian", "--hutchinson-draws", "2", "--seed", "2", "--threads", "1", "--json", out]
    code, _, err = cli("sharpness", "digits-sam", *args)
    assert code == 0, err
    doc = json.loads(out.read_text())
    config, eigen = doc["sharpness"]["config"], doc["sharpness"]["hessian"]["eigen"]
    defaults = SharpnessConfig()
    for name in ("top_k", "lanczos_iters", "lanczos_basis", "tol", "hessian_probes"):
        assert config[name] == getattr(defaults, name), name
    assert eigen["converged"], eigen
    assert eigen["bound"] <= defaults.tol * min(abs(v) for v in eigen["eigenvalues"])
    assert eigen["hvps"] <= defaults.lanczos_iters
