"""Smooth segment boundaries: anti-aliased lines drawn from blurred segment indicators.

Label maps upsampled from the model's resolution are staircases; each segment's indicator is
blurred at the upsampling's scale, so the boundary follows the segment's real shape and a line of
any width can be drawn with one pixel of anti-aliasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np

from explain_cli.blur import blur_drawing


def segments_layer(labels_full: np.ndarray | None, size: tuple[int, int], nearest: bool,
                   outline: Sequence[int]) -> Boundaries | None:
    """The boundaries of a label map at the original resolution, drawn at panel ``size`` (None: no map)."""
    if labels_full is None:
        return None
    h0, _ = labels_full.shape
    factor = size[0] / h0
    step = _label_step(labels_full)
    # Smooth away the staircase left by upsampling model-space segments; keep real pixel edges
    # (step ~1, or an enlarged pixel-art input) and rectangles (grid cells) crisp and straight,
    # with just enough blur to anti-alias.
    smooth = step >= 1.5 and not nearest and not all_rectangles(labels_full)
    sigma = max(1.5, 0.5 * step * factor) if smooth else 1.5
    # The outlines' blur must keep the margin linear out to the halo (~2 px) yet not swallow
    # a segment's thin parts (a part narrower than ~2 sigma would be painted solid).
    return _boundaries(resize_labels(labels_full, size), sigma, outline, outline_sigma=max(2.0, sigma))


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-resample segment ids to ``size``; NaN (outside the window) becomes -1."""
    from PIL import Image

    ids = np.where(np.isfinite(labels), labels, -1).astype(np.float32)
    h, w = size
    if ids.shape != (h, w):
        ids = np.asarray(Image.fromarray(ids).resize((w, h), Image.Resampling.NEAREST))
    return np.rint(ids).astype(np.int64)


class _SegmentBoxes(NamedTuple):
    """Per segment id of a label map (increasing, negative ones included): its pixel count and bounding box."""

    ids: np.ndarray
    counts: np.ndarray
    top: np.ndarray  # first row
    bottom: np.ndarray  # last row
    left: np.ndarray  # first column
    right: np.ndarray  # last column


def _segment_boxes(ids: np.ndarray) -> _SegmentBoxes:
    """The bounding box and pixel count of every id in the (H, W) integer map ``ids``."""
    _, w = ids.shape
    flat = ids.ravel()
    order = np.argsort(flat, kind="stable")
    unique, starts, counts = np.unique(flat[order], return_index=True, return_counts=True)
    rows, cols = np.divmod(order, w)
    return _SegmentBoxes(unique, counts, np.minimum.reduceat(rows, starts), np.maximum.reduceat(rows, starts),
                         np.minimum.reduceat(cols, starts), np.maximum.reduceat(cols, starts))


def all_rectangles(labels: np.ndarray) -> bool:
    """Whether every segment of ``labels`` (NaN outside) is one axis-aligned rectangle, as grid cells are."""
    boxes = _segment_boxes(np.where(np.isfinite(labels), labels, -1).astype(np.int64))
    inside = boxes.ids >= 0
    if not inside.any():
        return False
    height = boxes.bottom - boxes.top + 1
    width = boxes.right - boxes.left + 1
    return bool(np.all((height * width == boxes.counts)[inside]))


def _label_step(labels: np.ndarray) -> float:
    """How many original pixels one model pixel spans in a nearest-upsampled label map.

    Label changes can only happen where model pixels meet, so the median spacing of the
    columns (rows) where any change happens is the upsampling factor. Boundaries are smoothed
    at that scale, which turns the staircase of the upsampling into the segment's real shape.
    """
    ids = np.where(np.isfinite(labels), labels, -1)
    steps = []
    for axis in (0, 1):
        changed = np.diff(ids, axis=axis) != 0
        where = np.nonzero(changed.any(axis=1 - axis))[0]
        if where.size > 2:
            steps.append(float(np.median(np.diff(where))))
    return min(steps) if steps else 1.0


# Slope of erf at 0 (2/sqrt(pi)) for the two-region margin, and of the Gaussian CDF (1/sqrt(2 pi)):
# near an edge blurred with sigma, margin ≈ slope · distance / sigma.
_SLOPE_PAIR = 2.0 / math.sqrt(math.pi) / math.sqrt(2.0)
_SLOPE_ONE = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass
class Boundaries:
    """Approximate distances (panel px) to the nearest boundary and to each outlined segment's edge,
    and which segment owns each pixel once the staircase is smoothed away."""

    all: np.ndarray  # (h, w) distance to the nearest boundary between any two segments
    outlines: dict[int, np.ndarray] = field(default_factory=dict)  # id -> (h, w) distance to its edge
    owner: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))  # (h, w) smoothed segment id, -1 outside


