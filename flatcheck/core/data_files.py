"""What is inside the --data and --ref files and folders, checked before the model loads (numpy and PIL, no torch).

core.paths checks that a path exists and has a kind flatcheck reads; this reads it: an .npy/.npz must load
(without pickle), hold numbers shaped like images, finite, in one of the ranges core.data maps to [-1, 1]
(0..255, 0..1, -1..1), and enough of them; a statistics .npz (mu, sigma) must be finite and square; each file
of an image folder must be an image PIL can identify (its header; the pixels are decoded when read). Each
problem is one InputError naming the file and what is wrong, before any work (issue 26): a NaN in --data
used to surface as a LinAlgError from eigh after the whole run, a damaged .npz as BadZipFile.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
ARRAY_KEYS = ("images", "arr_0", "x", "data")  # the array core.data reads from an .npz, in this order
CHUNK = 64  # images scanned at a time for finiteness and range (an .npy is memory-mapped)


# Files found good, by (path, size, mtime, what was asked): the command line and then the API it calls, or a
# training loop's every_n_steps, would otherwise read the same large file again for each check.
_CHECKED: set[tuple] = set()


def _unchanged_since_checked(path: Path, *asked) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, *asked)
    return None if key in _CHECKED else key


def check_array_file(path: Path, option: str, *, minimum: int = 1, stats_ok: bool = False) -> None:
    """An .npy/.npz of images as core.data reads it (stats_ok: also a statistics .npz of mu and sigma)."""
    key = _unchanged_since_checked(path, option, minimum, stats_ok)
    if key is None:
        return
    _read_array_file(path, option, minimum, stats_ok)
    _CHECKED.add(key)


def _read_array_file(path: Path, option: str, minimum: int, stats_ok: bool) -> None:
    try:
        if path.suffix == ".npy":
            a = np.load(path, allow_pickle=False, mmap_mode="r")
        elif not zipfile.is_zipfile(path):  # numpy would call it pickled data: an .npz is a zip archive
            raise InputError(f"{option} '{path}' is not an .npz (a zip archive of .npy arrays): damaged or cut short")
        else:
            with np.load(path, allow_pickle=False) as z:
                files = list(z.files)
                if stats_ok and {"mu", "sigma"} <= set(files):
                    _check_stats(path, option, np.asarray(z["mu"]), np.asarray(z["sigma"]))
                    return
                key = npz_array_key(files)
                if key is None:
                    raise InputError(f"{option} '{path}' is an empty .npz")
                a = z[key]
    except InputError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{option} '{path}' cannot be read as {path.suffix} ({why})") from None
    check_images(a, path, option, minimum)


def check_images(a: np.ndarray, path: Path, option: str, minimum: int = 1) -> None:
    """An array of images: numbers, [N, H, W] / [N, H, W, C] / [N, C, H, W], enough, finite, in range."""
    where = f"{option} '{path}'"
    if a.dtype.kind not in "uif":
        raise InputError(f"{where} holds {a.dtype} values, not image numbers (uint8 or float)")
    if a.ndim not in (3, 4) or 0 in a.shape[1:]:
        raise InputError(f"{where}: expected images shaped [N, H, W, C], [N, C, H, W] or [N, H, W], got {a.shape}")
    if len(a) < minimum:
        raise InputError(f"{where} holds {len(a)} image(s); at least {minimum} needed")
    if a.dtype == np.uint8:
        return  # every uint8 is a finite 0..255 pixel
    lo, hi = np.inf, -np.inf
    for s in range(0, len(a), CHUNK):
        part = np.asarray(a[s : s + CHUNK])
        if part.dtype.kind == "f" and not np.isfinite(part).all():
            bad = s + int(np.argwhere(~np.isfinite(part).reshape(len(part), -1).all(axis=1))[0][0])
            raise InputError(f"{where}: image {bad} holds non-finite values (NaN or infinity)")
        lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
    # core.data: over 1.5 means 0..255, non-negative 0..1, else -1..1 (a little slack for resampling overshoot)
    if (hi > 1.5 and (lo < 0 or hi > 255.5)) or (hi <= 1.5 and lo < -1.5):
        raise InputError(f"{where}: values span [{lo:.4g}, {hi:.4g}], not images in 0..255, 0..1 or -1..1")


def _check_stats(path: Path, option: str, mu: np.ndarray, sigma: np.ndarray) -> None:
    where = f"{option} '{path}'"
    if mu.dtype.kind not in "uif" or sigma.dtype.kind not in "uif":
        raise InputError(f"{where}: mu and sigma must be numbers")
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)) or len(mu) == 0:
        raise InputError(f"{where}: mu must be [D] and sigma [D, D], got {mu.shape} and {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise InputError(f"{where}: mu or sigma holds non-finite values (NaN or infinity)")


def image_files(path: Path) -> list[Path]:
    """The image files of a folder, searched as every reader of --data and --ref searches it (sorted, recursive)."""
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def npz_array_key(files: list[str]) -> str | None:
    """The array core.data reads from an .npz holding `files` (ARRAY_KEYS in order, else the first); None: empty."""
    return next((k for k in ARRAY_KEYS if k in files), files[0] if files else None)


def check_image_folder(path: Path, option: str, minimum: int = 1) -> None:
    """Every image file of a folder (searched as core.data searches it) is one PIL identifies."""
    from PIL import Image, UnidentifiedImageError

    files = image_files(path)
    if len(files) < minimum:
        what = "no images" if not files else f"{len(files)} image(s); at least {minimum} needed"
        raise InputError(f"{option} folder '{path}' holds {what} ({', '.join(IMAGE_SUFFIXES)})")
    for f in files:
        try:
            with Image.open(f) as im:
                if 0 in im.size:
                    raise OSError("an image of size 0")
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"{option} '{f}' is not a readable image ({str(exc).splitlines()[0]})") from None
