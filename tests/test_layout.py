"""The house rules of the package layout, checked on the source (README, Development):

- no import cycle between flatcheck's modules (lazy imports inside functions count too);
- the engine (flatcheck.core) imports no measure, and nothing above it;
- outside measures/<name>/, a measure is reached only through its package (the REGISTRY entry
  and what its __init__ exports) and its torch-free config module, never its internals;
- every command's --help loads without torch (so it is fast), and so do `info` and a bad path's error.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "flatcheck"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every flatcheck module `path` imports, at any depth of the file (relative imports resolved)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("flatcheck"):
                found.add(target)
                for alias in node.names:  # `from . import x` may name a module
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("flatcheck")}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {t for t in imports(p) if t in modules and t != m} for m, p in modules.items()}


def test_no_import_cycle():
    g = graph()
    # Parents import their children's names through __init__: a package and its own modules are one node.
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m) :] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for t in sorted(g[m]):
            if not (t.startswith(m + ".") or m.startswith(t + ".")):
                visit(t)
        stack.pop()

    for m in sorted(g):
        visit(m)
    assert not cycles, cycles[:3]


def test_the_engine_imports_no_measure_and_nothing_above_it():
    above = (
        "flatcheck.measures",
        "flatcheck.auditing",
        "flatcheck.api",
        "flatcheck.compare",
        "flatcheck.gate",
        "flatcheck.report",
        "flatcheck.results",
        "flatcheck.commands",
        "flatcheck.cli",
    )
    bad = {
        m: sorted(t for t in ts if t.startswith(above)) for m, ts in graph().items() if m.startswith("flatcheck.core")
    }
    assert not {m: t for m, t in bad.items() if t}


def test_measures_are_reached_only_through_their_package_and_config():
    from flatcheck.measures import REGISTRY

    bad = []
    for m, targets in graph().items():
        for name in REGISTRY:
            home = f"flatcheck.measures.{name}"
            if m == home or m.startswith(home + "."):
                continue
            for t in targets:
                if t.startswith(home + ".") and t != f"{home}.config":
                    bad.append(f"{m} -> {t}")
    assert not bad, bad


def test_help_does_not_import_torch():
    code = (
        "import sys; from flatcheck.cli import run; "
        "[run([c, '--help']) for c in ('info', 'audit', 'compare', 'rank', 'gate', 'sharpness', 'exposure', "
        "'quantize', 'fid', 'card')]; sys.stderr.write('torch' if 'torch' in sys.modules else 'no torch')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stderr.strip().endswith("no torch"), proc.stderr[-500:]


def test_info_and_bad_paths_do_not_import_torch():
    """`info` and a bad MODEL, --data or --ref of any running command fail (or answer) before torch is imported."""
    runs = [
        ["info", "digits-sam"],
        ["sharpness", "/no/such/model"],
        ["exposure", "/no/such/model"],
        ["quantize", "/no/such/model"],
        ["fid", "/no/such/model"],
        ["audit", "/no/such/model", "--quick"],
        ["plan", "/no/such/model"],
        ["sample", "/no/such/model", "--out", "/no/such/out"],
        ["compare", "digits-base", "/no/such/model"],
        ["gate", "/no/such/model", "--config", "examples/gate/flatcheck.toml"],
        ["sharpness", "digits-sam", "--data", "/no/such/images"],
        ["sharpness", "digits-sam", "--data", "images.jpg"],
        ["fid", "digits-sam", "--ref", "/no/such/ref.npz"],
        ["quantize", "digits-sam", "--ref", "./no-such-folder"],
        ["sharpness", "digits-sam", "--threads", "0"],
        ["sharpness", "digits-sam", "--quick", "--full"],
    ]
    code = (
        "import sys; from flatcheck.cli import run; "
        f"codes = [run(a) for a in {runs!r}]; "
        "sys.stderr.write(repr(codes) + ('torch' if 'torch' in sys.modules else 'no torch'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PACKAGE.parent)
    tail = proc.stderr.strip().splitlines()[-1]
    assert tail.endswith("no torch"), proc.stderr[-1000:]
    assert tail.startswith(repr([0] + [2] * (len(runs) - 1))), proc.stderr[-2000:]


def _diffusers_class_names() -> set[str]:
    """Every denoiser and pipeline class diffusers exports (from its lazy import table: no torch needed)."""
    from flatcheck.core import diffusers_source as source

    names = source.exported_names() or {}
    return {n for n in names if n.endswith("Pipeline") and n != "DiffusionPipeline"} | {
        n for n in names if n.startswith(("UNet", "I2VGenXLUNet")) or (n.endswith("Model") and "Transformer" in n)
    }


def _named_classes(path: Path, classes: set[str]) -> set[str]:
    """Class names a module spells as a string or an identifier (docstrings and comments are prose: they may)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found |= {c for c in classes if c in node.value}
        elif isinstance(node, ast.Name) and node.id in classes:
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in classes:
            found.add(node.attr)
    return found


def test_no_module_outside_the_families_wing_names_a_denoiser_or_pipeline_class():
    """A family's knowledge lives in its file (flatcheck/families/); the engine and the measures ask it."""
    classes = _diffusers_class_names()
    assert {
        "UNet2DConditionModel",
        "FluxTransformer2DModel",
        "StableDiffusionPipeline",
        "WanTransformer3DModel",
    } <= classes
    wing = PACKAGE / "families"
    bad = {
        str(p.relative_to(PACKAGE)): sorted(found)
        for p in PACKAGE.rglob("*.py")
        if wing not in p.parents and (found := _named_classes(p, classes))
    }
    assert not bad, bad


def test_the_layout_check_sees_a_class_name(tmp_path):
    """The check above can fail: a string naming a class is found, a docstring naming it is not."""
    module = tmp_path / "m.py"
    module.write_text('"""Flux and FluxTransformer2DModel in prose."""\nx = "FluxPipeline"\n')
    assert _named_classes(module, {"FluxPipeline", "FluxTransformer2DModel"}) == {"FluxPipeline"}
