"""Where a command will write, checked before it does any work.

An audit can run for hours; a report that cannot be written must fail in the first second, not after
the work (issue 26). Every option that names a place to write carries a `Writes` marker in its
annotation (options.py and the commands' own options); `check_all` checks each given value, and
$GITHUB_STEP_SUMMARY for the commands that append their Markdown to it, before the command runs.

Checked: `-` only where it means stdout (--json); a file must not be a folder; a folder must not be a
file, nor may the files it will hold be folders (or the reverse); the nearest folder that exists must
accept a new file. That last question is asked of the file system itself: a temporary file is created
there and removed at once (as root, permission bits say yes where /proc, /sys or a read-only mount say
no). Nothing else is created: folders the run would make are left to the run. Torch is not imported.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

SUMMARY = "GITHUB_STEP_SUMMARY"


@dataclass(frozen=True)
class Writes:
    """Annotation metadata of an option whose value is a place the command writes.

    kind: "file" or "folder"; stdout: '-' means stdout; inside a folder, the files and folders the
    command writes there (checked only when they exist already: they must have the right kind)."""

    kind: str
    stdout: bool = False
    files: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()


FILE = Writes("file")
FOLDER = Writes("folder")


def check(option: str, value, writes: Writes) -> None:
    """InputError, one line naming the option and the path, unless the command can write there."""
    text = str(value)
    if text == "-":
        if writes.stdout:
            return
        raise InputError(f"{option} -: only --json writes to stdout ('-'); give a {writes.kind} path")
    if not text.strip():
        raise InputError(f"{option} is empty; give a {writes.kind} path")
    path = Path(text)
    where = f"{option} {text}"
    if writes.kind == "folder":
        _check_folder(where, path, writes)
    else:
        _check_file(where, path)


def check_append(option: str, value) -> None:
    """A file the command appends to without creating its folder ($GITHUB_STEP_SUMMARY)."""
    path = Path(value)
    where = f"{option} {value}"
    if path.is_dir():
        raise InputError(f"{where}: '{path}' is a folder, not a file")
    if path.exists():
        try:  # opened for appending and closed at once: nothing is written
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        except OSError as exc:
            raise InputError(f"{where}: cannot append to '{path}' ({exc.strerror or exc})") from None
        return
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"{where}: its folder '{parent}' does not exist (the summary is appended, not created there)")
    _probe(where, parent)


def _check_file(where: str, path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{where}: '{path}' is a folder; give a file path")
    # Written atomically: a temporary file beside it, then renamed, so its folder must take new files.
    _writable_folder(where, path.parent)


def _check_folder(where: str, path: Path, writes: Writes) -> None:
    if path.exists() and not path.is_dir():
        raise InputError(f"{where}: '{path}' is a file, not a folder")
    for name in writes.files:
        if (path / name).is_dir():
            raise InputError(f"{where}: '{path / name}' is a folder, but the command writes a file there")
    for name in writes.folders:
        child = path / name
        if child.exists() and not child.is_dir():
            raise InputError(f"{where}: '{child}' is a file, but the command writes a folder there")
    _writable_folder(where, path)


def _writable_folder(where: str, folder: Path) -> None:
    """The folder exists and takes new files, or the nearest folder above it that exists does (the run
    creates the rest)."""
    probe = folder
    while not (probe.exists() or probe.is_symlink()):
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{where}: '{probe}' is a file, not a folder")
    _probe(where, probe)


def _probe(where: str, folder: Path) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".flatcheck-write-check-", dir=folder)
    except OSError as exc:
        raise InputError(f"{where}: cannot create files in '{folder}' ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)


def check_all(values: dict, markers: dict[str, tuple[str, Writes]], *, summary: bool) -> None:
    """Every given place of a command's options (name -> value; markers: name -> (flag, Writes)), then
    $GITHUB_STEP_SUMMARY when the command appends to it (`summary`)."""
    for name, (flag, writes) in markers.items():
        if values.get(name) is not None:
            check(flag, values[name], writes)
    if summary and os.environ.get(SUMMARY):
        check_append(f"${SUMMARY}", os.environ[SUMMARY])
