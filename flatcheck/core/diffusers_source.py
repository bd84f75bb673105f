"""What diffusers' own source says about one of its classes, read without importing diffusers.

`flatcheck info` describes a checkpoint from its configs and safetensors headers. Importing diffusers
imports torch: 2.5 s and 750 MB of memory on a 2-core machine with the CUDA build, more than all the
rest of `info` together. So the few facts `info` needs about diffusers classes are read from
diffusers' installed source files, as data:

  - whether a name is a class diffusers exports, and whether it derives from a diffusers base
    (pipelines from DiffusionPipeline, networks from ModelMixin, schedules from SchedulerMixin);
  - the arguments and defaults of its own `__init__` (what `from_config` fills in for a config);
  - the default of one argument of its own method (a pipeline's `__call__(guidance_scale=...)`);
  - whether the class or an ancestor assigns `self.<attribute>` in `__init__` (DDPM-family
    schedules set `alphas_cumprod`).

Names are looked up the way `getattr(diffusers, name)` resolves them: through the lazy-import tables
(`_import_structure`) of each package's __init__.py. Every function answers None when the source does
not say it plainly (a computed default, an ancestor it cannot follow, a class gated behind an optional
library flatcheck does not depend on, a layout it does not recognise); callers then import diffusers
and ask it (core.class_facts), so an answer is never a guess. tests/test_diffusers_source.py checks the
answers against the imported classes.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

# diffusers registers some classes only when optional libraries are importable (`if is_x_available()`).
# These are flatcheck's own dependencies (pyproject.toml), so a class gated by them alone is importable
# wherever flatcheck is installed; any other gate (opencv, torchsde, a version test ...) is left to diffusers.
INSTALLED = frozenset(
    {
        "is_torch_available",
        "is_transformers_available",
        "is_scipy_available",
        "is_sentencepiece_available",
        "is_accelerate_available",
    }
)
# Names a sane top-level table registers: if parsing misses them, the layout changed and nothing is claimed.
LANDMARKS = ("DiffusionPipeline", "ModelMixin", "SchedulerMixin")
EXTERNAL = "external"  # a base class from outside diffusers (torch.nn.Module, object, ...)


@dataclass(frozen=True)
class ClassSource:
    name: str
    path: Path  # the module file that defines it
    node: ast.ClassDef

    @property
    def key(self) -> tuple[Path, str]:
        return self.path, self.name


@lru_cache(maxsize=1)
def package_root() -> Path | None:
    """diffusers' package folder (find_spec locates it without running its __init__)."""
    spec = importlib.util.find_spec("diffusers")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


# ----------------------------------------------------------------------------- lazy-import tables


def _strings(node: ast.AST | None) -> list[str]:
    if isinstance(node, (ast.List, ast.Tuple)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _table_key(node: ast.AST) -> str | None:
    """'k' of `_import_structure["k"]`."""
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == "_import_structure"
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return node.slice.value
    return None


def _registrations(stmt: ast.stmt) -> list[tuple[str, list[str]]]:
    """(submodule key, names) that one statement adds to `_import_structure`."""
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        out = []
        for t in targets:
            if isinstance(t, ast.Name) and t.id == "_import_structure" and isinstance(stmt.value, ast.Dict):
                out += [
                    (k.value, _strings(v))
                    for k, v in zip(stmt.value.keys, stmt.value.values)
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)
                ]
            elif (key := _table_key(t)) is not None:
                out.append((key, _strings(stmt.value)))
        return out
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Attribute):
        call = stmt.value
        key = _table_key(call.func.value)
        if key is not None and call.args:
            if call.func.attr == "extend":
                return [(key, _strings(call.args[0]))]
            if call.func.attr == "append":
                arg = call.args[0]
                return [(key, [arg.value])] if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else []
    return []


def _gates(expr: ast.AST) -> frozenset[str]:
    """The `is_..._available()`-style calls in a condition."""
    names = set()
    for node in ast.walk(expr):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name.startswith("is_"):
                names.add(name)
    return frozenset(names)


