"""Reference images for the probe bank and for exposure/FID: folders, arrays, bundled sets.

Everything comes back as float32 [N, C, H, W] in [-1, 1] at the model's resolution.
"""

from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, OptionError
from .data_files import IMAGE_SUFFIXES, image_files, npz_array_key
from .paths import BUNDLED_DATA, array_file

FOLDER_CHUNK = 256  # images read and fitted at a time (their native-size float copies are what a chunk holds)


def load_images(
    spec: str, shape: tuple[int, int, int], limit: int | None = None, rows: list[int] | None = None
) -> torch.Tensor:
    """spec: 'digits', 'patches' (RGB patches, train split), 'patches-test', a folder of images, or an
    .npy/.npz file; shape: (C, H, W) wanted. rows: only these images (sorted indices into the set, as
    count_images counts it), each fitted exactly as it is in the whole set."""
    path = Path(spec).expanduser()
    if path.is_dir() and spec not in BUNDLED_DATA:
        x = torch.cat(list(iter_folder(path, shape, FOLDER_CHUNK, limit, rows)))
    else:
        x = torch.cat(list(iter_images(spec, shape, FOLDER_CHUNK, rows)))
    if limit is not None:
        x = x[:limit]
    if len(x) == 0:
        raise OptionError("data", f"'{spec}' holds no images")
    return x.contiguous()


def count_images(spec: str) -> int:
    """How many images --data holds, without fitting any to the model's size (the errors load_images
    gives for a missing, empty or unreadable set). The probe bank draws from this many and loads only
    the ones it drew (core.probes.DataPool)."""
    path = Path(spec).expanduser()
    if path.is_dir() and spec not in BUNDLED_DATA:
        return len(_folder_files(path))
    if spec in ("patches", "patches-test") and not path.exists():
        return len(_patches(spec))
    if spec in BUNDLED_DATA and not path.exists():
        from .datasets import digits_table

        return len(digits_table()[0])
    n = len(_array_source(spec)[0])
    if n == 0:
        raise OptionError("data", f"'{spec}' holds no images")
    return n


@lru_cache(maxsize=2)
def _patches(spec: str) -> torch.Tensor:
    """The bundled patch set, cut once per process (1.3 s here): count_images and the loads that follow
    it read the same one. Read only: callers index copies out of it."""
    from .patches import rgb_patches

    return rgb_patches("train" if spec == "patches" else "test")


def _array_source(spec: str):
    """An .npy/.npz file's images as [N, C, H, W] at their own size and dtype (an .npy memory-mapped:
    nothing read until a chunk is), and the map of their values to [-1, 1] (_to_unit_range)."""
    path = array_file(spec)
    a = _nchw(_load_array(path, mmap=True), path)
    convert = _to_unit_range(a)
    return a, convert


