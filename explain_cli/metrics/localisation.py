"""Localisation metrics: does a map point at the object, and how much of its energy lies on it.

Pointing game and energy in mask need only a map and an object mask of one resolution;
:func:`load_mask` reads the mask a run's ``mask`` option names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from explain_cli.errors import ExplainError, OptionError


def load_mask(path: str) -> np.ndarray:
    """An object mask from a PNG (non-zero = object) or a ``.npy`` array; a bool (H, W) array."""
    p = Path(path)
    if not p.is_file():
        raise OptionError("mask", f"file {p} does not exist (a PNG or .npy with the object's pixels non-zero)")
    if p.suffix.lower() == ".npy":
        try:
            array = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise OptionError("mask", f"file {p} is not a readable .npy array: {exc}") from None
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as img:
                array = np.asarray(img.convert("L"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise OptionError("mask", f"file {p} is not an image Pillow can read: {exc}") from None
    array = np.squeeze(np.asarray(array))
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise OptionError("mask", f"file {p} must hold a 2-D numeric mask, got shape {list(array.shape)}")
    mask = array > 0
    if not mask.any():
        raise OptionError("mask", f"file {p} marks no object pixel")
    return mask


def _map_and_mask(saliency: np.ndarray, mask: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(saliency, dtype=np.float64)
    k = np.asarray(mask)
    if m.ndim != 2 or m.shape != k.shape:
        raise ExplainError(
            f"{name}: map {m.shape} and mask {k.shape} must be 2-D and of one size; resample the map to the mask's "
            "resolution first (e.g. preprocess.map_to_original)"
        )
    mask_bool = k > (127 if k.dtype == np.uint8 else 0)  # 0/255 PNG masks and 0/1 or bool masks alike
    if not mask_bool.any():
        raise ExplainError(f"{name}: the mask is empty; it must mark the object with non-zero pixels")
    return m, mask_bool


def pointing_hit(saliency: np.ndarray, mask: np.ndarray, tolerance_px: float = 0.0) -> bool:
    """Pointing game: does the map's maximum lie within ``tolerance_px`` of the object?

    Both arrays share one resolution; the tolerance is in its pixels (Zhang et al. use 15 px
    at about 224 px). NaN pixels (outside the model's view) are ignored. When several pixels
    share the maximum (a segment-level map), it is a hit if any of them is within tolerance; a
    constant map points nowhere and is a miss.

    Parameters
    ----------
    saliency : (H, W) float array
    mask : (H, W) bool, 0/1 or 0/255 array
        The object.
    tolerance_px : float
        Largest allowed Euclidean distance from the maximum to the nearest object pixel.

    Examples
    --------
    >>> m = np.zeros((8, 8)); m[0, 0] = 1.0
    >>> mask = np.zeros((8, 8), bool); mask[0, 3:] = True
    >>> pointing_hit(m, mask, 2), pointing_hit(m, mask, 3)
    (False, True)
    """
    from scipy.ndimage import distance_transform_edt

    m, obj = _map_and_mask(saliency, mask, "pointing_hit")
    if tolerance_px < 0:
        raise OptionError("tolerance_px", f"must be >= 0, got {tolerance_px}")
    finite = np.isfinite(m)
    if not finite.any():
        return False
    top = np.nanmax(m)
    if top == np.nanmin(m):
        return False
    distance = distance_transform_edt(~obj)  # 0 inside the object, Euclidean distance outside
    return bool(np.any(distance[finite & (m == top)] <= tolerance_px + 1e-9))


def energy_in_mask(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive attribution that lies inside the object: Σ_mask max(s, 0) / Σ max(s, 0).

    Negative values and NaN are ignored (evidence against a class is not "energy" for it). NaN
    when the map has no positive value, so the caller can write null.
    """
    m, obj = _map_and_mask(saliency, mask, "energy_in_mask")
    positive = np.where(np.isfinite(m), np.maximum(m, 0.0), 0.0)
    total = positive.sum()
    return float(positive[obj].sum() / total) if total > 0 else float("nan")


def check_mask_fits(path: str, inputs: Sequence[tuple[str, tuple[int, ...]]]) -> None:
    """Refuse a ``mask`` that is not the size of every input, before any model evaluation.

    ``inputs`` are (name, (H, W)) pairs: each input's name and size as read (the resolution the
    maps are scored at).

    Raises
    ------
    OptionError
        The mask's size and the first input it does not fit.
    """
    shape = load_mask(path).shape
    for name, size in inputs:
        if tuple(shape) != tuple(size):
            raise OptionError("mask", f"is {list(shape)} but the input {name} is {list(size)}; "
                              "give the object's mask at the input's resolution")
