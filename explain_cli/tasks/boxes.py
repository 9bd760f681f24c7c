"""Boxes a user names: parsing ``X1,Y1,X2,Y2[,LABEL]``, checks, and the map between image frames.

A user names a box in the pixels of the image as loaded (the original); the detector works in
the model input's pixels, after resize and crop. :class:`~explain_cli.preprocess.Geometry`
records the window of the original the model sees; these functions carry boxes both ways.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from explain_cli.errors import OptionError

if TYPE_CHECKING:
    import numpy as np

Box = tuple[float, float, float, float]
BOX_FORM = "X1,Y1,X2,Y2 or X1,Y1,X2,Y2,LABEL (pixels, LABEL a class name or index)"


def is_box(item: Any) -> bool:
    """True for a box target: a 4- or 5-item tuple/list of numbers (+ label), or a comma-separated string."""
    if isinstance(item, str):  # "X1,..." : a comma and a number first (class names may hold commas)
        first = item.split(",")[0].strip()
        return "," in item and first.replace(".", "", 1).lstrip("-").isdigit()
    return isinstance(item, (tuple, list)) and len(item) in (4, 5) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in item[:4])


def parse_box(item: Any, option: str = "box") -> tuple[Box, str | int | None]:
    """``(x1, y1, x2, y2), label`` from a string ``X1,Y1,X2,Y2[,LABEL]`` or a tuple; label None if absent.

    The label stays as given (a name, or an int index); :func:`check_box` checks the geometry.

    Raises
    ------
    OptionError
        Naming ``option`` for a wrong count, non-numbers or non-finite values.
    """
    parts = [p.strip() for p in item.split(",")] if isinstance(item, str) else list(item)
    if len(parts) not in (4, 5):
        raise OptionError(option, f"must be {BOX_FORM}; got {item!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in parts[:4])
    except (TypeError, ValueError):
        raise OptionError(option, f"must be {BOX_FORM}; got {item!r}") from None
    coords: Box = (x1, y1, x2, y2)
    if not all(math.isfinite(v) for v in coords):
        raise OptionError(option, f"must have finite coordinates; got {item!r}")
    label: Any = parts[4] if len(parts) == 5 else None
    if isinstance(label, str):
        label = int(label) if label.lstrip("-").isdigit() else (label or None)
    return coords, label


def check_box(box: Box, size: tuple[int, int], option: str = "box", frame: str = "image") -> Box:
    """The box unchanged if it has area and lies inside a ``size`` = (H, W) frame, else a clear error."""
    x1, y1, x2, y2 = box
    h, w = size
    shown = ",".join(f"{v:g}" for v in box)
    if x2 < x1 or y2 < y1:
        raise OptionError(option, f"{shown} has x2 < x1 or y2 < y1; give X1,Y1,X2,Y2 with X1 < X2 and Y1 < Y2")
    if x2 == x1 or y2 == y1:
        raise OptionError(option, f"{shown} has no area; give X1 < X2 and Y1 < Y2")
    if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
        raise OptionError(option, f"{shown} lies outside the {w}x{h} {frame} (x in 0..{w}, y in 0..{h})")
    return box


def box_to_model(box: Box, geometry: Any, option: str = "box") -> Box:
    """A box in original-image pixels carried into model-input pixels, clipped to the window the model sees.

    Raises
    ------
    OptionError
        If the box lies entirely in a part of the image the preprocessing crops away.
    """
    top, left, height, width = geometry.box
    h, w = geometry.model
    sx, sy = w / width, h / height
    x1, y1, x2, y2 = box
    mapped = ((x1 - left) * sx, (y1 - top) * sy, (x2 - left) * sx, (y2 - top) * sy)
    clipped = (min(max(mapped[0], 0.0), w), min(max(mapped[1], 0.0), h),
               min(max(mapped[2], 0.0), w), min(max(mapped[3], 0.0), h))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        shown = ",".join(f"{v:g}" for v in box)
        raise OptionError(option, f"{shown} lies outside the part of the image the model sees (the preprocessing "
                                  "crops it away); pass a box inside the crop, or preprocess with size H,W")
    return clipped


def box_to_original(box: Box, geometry: Any) -> Box:
    """A box in model-input pixels carried back into original-image pixels (what the picture draws)."""
    top, left, height, width = geometry.box
    h, w = geometry.model
    sx, sy = width / w, height / h
    x1, y1, x2, y2 = box
    return (left + x1 * sx, top + y1 * sy, left + x2 * sx, top + y2 * sy)


def box_mask(box: Box, size: tuple[int, int]) -> "np.ndarray":
    """(H, W) bool mask of the pixels whose centres lie inside ``box`` (model-input pixels).

    The default mask of pointing and energy-in-box for a detection target.
    """
    import numpy as np

    h, w = size
    x1, y1, x2, y2 = box
    cols = np.arange(w) + 0.5
    rows = np.arange(h) + 0.5
    return ((rows >= y1) & (rows <= y2))[:, None] & ((cols >= x1) & (cols <= x2))[None, :]
