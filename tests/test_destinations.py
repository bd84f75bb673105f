"""Every place a command writes is checked before any work (issue 26, item 1): one line naming the option
and the path, exit 2, nothing created by the check, and no torch imported for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_checkpoint import one_line_error

ROOT = Path(__file__).resolve().parents[1]


def tree(folder: Path) -> dict[str, int]:
    """Every path under `folder` with its size (folders: -1): what a command left behind."""
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*")}


@pytest.fixture
def places(tmp_path, monkeypatch):
    """tmp_path as the working folder, holding a regular file `afile` and a folder `adir`."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return tmp_path


CASES = [
    # (command line, what the one line must say)
    (["audit", "--quick", "--json", "afile/x.json"], "--json afile/x.json: 'afile' is a file, not a folder"),
    (["audit", "--quick", "--out", "afile/deeper/out"], "--out afile/deeper/out: 'afile' is a file, not a folder"),
    (["audit", "--quick", "--markdown", "adir"], "--markdown adir: 'adir' is a folder; give a file path"),
    (["audit", "--quick", "--html", "afile/r.html"], "--html afile/r.html: 'afile' is a file"),
    (["audit", "--quick", "--json", "/proc/flatcheck/r.json"], "--json /proc/flatcheck/r.json: cannot create files"),
    (["audit", "--quick", "--out", "/proc/flatcheck-out"], "--out /proc/flatcheck-out: cannot create files"),
    (["audit", "--quick", "--markdown", "-"], "--markdown -: only --json writes to stdout"),
    (["audit", "--quick", "--out", "-"], "--out -: only --json writes to stdout"),
    (["audit", "--quick", "--out", "afile"], "--out afile: 'afile' is a file, not a folder"),
    (["gate", "--out", "afile/g"], "--out afile/g: 'afile' is a file"),
    (["sharpness", "--out", "afile/s"], "--out afile/s: 'afile' is a file"),
    (["exposure", "--json", "adir"], "--json adir: 'adir' is a folder"),
    (["quantize", "--out", "/proc/q"], "--out /proc/q: cannot create files"),
    (["fid", "--sample-dir", "afile"], "--sample-dir afile: 'afile' is a file, not a folder"),
    (["fid", "--out", "afile/f"], "--out afile/f: 'afile' is a file"),
    (["sample", "--out", "afile/s"], "--out afile/s: 'afile' is a file"),
    (["compare", "digits-base", "digits-sam", "--markdown", "afile/c.md"], "--markdown afile/c.md: 'afile' is a file"),
    (["rank", "a.json", "b.json", "c.json", "--reports", "--plot", "afile/p.png"], "--plot afile/p.png: 'afile'"),
    (["rank", "a.json", "b.json", "c.json", "--reports", "--markdown", "adir"], "--markdown adir: 'adir' is a folder"),
    (["plan", "--json", "afile/p.json"], "--json afile/p.json: 'afile' is a file"),
    (["info", "--json", "/proc/i.json"], "--json /proc/i.json: cannot create files in '/proc'"),
    (["audit", "--quick", "--model-card", "adir"], "--model-card adir: 'adir' is a folder; give a file path"),
    (["audit", "--quick", "--model-card", "/proc/README.md"], "--model-card /proc/README.md: cannot create files"),
    (["card", "r.json", "afile/README.md"], "CARD afile/README.md: 'afile' is a file, not a folder"),
]


@pytest.mark.parametrize("args, says", CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in CASES])
def test_a_place_that_cannot_be_written_is_one_line_before_any_work(places, cli, monkeypatch, args, says):
    # Loading a model is work: the check must come first.
    monkeypatch.setattr("flatcheck.core.checkpoint.locate", lambda *a, **k: pytest.fail("a model was located"))
    before = tree(places)
    code, out, err = cli(*args)
    assert code == 2 and says in one_line_error(err), err
    assert tree(places) == before  # the check created nothing, not even its probe