@lru_cache(maxsize=None)
def _exports(package: Path) -> dict[str, tuple[str, bool]]:
    """name -> (submodule key, gated only by installed libraries), from package/__init__.py's table."""
    tree = _parse(package / "__init__.py")
    out: dict[str, tuple[str, bool]] = {}

    def visit(stmts: list[ast.stmt], gates: frozenset[str]) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                inner = gates | _gates(stmt.test)
                visit(stmt.body, inner)
                visit(stmt.orelse, inner)
            elif isinstance(stmt, ast.Try):
                # diffusers' idiom: try: if not is_x_available(): raise ... except: <dummies> else: <register>
                tested = gates.union(*(_gates(s.test) for s in stmt.body if isinstance(s, ast.If)))
                visit(stmt.body, gates)
                visit(stmt.orelse, tested)
                visit(stmt.finalbody, gates)
            else:
                for key, names in _registrations(stmt):
                    for name in names:
                        out[name] = (key, gates <= INSTALLED)  # the last registration wins, as in _LazyModule

    if tree is not None:
        visit(tree.body, frozenset())
    return out


def _submodule(package: Path, key: str) -> Path | None:
    p = package.joinpath(*key.split("."))
    if (p / "__init__.py").is_file():
        return p
    if p.with_suffix(".py").is_file():
        return p.with_suffix(".py")
    return None


# ----------------------------------------------------------------------------- finding a class


def exported_names() -> dict[str, tuple[str, bool]] | None:
    """diffusers' top-level table, or None when it is not where this module expects it."""
    root = package_root()
    table = _exports(root) if root is not None else {}
    return table if all(n in table for n in LANDMARKS) else None


def find_class(name: str) -> ClassSource | None:
    """The class `getattr(diffusers, name)` would give, read from source; None if not found that way."""
    root = package_root()
    if root is None or exported_names() is None:
        return None
    found = _in_package(root, name, 0)
    return found if isinstance(found, ClassSource) else None


def is_exported(name: str) -> bool | None:
    """Whether diffusers exports `name` at the top level (None: the table could not be read)."""
    table = exported_names()
    return None if table is None else name in table


def _in_package(package: Path, name: str, depth: int) -> ClassSource | str | None:
    entry = _exports(package).get(name)
    if entry is not None:
        key, installed = entry
        return _in_module(_submodule(package, key), name, depth + 1) if installed else None
    return _in_file(package / "__init__.py", name, depth + 1)  # defined or imported in __init__ itself


def _in_module(path: Path | None, name: str, depth: int) -> ClassSource | str | None:
    if path is None or depth > 30:
        return None
    if path.is_dir():
        return _in_package(path, name, depth)
    return _in_file(path, name, depth)


def _in_file(path: Path, name: str, depth: int) -> ClassSource | str | None:
    tree = _parse(path)
    if tree is None:
        return None
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == name:
            return ClassSource(name, path, stmt)
    return _follow_import(path, tree, name, depth)


def _follow_import(path: Path, tree: ast.Module, name: str, depth: int) -> ClassSource | str | None:
    """Where a module-level `from x import name [as alias]` (or `import x`) binding `name` leads."""
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if (alias.asname or alias.name) != name:
                    continue
                if stmt.level == 0 and not (stmt.module or "").split(".")[0] == "diffusers":
                    return EXTERNAL
                base = package_root().parent if stmt.level == 0 else path.parent
                for _ in range(max(stmt.level - 1, 0)):
                    base = base.parent
                if stmt.module is None:
                    return None  # `from . import submodule`: a module, not a class
                return _in_module(_submodule(base, stmt.module), alias.name, depth + 1)
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if (alias.asname or alias.name.split(".")[0]) == name:
                    return EXTERNAL if not alias.name.startswith("diffusers") else None
    return None


def _base(cls: ClassSource, expr: ast.expr) -> ClassSource | str | None:
    """A base-class expression of `cls`, followed: a ClassSource, EXTERNAL, or None (cannot tell)."""
    if isinstance(expr, ast.Subscript):  # Generic[T] and the like
        expr = expr.value
    if isinstance(expr, ast.Attribute):  # nn.Module, torch.nn.Module: external when the root is an external import
        root = expr
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name):
            found = _follow_import(cls.path, _parse(cls.path), root.id, 0)
            return EXTERNAL if found == EXTERNAL else None
        return None
    if not isinstance(expr, ast.Name):
        return None
    tree = _parse(cls.path)
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == expr.id:
            return ClassSource(expr.id, cls.path, stmt)
    found = _follow_import(cls.path, tree, expr.id, 0)
    if found is None and hasattr(builtins, expr.id):
        return EXTERNAL  # object, Exception ...
    return found


