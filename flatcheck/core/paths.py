"""The paths --data and --ref name, checked without torch.

A command runs these before anything heavy is imported, so a mistyped path fails in a fraction of a
second with the same line it would give after the model loaded (importing torch and diffusers alone
takes 2-3 s here; before these checks, a bad --data was found after 16 s of loading and planning).
core.data and core.fd.reference give the same errors from the same functions.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError, OptionError

BUNDLED_DATA = ("digits", "patches", "patches-test")  # patches*: flatcheck.core.patches, split train / test
ARRAY_SUFFIXES = (".npy", ".npz")


def array_file(spec: str) -> Path:
    """--data SPEC that is neither a folder nor a bundled set: an .npy/.npz file that exists, or OptionError."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise OptionError(
            "data",
            f"'{spec}' does not exist (give an image folder, an .npy/.npz file, or one of: {', '.join(BUNDLED_DATA)})",
        )
    if path.suffix not in ARRAY_SUFFIXES:
        raise OptionError(
            "data", f"'{spec}': unsupported file type '{path.suffix}' (use an image folder, .npy or .npz)"
        )
    return path


def check_data(spec: str | None) -> None:
    """--data as core.data reads it: 'none' (data-free), a bundled set, a folder, or an .npy/.npz file that exists.
    What is inside (images, their shape) is checked where they are read."""
    if spec is None or spec.lower() == "none":
        return
    path = Path(spec).expanduser()
    if spec in BUNDLED_DATA and not path.exists():
        return
    from .data_files import check_array_file, check_image_folder

    if path.is_dir():
        check_image_folder(path, "--data")
        return
    check_array_file(array_file(spec), "--data")


def reference_file(spec: str, path: Path) -> None:
    """An existing --ref that is a file: an .npz or .npy (images or statistics), or InputError."""
    if not path.is_dir() and path.suffix not in ARRAY_SUFFIXES:
        raise InputError(
            f"--ref '{spec}': unsupported file type '{path.suffix}' (use an image folder, .npz/.npy images, or a "
            "stats .npz with mu and sigma)"
        )


def check_reference(spec: str | None) -> None:
    """--ref without torch: an existing file of the right kind, a bundled set, or a name that may be a
    torch-fidelity dataset (asking torch-fidelity's registry imports torch: core.fd.reference does it).
    Something that looks like a path and does not exist is refused here."""
    if not spec or spec.lower() == "none":
        return  # empty: core.fd.reference says what --ref may be
    path = Path(spec).expanduser()
    if path.exists():
        reference_file(spec, path)
        from .data_files import check_array_file, check_image_folder

        # a Frechet distance needs a covariance: two images at least
        if path.is_dir():
            check_image_folder(path, "--ref", minimum=2)
        else:
            check_array_file(path, "--ref", minimum=2, stats_ok=True)
        return
    if spec in BUNDLED_DATA:
        return
    if spec.startswith((".", "~")) or "/" in spec or "\\" in spec or path.suffix:
        raise InputError(
            f"--ref '{spec}' is not a file or folder, and not 'digits', 'patches', 'patches-test' or a torch-fidelity "
            "dataset name (such as cifar10-train)"
        )
