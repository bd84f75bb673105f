"""The `flatcheck` command line. Thin: parse options, call one function, hand the result to a report."""

from __future__ import annotations

import os
import sys
import traceback

import typer

from .errors import EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE, FlatcheckError

app = typer.Typer(
    name="flatcheck",
    help="Audit a diffusers checkpoint's robustness: loss-surface sharpness, exposure bias, quantization.\n\n"
    "MODEL is a diffusers pipeline folder, a bare model folder, a Hub repo id, or a bundled example "
    "(digits-base, digits-ema, digits-sam); without MODEL the default bundled model (digits-base) is used.\n\n"
    "Exit codes: 0 ok, 1 a gate failed, 2 usage or input error, 3 failure while running, 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Audit a diffusers checkpoint's robustness."""


def _register_commands() -> None:
    from .commands.audit import audit
    from .commands.card import card
    from .commands.compare import compare
    from .commands.exposure import exposure
    from .commands.fid import fid
    from .commands.gate import gate
    from .commands.info import info
    from .commands.plan import plan
    from .commands.quantize import quantize
    from .commands.rank import rank
    from .commands.sample import sample
    from .commands.sharpness import sharpness

    # The order of `flatcheck --help`: the main job first, then the measures one by one.
    for command in (info, plan, audit, compare, rank, gate, card, sharpness, exposure, quantize, fid, sample):
        app.command()(command)


_register_commands()


# ---------------------------------------------------------------------------- entry point
def _quiet_libraries() -> None:
    import logging
    import warnings

    # Loading text encoders draws Hub/transformers progress bars on stderr: not our output.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="diffusers")


def _fail(message: str, code: int, debug: bool) -> int:
    # Of several processes (accelerate launch, torchrun) one prints the line (core.dist); each keeps its exit code.
    from .core import dist

    line = dist.error_line_is_mine(message, sys.exc_info()[1])
    if line is None:
        return code
    if debug:
        traceback.print_exc()
    sys.stderr.write(f"flatcheck: error: {line}\n")
    sys.stderr.flush()
    dist.error_reported(message)
    return code


def _click_error_class() -> type:
    # typer >= 0.20 vendors click; older typer uses click itself. Catch whichever is in use.
    try:
        from typer._click.exceptions import ClickException
    except ImportError:
        from click.exceptions import ClickException
    return ClickException


_ClickError = _click_error_class()


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (no sys.exit), so tests can call it in-process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    from .core.threads import before_torch

    before_torch()  # OpenMP's wait policy is read when torch loads, and the load is read from here on
    _quiet_libraries()
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="flatcheck", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except _ClickError as exc:  # usage errors: bad option, bad value, missing argument
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer has already printed the help
            return EXIT_USAGE
        return _fail(" ".join(exc.format_message().split()), EXIT_USAGE, debug)
    except (typer.Abort, KeyboardInterrupt):
        return _fail(
            "interrupted (weights in memory were restored; nothing on disk was changed)", EXIT_INTERRUPTED, debug
        )
    except FlatcheckError as exc:
        return _fail(str(exc), exc.exit_code, debug)
    except MemoryError:
        return _fail("out of memory: lower --batch-size or --probes", EXIT_RUNTIME, debug)
    except Exception as exc:  # noqa: BLE001 - the CLI's promise is one line, not a traceback
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return _fail(
                "out of GPU memory: lower --batch-size or --probes, or use --dtype bfloat16", EXIT_RUNTIME, debug
            )
        first = str(exc).splitlines()[0] if str(exc) else ""
        return _fail(f"{type(exc).__name__}: {first} (rerun with --debug for the traceback)", EXIT_RUNTIME, debug)


def main() -> None:
    sys.exit(run())
