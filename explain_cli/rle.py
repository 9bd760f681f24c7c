"""Run-length encoding of a boolean mask, so a JSON document can carry a region's exact shape.

Row-major runs alternating False and True, starting with False (a leading 0 when the first
pixel is inside): ``{"size": [H, W], "counts": [...]}``. A blob costs about two runs per row.

>>> m = [[False, True, True], [True, False, False]]
>>> rle_encode(m)
{'size': [2, 3], 'counts': [1, 3, 2]}
>>> rle_decode(rle_encode(m)).tolist() == m
True
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rle_encode(mask: Any) -> dict[str, Any]:
    """``mask``: (H, W) bool-like. Returns the JSON-ready runs."""
    m = np.asarray(mask, dtype=bool)
    flat = m.ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """The (H, W) bool mask of :func:`rle_encode`'s output; ValueError when the runs do not fill it."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any() or int(counts.sum()) != h * w:
        raise ValueError(f"run lengths do not cover a {h}x{w} mask")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(h, w)
