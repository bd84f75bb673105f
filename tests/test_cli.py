"""The command line as a user meets it: entry points, help texts, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import typer

from flatcheck.cli import app


def registered_commands() -> list[str]:
    return [c.name or c.callback.__name__ for c in app.registered_commands]


def test_python_dash_m_and_help():
    proc = subprocess.run([sys.executable, "-m", "flatcheck", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Exit codes" in proc.stdout
    for name in registered_commands():
        assert name in proc.stdout


def test_every_command_has_real_help(cli):
    names = registered_commands()
    assert "info" in names
    for name in names:
        code, out, err = cli(name, "--help")
        assert code == 0, err
        assert "--debug" in out
        if name not in ("card",):  # card reads a report: no model, no device
            assert "--device" in out and "--json" in out
        cmd = next(c for c in app.registered_commands if (c.name or c.callback.__name__) == name)
        doc = (cmd.callback.__doc__ or "").strip()
        assert len(doc) > 30, f"{name} needs a real help text"


def test_unknown_command_is_one_line(cli):
    code, out, err = cli("frobnicate")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "frobnicate" in err


def test_no_arguments_prints_help_and_exits_2(cli):
    code, out, err = cli()
    assert code == 2 and "Usage" in out + err


def test_debug_shows_the_traceback(cli, tmp_path):
    code, _, err = cli("info", tmp_path / "missing", "--debug")
    assert code == 2 and "Traceback" in err and "no such file or folder" in err


def test_every_option_has_help_and_no_command_takes_an_option_it_ignores():
    import click

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert (param.help or "").strip(), f"{name} {param.opts[0]} has no help"
    # info reads a checkpoint: it draws nothing at random and writes no files.
    info = {p.name for p in group.commands["info"].params}
    assert "seed" not in info and "out" not in info


def test_skip_takes_a_comma_separated_list(cli):
    code, out, err = cli("audit", "--quick", "--skip", "fid,quantize,exposure", "--dry-run", "--json", "-")
    assert code == 0, err
    assert {p["measure"] for p in json.loads(out)["phases"]} == {"sharpness"}
    code, out, err = cli("audit", "--quick", "--skip", "fid,bogus", "--dry-run")
    assert code == 2 and "--skip bogus: no such area" in err