def test_files_inside_the_out_folder_must_have_the_kind_the_command_writes(places, cli):
    (places / "out" / "audit.json").mkdir(parents=True)
    code, _, err = cli("audit", "--quick", "--out", "out")
    assert code == 2 and "'out/audit.json' is a folder, but the command writes a file there" in one_line_error(err)
    (places / "out2").mkdir()
    (places / "out2" / "plots").write_text("not a folder")
    code, _, err = cli("audit", "--quick", "--out", "out2")
    assert code == 2 and "'out2/plots' is a file, but the command writes a folder there" in one_line_error(err)
    (places / "out3" / "store").mkdir(parents=True)
    (places / "out3" / "store" / "x").write_text("")
    (places / "out3" / "samples.npz").mkdir()
    code, _, err = cli("sample", "--out", "out3")
    assert code == 2 and "'out3/samples.npz' is a folder" in one_line_error(err)
    (places / "g" / "gate.md").mkdir(parents=True)
    code, _, err = cli("gate", "--out", "g")
    assert code == 2 and "'g/gate.md' is a folder" in one_line_error(err)


@pytest.mark.parametrize(
    "summary, says",
    [
        ("adir", "$GITHUB_STEP_SUMMARY adir: 'adir' is a folder, not a file"),
        ("missing/summary.md", "its folder 'missing' does not exist"),
        ("/proc/summary.md", "$GITHUB_STEP_SUMMARY /proc/summary.md: cannot create files in '/proc'"),
    ],
)
def test_the_step_summary_is_checked_by_the_commands_that_append_to_it(places, cli, monkeypatch, summary, says):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", summary)
    before = tree(places)
    for args in (["audit", "--quick"], ["gate"], ["compare", "a", "b"], ["rank", "a", "b", "c", "--reports"]):
        code, _, err = cli(*args)
        assert code == 2 and says in one_line_error(err), (args, err)
    # A measure command does not write the summary: its failure is about something else (no such model).
    code, _, err = cli("sharpness", "no-such-model")
    assert code == 2 and "no such file or folder" in one_line_error(err)
    assert tree(places) == before


def test_an_existing_summary_file_is_left_as_it_was(places, cli, monkeypatch):
    summary = places / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, _, err = cli("audit", "no-such-model")
    assert code == 2 and "no such file or folder" in one_line_error(err)
    assert summary.read_text() == "earlier step\n"


def test_places_that_can_be_written_pass_and_nothing_is_created(places, cli):
    """Folders the run would make are left to the run: a run that fails later (no such model) leaves none."""
    before = tree(places)
    code, _, err = cli(
        "audit",
        "no-such-model",
        "--json",
        "new/deep/r.json",
        "--out",
        "new/out",
        "--markdown",
        "adir/r.md",
        "--html",
        "afile.html",
    )
    assert code == 2 and "no such file or folder" in one_line_error(err)
    assert tree(places) == before


def test_json_to_stdout_is_allowed(cli):
    code, out, err = cli("info", "digits-base", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["schema_version"]


def test_a_failed_check_of_one_place_creates_none_of_the_others(places, cli):
    before = tree(places)
    code, _, err = cli("audit", "--quick", "--out", "new/out", "--json", "afile/r.json")
    assert code == 2 and "--json afile/r.json" in one_line_error(err)
    assert tree(places) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits (the /proc cases stand in)")
def test_a_folder_without_write_permission(places, cli):
    locked = places / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = cli("audit", "--quick", "--json", "locked/r.json")
        assert code == 2 and "--json locked/r.json: cannot create files in 'locked' (Permission denied)" in (
            one_line_error(err)
        )
    finally:
        locked.chmod(0o700)


def test_the_checks_need_no_torch(tmp_path):
    """In a fresh process: each refusal comes before torch is imported (it would cost seconds)."""
    (tmp_path / "afile").write_text("x")
    script = f"""
import os, sys
os.chdir({str(tmp_path)!r})
from flatcheck.cli import run
codes = [
    run(["audit", "--quick", "--json", "afile/x.json"]),
    run(["gate", "--out", "afile/o"]),
    run(["fid", "--sample-dir", "afile"]),
    run(["info", "--json", "/proc/i.json"]),
]
print(codes, "torch" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == "[2, 2, 2, 2] False", done.stdout + done.stderr