def _boundaries(labels: np.ndarray, sigma: float, outline: Sequence[int] = (), outline_sigma: float = 2.0) -> Boundaries:
    """Soft boundaries of a panel-sized label map (-1 = outside the window).

    Each segment's indicator is blurred and the two largest values kept per pixel: their
    margin grows linearly with the distance to the boundary, so a line of any width can be
    drawn anti-aliased from it. Work is confined to each segment's padded bounding box.
    """
    h, w = labels.shape
    ids, _, top_rows, bottom_rows, left_cols, right_cols = _segment_boxes(labels)
    first = np.zeros((h, w))
    second = np.zeros((h, w))
    owner = np.full((h, w), -1, dtype=np.int64)
    pad = int(math.ceil(3 * sigma)) + 1
    wanted = {int(i) for i in outline}
    out = Boundaries(all=np.zeros((h, w)))
    for i, seg in enumerate(ids):
        t, b = max(0, top_rows[i] - pad), min(h, bottom_rows[i] + pad + 1)
        le, r = max(0, left_cols[i] - pad), min(w, right_cols[i] + pad + 1)
        inside = (labels[t:b, le:r] == seg).astype(np.float64)
        soft = blur_drawing(inside, sigma)
        f, s, o = first[t:b, le:r], second[t:b, le:r], owner[t:b, le:r]
        higher = soft > f
        s[...] = np.where(higher, f, np.maximum(s, soft))
        f[...] = np.where(higher, soft, f)
        o[...] = np.where(higher, seg, o)
        if int(seg) in wanted:
            # A wider blur for outlines: the margin must stay linear out to the halo's width.
            pad_o = int(math.ceil(3 * outline_sigma)) + 1
            t2, b2 = max(0, top_rows[i] - pad_o), min(h, bottom_rows[i] + pad_o + 1)
            l2, r2 = max(0, left_cols[i] - pad_o), min(w, right_cols[i] + pad_o + 1)
            soft_o = blur_drawing((labels[t2:b2, l2:r2] == seg).astype(np.float64), outline_sigma)
            dist = np.full((h, w), np.inf)
            dist[t2:b2, l2:r2] = np.abs(soft_o - 0.5) * outline_sigma / _SLOPE_ONE
            out.outlines[int(seg)] = dist
    out.all = (first - second) * sigma / _SLOPE_PAIR
    out.owner = owner
    return out


def line_alpha(distance: np.ndarray, width: float) -> np.ndarray:
    """Coverage of a line of ``width`` px centred where distance = 0 (a one-pixel linear ramp)."""
    return np.clip(width / 2 + 0.5 - distance, 0.0, 1.0)


def blend(rgb: np.ndarray, colour: np.ndarray | tuple[float, float, float], alpha: np.ndarray) -> np.ndarray:
    """``rgb`` (h, w, 3) float with ``colour`` laid over it at per-pixel opacity ``alpha`` (h, w)."""
    a = alpha[..., None]
    return rgb * (1.0 - a) + np.asarray(colour, dtype=np.float64) * a


def _contrast_ink(rgb: np.ndarray) -> np.ndarray:
    """Per pixel, black over light colours and white over dark ones (for lines that always show)."""
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    return np.where((lum > 150)[..., None], 0.0, 255.0) * np.ones(3)


def line_widths(font_px: int) -> tuple[float, float]:
    """Widths (px) of the thin segment boundaries and of the top segments' outlines."""
    return max(1.0, font_px / 14), max(1.5, font_px / 9)


def draw_lines(rgb: np.ndarray, bounds: Boundaries | None, outline_ids: Sequence[int], font_px: int) -> np.ndarray:
    """``rgb`` with the thin boundaries and the outlines of ``outline_ids`` drawn (unchanged if ``bounds`` is None)."""
    if bounds is None:
        return rgb
    thin, thick = line_widths(font_px)
    # Semi-transparent, and black or white by what lies under it, so it reads on any colour.
    rgb = blend(rgb, _contrast_ink(rgb), 0.35 * line_alpha(bounds.all, thin))
    for seg in outline_ids:
        dist = bounds.outlines.get(int(seg))
        if dist is None:
            continue
        # A white line with a faint dark halo stands out on every colour of both ends of the map.
        rgb = blend(rgb, (0, 0, 0), 0.45 * line_alpha(dist, thick + 1.2))
        rgb = blend(rgb, (255, 255, 255), line_alpha(dist, thick))
    return rgb

