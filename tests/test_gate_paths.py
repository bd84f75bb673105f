"""Every gate path the project shows a user (README, examples, docstrings, error messages) exists in
a real report: a user who copies one into flatcheck.toml gets a number, not an error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flatcheck.errors import InputError
from tests.audit_fixtures import tiny_audit  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
PATH = re.compile(r"[\"'`]((?:bank|sharpness|exposure|quantize|fid)(?:\.[A-Za-z0-9_-]+|\[\d+\])+)[\"'`]")
FILES = ("*.png", "*.npz", "*.json", "*.md", "*.html")  # names like `exposure.png` are files, not paths


def shown_paths() -> dict[str, list[str]]:
    """path -> where it is shown."""
    sources = [
        ROOT / "README.md",
        *ROOT.glob("examples/**/*.md"),
        *ROOT.glob("examples/**/*.toml"),
        *ROOT.glob("examples/**/*.yml"),
        *(ROOT / "flatcheck").rglob("*.py"),
    ]
    found: dict[str, list[str]] = {}
    for f in sources:
        for m in PATH.finditer(f.read_text(encoding="utf-8")):
            path = m.group(1)
            if not any(Path(path).match(pattern) for pattern in FILES):
                found.setdefault(path, []).append(str(f.relative_to(ROOT)))
    from flatcheck.gate import EXAMPLE_PATH

    found.setdefault(EXAMPLE_PATH, []).append("flatcheck/gate.py (error messages)")
    return found


def test_the_docs_show_paths_at_all():
    paths = shown_paths()
    assert {"quantize.settings.W8A8.relative_mse", "sharpness.hessian.eigen.eigenvalues.0", "bank.loss"} <= set(paths)


@pytest.mark.parametrize("path", sorted(shown_paths()))
def test_every_shown_path_resolves_in_a_real_report(tiny_audit, path):
    from flatcheck.gate import lookup

    _, doc = tiny_audit
    value, _ = lookup(doc, path)  # InputError (the test fails) when the report has no such number
    assert value is not None, f"{path} is null in the report"


# --------------------------------------------------------------------------- paths known before the run (issue 26, 2)
def number_paths(doc: dict) -> set[str]:
    """Every number of a report as a gate path (list items by index), curves and long lists included."""
    from flatcheck.results import all_numbers

    return {re.sub(r"\[(\d+)\]", r".\1", p).lstrip(".") for p, _ in all_numbers(doc)}


# Options that make the report's rarer parts: both norms, per-block average case, a 2-D landscape, two step
# counts with the linear scaling checked by reruns, a per-layer scan; FD skipped.
WIDE = dict(
    skip=("fid",),
    sharpness=dict(
        norms=("adaptive", "absolute"),
        radii=(0.01,),
        worst_radii=(1e-4,),
        draws=2,
        ascent_steps=2,
        top_k=2,
        lanczos_iters=4,
        hessian_probes=4,
        hutchinson_draws=2,
        landscape_probes=4,
        landscape_points=3,
        landscape_grid=3,
        buckets=2,
        block_average=True,
    ),
    exposure=dict(steps=(2, 3), linear_scale=True, check_scaling=True),
    quantize=dict(settings=["W8A8"], calib_samples=2, sensitivity_samples=2, sensitivity_steps=2),
)


@pytest.fixture(scope="module")
def wide_audit(tiny_pipeline):
    """(options, JSON document) of the tiny pipeline audited with WIDE."""
    from flatcheck.auditing import audit_checkpoint
    from flatcheck.core.checkpoint import load
    from flatcheck.results import to_jsonable

    from .audit_fixtures import TINY, tiny_options

    opts = tiny_options(**{**WIDE, "sharpness": {**TINY["sharpness"], **WIDE["sharpness"]}})
    return opts, to_jsonable(audit_checkpoint(load(str(tiny_pipeline)), opts))


def reports(tiny_audit, wide_audit):
    from .audit_fixtures import tiny_options

    return [("tiny", tiny_options(), tiny_audit[1]), ("wide", *wide_audit)]


def test_every_number_of_real_reports_is_a_path_known_before_the_run(tiny_audit, wide_audit):
    """The schema lists every key a report has and the options say every list item: no false refusal."""
    from flatcheck.auditing import report_paths
    from flatcheck.gate import check_metric

    for label, opts, doc in reports(tiny_audit, wide_audit):
        produced = report_paths(opts)
        paths = number_paths(doc)
        assert len(paths) > 300
        refused = []
        for path in sorted(paths):
            try:
                check_metric(path, produced)
            except InputError as exc:
                refused.append(str(exc))
        assert not refused, (label, refused[:5])


def nodes(doc, pattern: str):
    """(path, node) of every place of `doc` that a report_paths pattern names ('*': any list item or map key)."""
    found = [("", doc)]
    for key in pattern.split("."):
        nxt = []
        for path, node in found:
            if isinstance(node, list):
                pairs = enumerate(node) if key == "*" else ()
            elif isinstance(node, dict):
                pairs = node.items() if key == "*" else [(key, node[key])] if key in node else []
            else:
                pairs = ()
            nxt += [(f"{path}.{k}".lstrip("."), v) for k, v in pairs]
        found = nxt
    return found


def test_what_the_options_say_a_run_produces_is_what_it_produced(tiny_audit, wide_audit):
    """Each place report_paths names (items by name, at most so many, or empty) holds that in real reports."""
    from flatcheck.auditing import report_paths
    from flatcheck.results import item_name_key

    checked = 0
    for label, opts, doc in reports(tiny_audit, wide_audit):
        for pattern, items in report_paths(opts).items():
            for path, node in nodes(doc, pattern):
                checked += 1
                where = (label, path)
                if items.absent:
                    assert node in (None, [], {}), where
                elif items.names is not None:
                    if isinstance(node, dict):
                        assert set(node) <= set(items.names), where
                    else:
                        key = item_name_key(node)
                        assert key and [item[key] for item in node] == list(items.names), where
                elif items.count is not None:
                    assert len(node) <= items.count, where
    assert checked > 50


@pytest.mark.parametrize(
    "path, options, says",
    [
        ("quantize.settings.W4A4.relative_mes", {}, "no 'relative_mes' in 'quantize.settings.W4A4' (closest: "),
        ("quantize.settings.W6A6.relative_mse", {}, "no 'W6A6' in 'quantize.settings' in a run with these options"),
        ("quantize.settings.2.sample_mse", {}, "'quantize.settings' has 2 items in a run with these options"),
        ("sharpness.hessian.eigen.eigenvalues.3", {}, "has 1 item in a run with these options (top_k = 1)"),
        ("sharpness.hessian.trace.value", {"sharpness": {"measures": ["avg"]}}, "sharpness.measures has no hessian"),
        ("fid.value", {"skip": ("fid",)}, "'fid' is empty in a run with these options: skipped in this run"),
        ("exposure.runs.1.gap_relative", {}, "'exposure.runs' has 1 item in a run with these options (steps = 10)"),
        ("exposure.runs.0.scaling.linear.b", {}, "no 'linear' in 'exposure.runs.0.scaling'"),
        ("exposure.runs.0.scaling.constant.gap_total", {}, "check_scaling = false"),
        ("sharpness.average.absolute.points.0.relative", {}, "no 'absolute' in 'sharpness.average'"),
        ("sharpness.landscape.surface.0.0", {}, "landscape_grid = 0"),
        ("quantize.sensitivity.0.sample_mse", {}, "sensitivity_samples = 0"),
        ("bank.loss", {"skip": ("sharpness", "exposure", "quantize")}, "no measure of this run uses the probe bank"),
        ("bank.los", {}, "no 'los' in 'bank' (closest: bank.loss"),
        ("sharpnes.loss", {}, "no 'sharpnes' in 'report' (closest: sharpness.loss"),
        ("quantize.settings.W4A4", {}, "is a table, not a number (closest: quantize.settings.W4A4."),
        ("sharpness.hessian.eigen.eigenvalues", {}, "is a list, not a number: add an index"),
        ("fid.label", {}, "'fid.label' is text, not a number"),
        ("verdicts.0.status", {}, "is text, not a number"),
        ("sharpness.weight_norm.max", {}, "'sharpness.weight_norm' is a number: nothing is under it"),
        ("sharpness.loss.median", {}, "no 'median' in 'sharpness.loss'"),
    ],
)
def test_a_path_a_run_with_these_options_cannot_have_is_refused(path, options, says):
    from flatcheck.auditing import options_for, report_paths
    from flatcheck.gate import check_metric

    produced = report_paths(options_for("quick", **options))
    with pytest.raises(InputError) as exc:
        check_metric(path, produced)
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_the_closest_paths_offered_are_valid(tiny_audit):
    """A refusal's suggestions are paths the gate accepts, and they hold numbers in a real report."""
    from flatcheck.auditing import report_paths
    from flatcheck.gate import check_metric, lookup

    from .audit_fixtures import tiny_options

    produced = report_paths(tiny_options())
    with pytest.raises(InputError) as exc:
        check_metric("quantize.settings.W6A6.relative_mse", produced)
    closest = str(exc.value).split("(closest: ")[1].rstrip(")").split(", ")
    assert closest == ["quantize.settings.W8A8.relative_mse", "quantize.settings.W4A4.relative_mse"]
    for path in closest:
        check_metric(path, produced)
        assert lookup(tiny_audit[1], path)[0] is not None