def _load_array(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        with np.load(path, allow_pickle=False) as z:
            key = npz_array_key(list(z.files))
            if key is None:
                raise OptionError("data", f"'{path}' is an empty .npz")
            return z[key]
    except InputError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read --data '{path}': {str(exc).splitlines()[0]}") from None


def _nchw(a: np.ndarray, path: Path) -> np.ndarray:
    """NHWC / NCHW / NHW -> NCHW (a view)."""
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise OptionError(
            "data", f"'{path}': expected images shaped [N, H, W, C], [N, C, H, W] or [N, H, W], got {a.shape}"
        )
    if a.shape[-1] in (1, 3, 4) and a.shape[1] not in (1, 3, 4):
        a = a.transpose(0, 3, 1, 2)
    return a


def _to_unit_range(a: np.ndarray):
    """The map of an [N, C, H, W] array's parts to float32 [-1, 1] (3 channels at most), decided on the
    whole array: uint8 or values over 1.5 are 0..255, non-negative ones 0..1, the rest -1..1 already."""
    if a.dtype == np.uint8 or (len(a) and float(a.max()) > 1.5):
        mode = "0..255"
    elif len(a) and float(a.min()) >= 0:
        mode = "0..1"
    else:
        mode = "-1..1"

    def convert(part: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(part, dtype=np.float32, copy=True))  # own, writable copy
        x = x / 127.5 - 1 if mode == "0..255" else x * 2 - 1 if mode == "0..1" else x
        return x[:, :3]

    return convert


def _from_array(a: np.ndarray, path: Path) -> torch.Tensor:
    """uint8 or float array, NHWC / NCHW / NHW -> float [N, C, H, W] in [-1, 1]."""
    a = _nchw(a, path)
    return _to_unit_range(a)(a)


def _folder_files(path: Path, limit: int | None = None) -> list[Path]:
    files = image_files(path)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise OptionError("data", f"folder '{path}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _read_image(f: Path, channels: int) -> torch.Tensor:
    """One image file -> float32 [1, channels, H, W] in [-1, 1] at its own size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read image '{f}': {exc}") from None
    return _fit(_from_array(arr[None], f), channels, *arr.shape[:2])


def iter_images(spec: str, shape: tuple[int, int, int], chunk: int, rows: list[int] | None = None):
    """The images of a bundled set or an .npy/.npz file (or those of `rows`) at `shape`, converted and
    fitted `chunk` at a time from their own size (per image: the chunking does not change the values):
    5,000 RGB patches fitted to 512 px at once would be 15.7 GB of float32. A folder: iter_folder."""
    c, h, w = shape
    if spec in BUNDLED_DATA and spec not in ("patches", "patches-test") and not Path(spec).exists():
        from .datasets import digits_images, digits_table

        index = np.arange(len(digits_table()[0])) if rows is None else np.asarray(rows, dtype=np.int64)
        for s in range(0, len(index), chunk):
            part = digits_images(size=h, rows=index[s : s + chunk])
            if w != h:
                part = F.interpolate(part, size=(h, w), mode="bilinear", align_corners=False)
            if c != part.shape[1]:  # grey digits for an RGB model: as _fit brings any grey image to RGB
                part = part.expand(-1, c, -1, -1)
            yield part.contiguous()
        return
    if spec in ("patches", "patches-test") and not Path(spec).exists():
        x = _patches(spec)
        index = range(len(x)) if rows is None else rows
        for s in range(0, len(index), chunk):
            yield _fit(x[list(index[s : s + chunk])], c, h, w).contiguous()
        return
    a, convert = _array_source(spec)
    index = np.arange(len(a)) if rows is None else np.asarray(rows, dtype=np.int64)
    for s in range(0, len(index), chunk):
        yield _fit(convert(a[index[s : s + chunk]]), c, h, w).contiguous()


def iter_folder(
    path: Path, shape: tuple[int, int, int], chunk: int, limit: int | None = None, rows: list[int] | None = None
):
    """A folder's images (sorted by name; or those of `rows`) at `shape`, `chunk` at a time: an image whose
    size differs from the folder's first one's is fitted to that size first, then every chunk to `shape`
    (per image: the chunking does not change the values). The FD reference reads a folder this way without
    holding it whole (a 50,000-image folder at 512 px would be 150 GB of float32); load_images concatenates
    the chunks."""
    c, h, w = shape
    files = _folder_files(path, limit)
    first_hw = None if rows is None or not rows or rows[0] == 0 else tuple(_read_image(files[0], c).shape[-2:])
    if rows is not None:
        files = [files[i] for i in rows]
    for s in range(0, len(files), chunk):
        out = [_read_image(f, c) for f in files[s : s + chunk]]
        if first_hw is None:
            first_hw = tuple(out[0].shape[-2:])
        # load_images brings mixed sizes to the first image's size before the final fit: so do we
        out = [x if tuple(x.shape[-2:]) == first_hw else _fit(x, c, *first_hw) for x in out]
        yield _fit(torch.cat(out), c, h, w).contiguous()


def _fit(x: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """Match channels (grey <-> RGB) and size (center crop to aspect, then bilinear resize)."""
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True) if c == 1 else x[:, :1].expand(-1, c, -1, -1)
    H, W = x.shape[-2:]
    if (H, W) != (h, w):
        if H * w != W * h:  # crop the longer side to the wanted aspect
            if H * w > W * h:
                nh = W * h // w
                x = x[..., (H - nh) // 2 : (H - nh) // 2 + nh, :]
            else:
                nw = H * w // h
                x = x[..., (W - nw) // 2 : (W - nw) // 2 + nw]
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(-1, 1)


def load_labels(spec: str) -> torch.Tensor | None:
    """Class labels of --data when it carries them: 'digits', or an .npz with a 'labels' (or 'y') array."""
    if spec == "digits" and not Path(spec).exists():
        from .datasets import digits_labels

        return digits_labels()
    path = Path(spec).expanduser()
    if path.suffix != ".npz" or not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        key = next((k for k in ("labels", "y") if k in z.files), None)
        return None if key is None else torch.from_numpy(np.asarray(z[key]).astype(np.int64).reshape(-1))
