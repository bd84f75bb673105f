"""examples/gate/github-workflow.yml: it parses, and it installs flatcheck from the repository, not from a
package index that does not serve it (issue 27, item 5)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

WORKFLOW = Path(__file__).resolve().parents[1] / "examples" / "gate" / "github-workflow.yml"
# A requirement that names flatcheck by name and version only: pip would look for it on an index.
BY_NAME = re.compile(r"^flatcheck(\[[^\]]*\])?\s*([<>=!~].*)?$", re.IGNORECASE)


def run_commands(text: str) -> list[str]:
    """The `run:` commands of every step: through PyYAML when it is importable; otherwise read by
    indentation (a `run:` value and the lines indented below it), enough for this file."""
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        doc = yaml.safe_load(text)
        return [step["run"] for job in doc["jobs"].values() for step in job["steps"] if "run" in step]
    commands, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(?:- )?run:\s*(.*)$", line)
        if not m:
            continue
        indent, parts = len(m.group(1)), [] if m.group(2) in (">", "|", ">-", "|-") else [m.group(2)]
        for nxt in lines[i + 1 :]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            parts.append(nxt.strip())
        commands.append(" ".join(p for p in parts if p))
    return commands


def registry_installs(command: str) -> list[str]:
    """The requirements of a `pip install` in command that name flatcheck without a URL or a path."""
    found = []
    for part in re.split(r"&&|;|\n", command):
        words = shlex.split(part, comments=True)
        if "install" not in words or not any(w in ("pip", "pip3") or w.endswith("/pip") for w in words):
            continue
        found += [w for w in words[words.index("install") + 1 :] if BY_NAME.match(w.strip())]
    return found


def test_workflow_parses_and_installs_flatcheck_from_the_repository():
    text = WORKFLOW.read_text()
    assert "\t" not in text  # YAML forbids tabs in indentation
    commands = run_commands(text)
    assert any("flatcheck gate" in c for c in commands), commands
    installs = [c for c in commands if "pip install" in c]
    assert installs, "the workflow installs nothing"
    assert not [r for c in installs for r in registry_installs(c)], installs
    assert any("git+https://" in c or re.search(r"pip install (-e )?\.(\s|$)", c) for c in installs), installs


def test_registry_install_check_can_fail():
    assert registry_installs("pip install flatcheck") == ["flatcheck"]
    assert registry_installs("python -m pip install -U 'flatcheck[rgb]>=0.1'") == ["flatcheck[rgb]>=0.1"]
    assert registry_installs('pip install torch && pip install "flatcheck==0.2.0"') == ["flatcheck==0.2.0"]
    assert registry_installs('pip install "flatcheck @ git+https://github.com/OWNER/flatcheck@v0.1.0"') == []
    assert registry_installs("pip install .") == []
    assert registry_installs("pip install -e '.[test]'") == []


def test_run_commands_without_yaml_read_the_same_commands(monkeypatch):
    """The fallback reader (no PyYAML) finds the same commands as PyYAML, up to folding."""
    import builtins

    real_import = builtins.__import__

    def no_yaml(name, *args, **kwargs):
        if name == "yaml":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    text = WORKFLOW.read_text()
    with_yaml = run_commands(text)
    monkeypatch.setattr(builtins, "__import__", no_yaml)
    without = run_commands(text)
    assert [" ".join(c.split()) for c in without] == [" ".join(c.split()) for c in with_yaml]
