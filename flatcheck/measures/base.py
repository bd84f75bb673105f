"""What a measure is: the one contract between a measure package, the audit, the commands and the reports.

A measure package (measures/<name>/) holds everything about one measure: its config dataclass
(the only place its defaults live), its run function, its result dataclass, its verdict, its
audit profiles, its JSON schema fragment and its views (terminal tables, plots, files). It
exports one `Measure`, which measures/__init__.py names in the REGISTRY. Nothing outside the
package looks inside it: the audit, the commands and the reports go through these fields.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import InputError, OptionError

PROFILES = ("quick", "default", "full")


@dataclass
class Verdict:
    """One line per measure, read first: good | fair | poor (against a stated rule of thumb),
    info (no absolute scale: compare checkpoints or gate on a baseline), skipped or error."""

    area: str
    status: str
    line: str


def lazy(module: str, name: str) -> Callable:
    """`module.name`, imported when first called: a measure package's __init__ stays torch-free
    (the CLI's --help reads configs and the REGISTRY without loading torch)."""

    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


@dataclass
class Reading:
    """One number of one report that `rank` correlates (rank.extract), with its standard error."""

    label: str
    short: str  # a table's column header
    path: str  # where it is in the report (the gate's dotted path)
    value: float | None  # None: not finite in the report
    stderr: float | None = None  # None: no standard error (held fixed by the noise bootstrap)
    absolute: bool = False  # the quantity is |value|: value is the signed estimate
    bucket: str | None = None  # a timestep bucket's version ("t0-500"); None: the whole bank


@dataclass(frozen=True)
class Readings:
    """Which numbers of a measure's report section `rank` reads: sharpness measures (larger = sharper) or
    robustness outcomes (signed so that larger = more damage), each with its standard error."""

    kind: str  # "measures" or "outcomes"
    what: str  # e.g. "sharpness measures", for the note when a report lacks the section
    read: Callable[[dict], tuple[dict[str, Reading], list[str]]]  # read(section) -> (key -> Reading, notes)
    order: int = 50  # where its numbers come in rank's tables (quantization outcomes before exposure's)


def number(x) -> float | None:
    """A finite JSON number as a float; None for anything else (null, NaN written as a string, booleans)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def estimate(node) -> tuple[float | None, float | None]:
    """(value, stderr) of an Estimate node or a plain number."""
    if isinstance(node, dict):
        return number(node.get("value")), number(node.get("stderr"))
    return number(node), None


@dataclass(frozen=True)
class Items:
    """What a run puts at one place of its report, known from its config before it runs (for the gate's
    paths): a list's items by name, or how many there are at most; or that the place is empty (null, or an
    empty list) in such a run, and why."""

    names: tuple[str, ...] | None = None  # the items, by name (an index below len(names) reaches them too)
    count: int | None = None  # at most this many items (indices 0..count-1)
    absent: str | None = None  # the place holds nothing in such a run: why (e.g. "--measures has no hessian")
    why: str = ""  # where the names or count come from (e.g. "top_k = 3"), for messages


class Skipped(Exception):
    """Raised by a measure's run when the run's inputs cannot support it (e.g. FD without a
    reference): the audit records a 'skipped' verdict with this reason and goes on."""


@dataclass(frozen=True)
class Measure:
    name: str  # the area: JSON key, --skip value, command name
    title: str  # what it measures, in a few words
    config: type  # dataclass; a field named like a shared input (seed, batch_size...) takes the run's value
    run: Callable[..., Any]  # run(inputs, config, progress) -> result dataclass (never prints)
    verdict: Callable[[Any], Verdict]  # verdict(result) -> the one line
    view: Callable[..., list]  # view(result, model) -> rich renderables (command and audit alike)
    plot: Callable[[Any, Path], Path | None]  # plot(result, path) -> the PNG the reports embed (None: nothing to plot)
    save: Callable[..., list[Path]] | None = None  # save(result, folder, model) -> the files of `--out DIR`
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # audit profile -> config overrides
    uses_bank: bool = True  # needs the probe bank
    order: int = 50  # run order in the audit (a measure that makes the shared samples while watching runs first)
    cost: Callable[..., list] | None = (
        None  # cost(config, core.work.RunShape, net) -> [core.work.Work]: what it computes (the plan)
    )
    readings: Readings | None = None  # the numbers `rank` correlates (None: none)
    # paths(config) -> {place in its section ("hessian.eigen.eigenvalues", list items as "*"): Items}: what a
    # run with this config puts in its report, so a gate rule naming a number such a run cannot have is refused
    # before the run (gate.check_metric). Places it does not name are read from the report schema alone.
    paths: Callable[[Any], dict[str, Items]] | None = None

    def make_config(
        self, profile: str = "default", shared: Mapping[str, Any] | None = None, given: Mapping[str, Any] | None = None
    ):
        """The config of a run: defaults, then the profile, then the shared inputs, then what the user gave.

        A config field named like a shared input (seed, batch_size, samples, steps, sampler) takes
        the run's value unless the user gave it; a tuple field takes a one-element tuple.
        """
        check_profile(profile)
        names = {f.name: f for f in dataclasses.fields(self.config)}
        given = dict(given or {})
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise OptionError(unknown[0], f"is not an option of {self.name} (it has: {', '.join(names)})")
        given = checked_fields(self.config, given)
        values = dict(self.profiles.get(profile, {}))
        for key, value in (shared or {}).items():
            if key in names and key not in given:
                default = names[key].default
                values[key] = (value,) if isinstance(default, tuple) and not isinstance(value, (tuple, list)) else value
        values.update(given)
        config = self.config(**values)
        check = getattr(config, "validate", None)
        return check() if check is not None else config


def check_profile(profile: str) -> None:
    """InputError unless `profile` is an audit profile (one rule for the audit and every measure)."""
    if profile not in PROFILES:
        raise InputError(f"unknown profile '{profile}' (use {', '.join(PROFILES)})")


def checked_fields(cls: type, given: Mapping[str, Any]) -> dict[str, Any]:
    """Given values for fields of dataclass `cls` (a config file's, a Python caller's), each with its field's
    declared type (a config file's lists become tuples where the field is a tuple; ints become floats where it
    is a float); OptionError naming the field otherwise. One rule for the audit's options and every measure's
    config. Values for fields of other types (objects, tables) pass as given."""
    hints = typing.get_type_hints(cls)
    return {k: _checked(k, v, hints[k]) for k, v in given.items()}


_SIMPLE = {bool: "bool", int: "int", float: "float", str: "str"}


def _checked(name: str, value, annotation):
    if value is None:
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        for a in options:
            try:
                return _checked(name, value, a)
            except OptionError:
                continue
        return _checked(name, value, options[0])  # the first type's message
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            raise OptionError(name, f"must be a list (got {value!r})")
        element = args[0] if args and args[0] in _SIMPLE else None
        items = [_checked(name, v, element) for v in value] if element is not None else list(value)
        return tuple(items) if origin is tuple else items
    if annotation not in _SIMPLE:
        return value
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise OptionError(name, f"must be {_SIMPLE[annotation]} (got {type(value).__name__}: {value!r})")
    return value
