"""Errors that the CLI turns into one line on stderr and a documented exit code.

Exit codes:
    0  ok
    1  a gate threshold was crossed
    2  usage or input error (bad path, option, checkpoint)
    3  failure while running (out of memory, a measure that could not finish)
  130  interrupted (Ctrl-C); weights are restored before exiting
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3
EXIT_INTERRUPTED = 130


class FlatcheckError(Exception):
    """Base class: carries the exit code the CLI should use."""

    exit_code = EXIT_RUNTIME


class InputError(FlatcheckError):
    """The user's input is wrong: a path, an option value, a checkpoint."""

    exit_code = EXIT_USAGE


class RunError(FlatcheckError):
    """Something failed while measuring (e.g. out of memory)."""

    exit_code = EXIT_RUNTIME


class Interrupted(FlatcheckError):
    """Ctrl-C during a run, said after the report of what finished was written (exit 130)."""

    exit_code = EXIT_INTERRUPTED


class AuditInterrupted(KeyboardInterrupt):
    """Ctrl-C in the middle of an audit's measures. Still a KeyboardInterrupt (whoever does not know it stops
    as on any Ctrl-C), carrying `report`: the AuditReport of the measures that finished, the interrupted one
    marked incomplete, for the command to write before it exits 130."""

    def __init__(self, report, measure: str):
        super().__init__(f"interrupted during {measure}")
        self.report, self.measure = report, measure


class OptionError(InputError):
    """A bad option value, named by its field so each caller can say it in its own terms.

    Configs raise OptionError("radii", "must be positive"): it reads "--radii must be positive",
    as the command line spells it; the audit renames it to its own key, "sharpness.radii must be
    positive", the way flatcheck.toml's [audit.sharpness] table spells it.
    """

    def __init__(self, option: str, problem: str, field: str | None = None):
        self.option, self.problem, self.field = option, problem, field or option
        name = option if not option.isidentifier() else "--" + option.replace("_", "-")
        super().__init__(f"{name} {problem}")

    def named(self, name: str) -> "OptionError":
        """The same error under another name (the field it is about is kept: `flag()` gets it back)."""
        return OptionError(name, self.problem, self.field)

    def flag(self) -> "OptionError":
        """The same error named as the command line spells the field (--radii)."""
        return OptionError(self.field, self.problem)


# ----------------------------------------------------------------------------- lower bounds, declared once
# An option's lower bound is declared with its field, `probes: int = field(default=128, metadata=at_least(1))`,
# and checked by `check_bounds(config)`; a function's own argument by `require_at_least`. One rule, one message.
AT_LEAST = "flatcheck_at_least"


def at_least(low: int | float) -> dict:
    """Field metadata: the value (each value, for a tuple; None passes) must be >= low."""
    return {AT_LEAST: low}


def require_at_least(name: str, value, low: int | float) -> None:
    """OptionError naming the option unless value >= low."""
    if value is not None and value < low:
        raise OptionError(name, f"must be >= {low} (got {value})")


def check_bounds(obj) -> None:
    """Every field of a dataclass instance that declares at_least(low), checked in field order."""
    import dataclasses

    for f in dataclasses.fields(obj):
        if AT_LEAST in f.metadata:
            value = getattr(obj, f.name)
            for v in value if isinstance(value, (tuple, list)) else (value,):
                require_at_least(f.name, v, f.metadata[AT_LEAST])