def _lineage(cls: ClassSource) -> Iterator[ClassSource | None]:
    """cls, then each diffusers ancestor as it is found (breadth first); None for a base that cannot be
    followed. Lazy, so that a search stops at the base it looks for without reading further modules."""
    seen = {cls.key}
    queue = deque([cls])
    yield cls
    while queue:
        c = queue.popleft()
        for expr in c.node.bases:
            b = _base(c, expr)
            if b is None:
                yield None
            elif isinstance(b, ClassSource) and b.key not in seen:
                seen.add(b.key)
                queue.append(b)
                yield b


def ancestors(cls: ClassSource) -> tuple[list[ClassSource], bool]:
    """cls and every diffusers ancestor (breadth first), and whether every base could be followed."""
    found = list(_lineage(cls))
    return [c for c in found if c is not None], None not in found


def derives_from(cls: ClassSource, base: str) -> bool | None:
    """Whether the exported diffusers class `base` is cls or an ancestor of it (None: cannot tell)."""
    target = find_class(base)
    if target is None:
        return None
    complete = True
    for c in _lineage(cls):
        if c is None:
            complete = False
        elif c.key == target.key:
            return True
    return False if complete else None


# ----------------------------------------------------------------------------- what a class's code says


def _own_method(cls: ClassSource, name: str) -> ast.FunctionDef | None:
    for stmt in cls.node.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            return stmt
    return None


REQUIRED = object()  # an argument without a default


def _literal(node: ast.expr) -> Any:
    """A default written as a literal, or as float("inf") / -float("inf") (schedulers' clipping bounds);
    ValueError for anything computed."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        sign, node = -1.0, node.operand
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "float"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return sign * float(node.args[0].value)
    raise ValueError("not a literal")


def _arguments(fn: ast.FunctionDef) -> dict[str, Any] | None:
    """{argument: literal default or REQUIRED}; None when a default is not a literal."""
    a = fn.args
    positional = a.posonlyargs + a.args
    out: dict[str, Any] = {}
    pairs = list(zip(positional[len(positional) - len(a.defaults) :], a.defaults))
    pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
    for arg in positional + a.kwonlyargs:
        out[arg.arg] = REQUIRED
    for arg, default in pairs:
        try:
            out[arg.arg] = _literal(default)
        except ValueError:
            return None
    out.pop("self", None)
    return out


def init_arguments(cls: ClassSource) -> dict[str, Any] | None:
    """The class's own `__init__` arguments -> literal default (REQUIRED: none). None when __init__ is
    inherited, takes **kwargs (the config could carry anything), or has a computed default."""
    fn = _own_method(cls, "__init__")
    if fn is None or fn.args.kwarg is not None:
        return None
    return _arguments(fn)


def argument_default(cls: ClassSource, method: str, argument: str) -> tuple[bool, Any] | None:
    """(the method takes `argument`, its literal default or None) for the class's own method; None when
    the method is inherited or the default is computed."""
    fn = _own_method(cls, method)
    if fn is None:
        return None
    args = _arguments(fn)
    if args is None:
        return None
    if argument not in args:
        return False, None  # (a **kwargs may accept it, but with no default of its own)
    value = args[argument]
    return True, None if value is REQUIRED else value


def _assigns(fn: ast.FunctionDef, attribute: str) -> bool:
    for node in ast.walk(fn):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, (ast.AnnAssign, ast.AugAssign))
            else []
        )
        for t in targets:
            for e in ast.walk(t):
                if (
                    isinstance(e, ast.Attribute)
                    and e.attr == attribute
                    and isinstance(e.value, ast.Name)
                    and e.value.id == "self"
                ):
                    return True
    return False


def sets_attribute_in_init(cls: ClassSource, attribute: str) -> bool | None:
    """Whether a freshly built instance has `attribute`: assigned to self in an `__init__` of the class or
    an ancestor (True), named nowhere in their code (False), or only elsewhere / ancestors not all
    followed (None)."""
    order, complete = ancestors(cls)
    elsewhere = False
    for c in order:
        init = _own_method(c, "__init__")
        if init is not None and _assigns(init, attribute):
            return True
        for stmt in c.node.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                stmt.name == attribute or _assigns(stmt, attribute)
            ):
                elsewhere = True
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and any(
                isinstance(t, ast.Name) and t.id == attribute
                for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
            ):
                return True  # a class attribute
    if elsewhere or not complete:
        return None
    return False