@pytest.mark.parametrize("path", sorted(shown_paths()))
def test_every_shown_path_is_accepted_before_a_run(path):
    """What the docs show passes the pre-run check with the options of the audit that produced it (quick)."""
    from flatcheck.auditing import options_for, report_paths
    from flatcheck.gate import check_metric

    check_metric(path, report_paths(options_for("quick")))


# --------------------------------------------------------------------------- the gate command, before the audit
@pytest.fixture
def no_model(monkeypatch):
    """Loading any model fails the test: what is checked here is checked before the audit."""
    monkeypatch.setattr("flatcheck.core.checkpoint.load", lambda *a, **k: pytest.fail("a model was loaded"))


def gate_config(tmp_path, text: str) -> Path:
    cfg = tmp_path / "flatcheck.toml"
    cfg.write_text(text)
    return cfg


RULE = '[[gate.rules]]\nmetric = "{metric}"\nmax = 1\n'


@pytest.mark.parametrize(
    "config, says",
    [
        ('[audit]\nprofile = "quick"\n' + RULE.format(metric="quantize.settings.W6A6.relative_mse"), "no 'W6A6'"),
        ('[audit]\nskip = ["fid"]\n' + RULE.format(metric="fid.value"), "'fid' is empty in a run with these options"),
        (
            '[audit.sharpness]\nmeasures = ["avg"]\n' + RULE.format(metric="sharpness.hessian.trace"),
            "sharpness.measures has no hessian",
        ),
        ("[audit.sharpness]\nradii = [0.1, -1]\n" + RULE.format(metric="bank.loss"), "[audit] sharpness.radii must be"),
        ("[audit.quantize]\nsettings = ['W3A9x']\n" + RULE.format(metric="bank.loss"), "[audit] "),
        ("[audit.exposure]\nsteps = 3\n" + RULE.format(metric="bank.loss"), "[audit] exposure.steps must be a list"),
        ("[audit]\nskip = 3\n" + RULE.format(metric="bank.loss"), "[audit] audit option 'skip' must be a list"),
        ("[audit]\nprofile = 'fast'\n" + RULE.format(metric="bank.loss"), "[audit] unknown profile 'fast'"),
        ("[audit]\nsharpness = 3\n" + RULE.format(metric="bank.loss"), "must be a table of sharpness options"),
        ('[[gate.rules]]\nmetric = "bank.loss"\nmax = 0\nrelative = "ratio"\n', "a ratio threshold must be > 0"),
        (
            '[[gate.rules]]\nmetric = "bank.loss"\nmax = 0.1\n[[gate.rules]]\nmetric = "bank.loss"\nmin = 0.2\n',
            "rules 1 and 2 on 'bank.loss' can never both hold (>= 0.2 and <= 0.1)",
        ),
    ],
)
def test_gate_config_mistakes_are_one_line_before_the_audit(cli, tmp_path, no_model, config, says):
    cfg = gate_config(tmp_path, config)
    code, out, err = cli("gate", "digits-base", "--config", cfg)
    assert code == 2 and says in err and err.count("\n") == 1, err
    assert str(cfg) in err  # the line names the file


