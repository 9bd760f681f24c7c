"""Maps a user gives as files or arrays: segment label maps (``segments``), read without pickles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from explain_cli.errors import OptionError


def read_map(path: str | Path, option: str, what: str) -> np.ndarray:
    """A 2-D map from ``.npy`` (no pickles) or an image file: grey, 16-bit and palette ids as stored,
    one id per colour for RGB(A). Errors name ``option`` and call the file ``what``.

    Raises
    ------
    OptionError
        A missing file, or one that is neither a readable ``.npy`` array nor an image Pillow reads.
    """
    p = Path(path)
    if not p.is_file():
        raise OptionError(option, f"{what} {p} does not exist")
    if p.suffix.lower() == ".npy":
        try:
            return np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise OptionError(option, f"{what} {p} is not a readable .npy array: {exc}") from None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as img:
            img.load()
            if img.mode in ("RGB", "RGBA"):
                rgb = np.asarray(img.convert("RGB"), dtype=np.int64)
                return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # one id per colour
            return np.asarray(img if img.mode in ("L", "P", "I", "I;16") else img.convert("I"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise OptionError(option, f"{what} {p} is not a .npy file or an image Pillow can read: {exc}") from None


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
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise OptionError("segments", f"label map {source} must hold integer ids, got dtype {array.dtype}")
    return relabel(array)


def load_label_map(path: str) -> np.ndarray:
    """A label map file (:func:`read_map`), checked and relabelled 0..M-1."""
    return check_label_map(read_map(path, "segments", "label map"), str(Path(path)))


def parse_segments(value: str) -> str | np.ndarray:
    """The ``segments`` option's parse hook: a segmenter's name as it is, else the label map that file holds."""
    from explain_cli.segmentation import SEGMENTERS

    if value in SEGMENTERS:
        return value
    if not Path(value).is_file():
        raise OptionError("segments", f"must be one of {', '.join(SEGMENTERS)} or an existing label-map file; "
                          f"{value!r} is neither")
    return load_label_map(value)
