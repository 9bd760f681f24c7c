"""Map files: segment label maps (``segments``) and object masks (``mask``) a user gives as files or
arrays (:func:`read_map`), and the maps a run saved (:func:`read_saved_map`).

Map files meet the input's limits before they cost memory: an image's size is read from its
header and a ``.npy``'s shape from its array header, both checked against ``max_pixels``;
nothing is unpickled. Label maps must be lossless (a JPEG's compression invents ids) and hold
exact integer ids, and their segment count is capped (:data:`explain_cli.budget.MAX_SEGMENTS`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from explain_cli.errors import ExplainError, OptionError, one_line
from explain_cli.fileio import require_file
from explain_cli.inputs.limits import MAX_PIXELS

#: Largest integer every float of each size holds exactly: ids beyond it may already have merged.
_EXACT_FLOAT_INT = {2: 2**11, 4: 2**24, 8: 2**53}
#: Image formats whose compression changes pixel values, so a label map's ids do not survive.
_LOSSY_FORMATS = {"JPEG", "MPO", "JPEG2000"}
#: The fix for a saved map that is missing, stale or edited.
SAVED_MAP_FIX = "explain again with `save_map`"


def read_map(path: str | Path, option: str, what: str, *, max_pixels: int = MAX_PIXELS,
             lossless: bool = False, mode: str | None = None) -> np.ndarray:
    """A 2-D map from ``.npy`` (no pickles) or an image file: grey, 16-bit and palette ids as stored,
    one id per colour for RGB(A), or the image converted to Pillow ``mode`` when one is given.
    Errors name ``option`` and call the file ``what``.

    The size is checked from the header before decoding (H × W at most ``max_pixels``), as
    for inputs. ``lossless`` refuses JPEG files (a label map's ids must survive exactly).

    Raises
    ------
    OptionError
        A missing or odd file (FIFO, folder: the real reason), one over the pixel limit, a
        forged or damaged header, or one that is neither a readable ``.npy`` array nor an image.
    """
    p = Path(path)
    try:
        require_file(p, what, "pass a PNG or .npy file")
    except ExplainError as exc:
        raise OptionError(option, str(exc)) from None
    if p.suffix.lower() == ".npy":
        return _read_npy_map(p, option, what, max_pixels)
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's size warnings: our own limit, below, governs
            with Image.open(p) as img:
                _check_pixels(p, option, what, img.size[1], img.size[0], max_pixels)
                if lossless and img.format in _LOSSY_FORMATS:
                    raise OptionError(option, f"{what} {p} is a {img.format} file: lossy compression turns a few "
                                      "ids into many; save the map as PNG or .npy")
                img.load()
                if mode is not None:
                    return np.asarray(img.convert(mode))
                if img.mode in ("RGB", "RGBA"):
                    rgb = np.asarray(img.convert("RGB"), dtype=np.int64)
                    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # one id per colour
                return np.asarray(img if img.mode in ("L", "P", "I", "I;16") else img.convert("I"))
    except Image.DecompressionBombError as exc:
        raise OptionError(option, f"{what} {p} is refused before decoding: {one_line(exc)}") from None
    except MemoryError:
        raise OptionError(option, f"{what} {p} does not fit in memory once decoded") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise OptionError(option, f"{what} {p} is not a .npy file or an image Pillow can read: {one_line(exc)}") from None


def map_shape(path: str | Path, option: str, what: str) -> tuple[int, int]:
    """(H, W) of a map file from its header alone (a ``.npy``'s shape, an image's size): nothing decoded.

    Raises
    ------
    OptionError
        As :func:`read_map` for a file that is missing, odd, or not a ``.npy`` or an image.
    """
    p = Path(path)
    try:
        require_file(p, what, "pass a PNG or .npy file")
        if p.suffix.lower() == ".npy":
            from explain_cli.inputs.tensors import read_npy_header

            return _npy_plane(p, option, what, read_npy_header(p, what=what)[0])
    except OptionError:
        raise
    except ExplainError as exc:
        raise OptionError(option, str(exc)) from None
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(p) as img:
                return img.size[1], img.size[0]
    except Image.DecompressionBombError as exc:
        raise OptionError(option, f"{what} {p} is refused before decoding: {one_line(exc)}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise OptionError(option, f"{what} {p} is not a .npy file or an image Pillow can read: {one_line(exc)}") from None


def _npy_plane(p: Path, option: str, what: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """(H, W) of a ``.npy`` map's header ``shape``: 2-D, or 3-D with a single plane (1, H, W) or (H, W, 1)."""
    plane = shape[1:] if len(shape) == 3 and shape[0] == 1 else shape[:2] if len(shape) == 3 and shape[2] == 1 else shape
    if len(plane) != 2:
        raise OptionError(option, f"{what} {p} must be 2-D (H, W), got shape {list(shape)}")
    return int(plane[0]), int(plane[1])


def _check_pixels(p: Path, option: str, what: str, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise OptionError(option, f"{what} {p} declares {width}×{height} = {height * width / 1e6:.1f} megapixels, over "
                          f"the limit of {max_pixels / 1e6:g} megapixels; downscale it, or raise `max_pixels`")


def _read_npy_map(p: Path, option: str, what: str, max_pixels: int) -> np.ndarray:
    """A ``.npy`` map, its header checked (2-D, numeric, within the limit, data present) before its data is read."""
    import os

    from explain_cli.inputs.tensors import read_npy_header

    try:
        shape, _, dtype, offset = read_npy_header(p, what=what)
    except ExplainError as exc:
        raise OptionError(option, str(exc)) from None
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise OptionError(option, f"{what} {p} must hold a numeric array, not dtype {dtype}")
    height, width = _npy_plane(p, option, what, shape)  # the header already read: not read again
    _check_pixels(p, option, what, height, width, max_pixels)
    needed = math.prod(shape) * dtype.itemsize
    if needed > os.path.getsize(p) - offset:
        raise OptionError(option, f"{what} {p} declares shape {list(shape)} of {dtype} but holds less data; the file "
                          "is truncated or its header is wrong")
    try:
        return np.load(p, allow_pickle=False)
    except MemoryError:
        raise OptionError(option, f"{what} {p} does not fit in memory") from None
    except (ValueError, OSError, EOFError) as exc:
        raise OptionError(option, f"{what} {p} is not a readable .npy array: {one_line(exc)}") from None


def read_saved_map(npy: Path, shape: list[int], sha256: str, owner: str) -> np.ndarray:
    """The (K, H, W) float32 maps ``save_map`` wrote to ``npy``, proven to be those ``owner`` (a JSON's name) records.

    The header is read first (``shape`` of little-endian float32, the file exactly that long),
    then the file's bytes are read once: hashed against ``sha256``, and the same bytes are the
    array (no pickles, and no second read that could see another file).

    Raises
    ------
    ExplainError
        Another shape, dtype or length (a file from another run), another hash (edited), or unreadable.
    """
    import hashlib
    import os

    from explain_cli.fileio import read_error_reason
    from explain_cli.inputs.tensors import read_npy_header

    found, fortran, dtype, offset = read_npy_header(npy, what="saved map")
    size = offset + math.prod(shape) * 4
    if list(found) != list(shape) or dtype != np.dtype("<f4") or os.path.getsize(npy) != size:
        raise ExplainError(f"{npy} holds shape {list(found)} of {dtype}, not the {shape} float32 maps "
                           f"{owner} records; it belongs to another run: {SAVED_MAP_FIX}")
    data = bytearray(size)
    try:
        with open(npy, "rb") as fh:
            if fh.readinto(data) != size:
                raise OSError("the file changed while it was read")
    except OSError as exc:
        raise ExplainError(f"cannot read {npy}: {read_error_reason(exc)}") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ExplainError(f"{npy} is not the map {owner} records (its SHA-256 differs): it was written by "
                           f"another run or edited; {SAVED_MAP_FIX}")
    flat = np.frombuffer(data, dtype="<f4", offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C")


def check_label_map(labels: Any, source: str) -> np.ndarray:
    """Validate a user's label map (captum's feature_mask): a 2-D integer array, relabelled 0..M-1.

    Raises
    ------
    OptionError
        Not 2-D, not integers (booleans and fractional floats refused), or empty.
    """
    from explain_cli.segmentation import relabel

    try:
        import torch

        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    array = np.asarray(labels)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or min(array.shape) < 1:
        raise OptionError("segments", f"label map {source} must be 2-D (H, W), got shape {list(array.shape)}")
    if array.dtype.kind == "f":
        array = _float_ids(array, source)
    if array.dtype.kind not in "iu":
        raise OptionError("segments", f"label map {source} must hold integer ids, got dtype {array.dtype}")
    labels = relabel(array)
    from explain_cli.budget import check_segments

    check_segments(int(labels.max()) + 1 if labels.size else 0, "", option="segments")
    return labels


def _float_ids(array: np.ndarray, source: str) -> np.ndarray:
    """Float ids as int64, when every one is an integer the float holds exactly (else two ids may have merged)."""
    exact = _EXACT_FLOAT_INT.get(array.dtype.itemsize, 2**53)
    if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
        raise OptionError("segments", f"label map {source} must hold integer ids, got fractional or non-finite "
                          f"{array.dtype} values")
    if array.size and float(np.abs(array).max()) > exact:
        raise OptionError("segments", f"label map {source} holds {array.dtype} ids beyond ±{exact:,}, where floats "
                          "no longer keep distinct integers apart; save integer ids (e.g. int64)")
    return array.astype(np.int64)


def load_label_map(path: str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A label map file (:func:`read_map`, lossless formats only), checked and relabelled 0..M-1."""
    return check_label_map(read_map(path, "segments", "label map", max_pixels=max_pixels, lossless=True),
                           str(Path(path)))


def is_label_map(value: Any) -> bool:
    """True when a ``segments`` value names a label-map file rather than a segmenter."""
    from explain_cli.segmentation import SEGMENTERS

    return isinstance(value, str) and value not in SEGMENTERS


def parse_segments(value: str) -> str:
    """The ``segments`` option's parse hook: a segmenter's name, or a file that exists (its map is read, within
    ``max_pixels``, when the settings are resolved: :func:`load_label_map`)."""
    from explain_cli.segmentation import SEGMENTERS

    if value in SEGMENTERS:
        return value
    if not (Path(value).exists() or Path(value).is_symlink()):
        raise OptionError("segments", f"must be one of {', '.join(SEGMENTERS)} or an existing label-map file; "
                          f"{value!r} is neither")
    return value