def test_audit_and_plan_check_their_config_tables_before_loading(cli, tmp_path, no_model):
    cfg = gate_config(tmp_path, "[audit.sharpness]\ntop_k = 0\n")
    for command in (["audit"], ["audit", "--dry-run"], ["plan"]):
        code, out, err = cli(*command, "digits-base", "--config", cfg)
        assert code == 2 and f"{cfg}: [audit] sharpness.top_k must be >= 1" in err and err.count("\n") == 1, err


def test_a_baseline_report_is_read_before_the_audit(cli, tiny_audit, tmp_path, no_model):
    """A relative rule's number missing from the baseline report, or a baseline audited with other options,
    is known before the audit: exit 2, one line, no model loaded."""
    from .audit_fixtures import TINY_CLI

    base = tmp_path / "base.json"
    doc = json.loads(json.dumps(tiny_audit[1]))
    doc["fid"] = None
    base.write_text(json.dumps(doc))
    cfg = gate_config(tmp_path, '[[gate.rules]]\nmetric = "fid.value"\nmax = 1.5\nrelative = "ratio"\n')
    code, out, err = cli("gate", "digits-base", "--config", cfg, "--baseline", base, *TINY_CLI)
    assert code == 2 and f"baseline {base}: metric 'fid.value'" in err and err.count("\n") == 1, err
    cfg = gate_config(tmp_path, '[[gate.rules]]\nmetric = "bank.loss"\nmax = 1.5\nrelative = "ratio"\n')
    code, out, err = cli("gate", "digits-base", "--config", cfg, "--baseline", base, *TINY_CLI)
    assert code == 2 and "was audited with other options" in err and err.count("\n") == 1, err


def test_the_baseline_options_known_before_the_run_are_those_the_report_records(tiny_pipeline, tiny_audit):
    """What gate compares with a baseline before auditing (located, not loaded) is what the report records."""
    from flatcheck.auditing import options_document, resolve_for
    from flatcheck.core.checkpoint import locate

    from .audit_fixtures import tiny_options

    assert options_document(resolve_for(locate(str(tiny_pipeline)), tiny_options())) == tiny_audit[1]["options"]


def test_gate_config_checks_need_no_torch(tmp_path):
    """In a fresh process, a config mistake is found before torch is imported."""
    cfg = gate_config(
        tmp_path, '[audit]\nprofile = "quick"\n' + RULE.format(metric="quantize.settings.W6A6.sample_mse")
    )
    (tmp_path / "audit").mkdir()
    bad = gate_config(tmp_path / "audit", "[audit]\nprobes = 'many'\n")
    script = f"""
import sys
from flatcheck.cli import run
codes = [run(["gate", "digits-base", "--config", {str(cfg)!r}]), run(["audit", "--config", {str(bad)!r}])]
print(codes, "torch" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == "[2, 2] False", done.stdout + done.stderr
