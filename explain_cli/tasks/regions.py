"""Regions for segmentation targets: checks, ids, and the carry from the image to the model's output map.

Three frames::

    original (H0, W0)  the image as loaded: where a user draws a region
    model    (H, W)    the model input, after the preprocessing's resize and crop
    output   (H', W')  the model's class map, at whatever resolution the model returns

original -> model: :meth:`~explain_cli.preprocess.Geometry.to_model` with ``nearest-exact`` (the
same resize-and-crop arithmetic as the image, so a region stays on the pixels it was drawn on).

model -> output: nearest neighbour, centre-aligned. Output cell (i, j) takes the model-input
pixel under its centre::

    row = floor((i + 1/2) · H / H'),   col = floor((j + 1/2) · W / W')

For a network of stride s (H = s·H') that is pixel (s·i + s//2, s·j + s//2): the cell's middle.
When H' = H the map is the identity. Computed in integers, so no rounding can move a cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from explain_cli.errors import OptionError

if TYPE_CHECKING:
    from explain_cli.preprocess import Geometry

#: ``(x1, y1, x2, y2)`` pixel edges: x1, y1 the first column and row inside, x2, y2 one past the last.
PixelBox = tuple[int, int, int, int]


def region_ids(region: Any, option: str = "region") -> np.ndarray:
    """A region as an (H, W) int64 label map: 0 is outside every region, each id > 0 one region.

    Parameters
    ----------
    region : (H, W) array-like, or (1, H, W) / (H, W, 1)
        A binary mask (bool, or 0 and any one non-zero value, e.g. a 0/255 PNG) or an integer
        label map. Float arrays are accepted when every value is a whole number.
    option : str
        The option named in errors.

    Returns
    -------
    (H, W) int64 ndarray
        A new array; the caller's is never modified.

    Raises
    ------
    OptionError
        For a non-2-D array, fractional, negative or non-finite values, or a region with no pixel.
    """
    if isinstance(region, (str, bytes)) or hasattr(region, "__fspath__"):
        raise OptionError(option, f"{str(region)!r} is a path: the front door reads the file (PNG or .npy) into an "
                                  "array; a task takes the array")
    if hasattr(region, "detach"):  # a torch tensor, on any device
        region = region.detach().cpu().numpy()
    arr = np.asarray(region)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:-1])
    if arr.ndim != 2 or arr.size == 0:
        raise OptionError(option, f"must be a 2-D mask or label map (H, W), got an array of shape {list(arr.shape)}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise OptionError(option, f"must hold numbers (a mask or integer label map), got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not (arr == np.round(arr)).all():
            raise OptionError(option, "must be a binary mask or an integer label map; it holds fractional or "
                                      "non-finite values (threshold a soft mask first)")
    ids = arr.astype(np.int64)  # a copy: the caller's array stays as it was
    if (ids < 0).any():
        raise OptionError(option, f"has negative ids (min {int(ids.min())}); use 0 for outside and ids > 0 for regions")
    if not ids.any():
        raise OptionError(option, "is empty: it has no non-zero pixel; mark the region with non-zero values")
    return ids


def check_region_size(ids: np.ndarray, size: tuple[int, int], frame: str, option: str = "region") -> None:
    """Raise a one-line OptionError unless ``ids`` is ``size`` = (H, W)."""
    if tuple(ids.shape) != tuple(size):
        h, w = ids.shape
        raise OptionError(option, f"is {h}x{w} (height x width) but the {frame} is {size[0]}x{size[1]}; "
                                  f"give a mask or label map at the {frame}'s resolution")


def ids_to_model(ids: np.ndarray, geometry: "Geometry") -> np.ndarray:
    """An (H0, W0) label map carried through the resize and crop to (H, W) (nearest-exact)."""
    import torch

    if geometry.resized == geometry.original and geometry.model == geometry.original:
        return ids.copy()
    src = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.float64))[None]  # float64 holds every id exactly
    return geometry.to_model(src, "nearest-exact")[0].round().long().numpy()


def nearest_rows(n_in: int, n_out: int) -> np.ndarray:
    """Source indices of a centre-aligned nearest resampling from ``n_in`` to ``n_out`` samples."""
    return (2 * np.arange(n_out, dtype=np.int64) + 1) * n_in // (2 * n_out)


def resample_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) -> (..., H', W') by the centre-aligned nearest rule of the module docstring."""
    h, w = mask.shape[-2:]
    if (h, w) == tuple(size):
        return mask.copy()
    rows, cols = nearest_rows(h, size[0]), nearest_rows(w, size[1])
    return mask[..., rows[:, None], cols[None, :]]


def pixel_bbox(mask: np.ndarray) -> PixelBox:
    """``(x1, y1, x2, y2)`` pixel edges of a non-empty (H, W) mask (x2, y2 one past the last pixel)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def mask_to_original(mask: np.ndarray, geometry: "Geometry") -> np.ndarray:
    """An (H, W) model-frame mask drawn back on the (H0, W0) original (False outside the model's window)."""
    full = geometry.to_original(mask[None].astype(np.float64), nearest=True)[0]
    return np.nan_to_num(full, nan=0.0) > 0.5
