"""Panels: the picture resampled to panel size, a map coloured over it, and numbered segments."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np

from explain_cli.render.boundaries import Boundaries, draw_lines
from explain_cli.render.colormaps import apply_cmap
from explain_cli.render.layout import INK, PAPER, load_font

if TYPE_CHECKING:
    from PIL import Image as PILImage

MIN_PANEL = 256  # short side of a panel, px: smaller inputs are enlarged to stay legible
MAX_PANEL = 1024  # long side of a panel, px: larger photos are reduced (the .npy keeps full resolution)


def panel_size(h: int, w: int, *, min_size: int = MIN_PANEL, max_size: int | None = MAX_PANEL) -> tuple[int, int, bool]:
    """The (height, width) a panel for an h×w image gets, and whether to enlarge it with nearest.

    The short side is raised to ``min_size``; an enlargement of 3× or more is rounded up to a
    whole factor and drawn with nearest neighbour, because such small inputs are pixel data
    (a 16×16 tensor) whose pixels should stay visible rather than blur into mush. A long side
    above ``max_size`` is reduced (``max_size`` wins over ``min_size`` for extreme aspect ratios).
    """
    short, long = min(h, w), max(h, w)
    factor, nearest = 1.0, False
    if short < min_size:
        factor = min_size / short
        if factor >= 3:
            factor, nearest = float(math.ceil(factor)), True
    if max_size is not None and long * factor > max_size:
        factor, nearest = max_size / long, False
    return max(1, round(h * factor)), max(1, round(w * factor)), nearest


def _resize_rgb(image: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    from PIL import Image

    h, w = size
    if image.shape[:2] == (h, w):
        return image
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(image).resize((w, h), method))


def resize_float(values: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """Resample a float map; NaN (outside the model's window) stays NaN, resampled with nearest."""
    from PIL import Image

    h, w = size
    if values.shape == (h, w):
        return values.astype(np.float64, copy=True)
    finite = np.isfinite(values)
    # Fill NaN with 0 before interpolating, then put NaN back from the nearest-resampled mask.
    filled = np.where(finite, values, 0.0).astype(np.float32)
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    out = np.asarray(Image.fromarray(filled).resize((w, h), method), dtype=np.float64)
    mask = np.asarray(Image.fromarray(finite.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)) > 0
    return np.where(mask, out, np.nan)


class Base(NamedTuple):
    """The picture at panel size: colour, and the dimmed greyscale copy maps are drawn over."""

    colour: np.ndarray  # (h, w, 3) uint8
    grey: np.ndarray  # (h, w, 3) float, dimmed greyscale under a map
    outside: np.ndarray  # (h, w, 3) float, darker greyscale where the model saw nothing
    nearest: bool


def as_rgb(display: np.ndarray) -> np.ndarray:
    """``display`` as (H, W, 3) uint8: grey repeated, alpha dropped; a ValueError for other shapes or dtypes."""
    image = np.asarray(display)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"display must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"display must be uint8 (0..255); got {image.dtype}")
    image = image[..., :3]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def panel_base(display: np.ndarray, size: tuple[int, int], nearest: bool) -> Base:
    """The picture resampled to panel ``size`` and its greyscale copies (see `Base`)."""
    colour = np.ascontiguousarray(_resize_rgb(display, size, nearest))
    lum = colour.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    # Grey keeps the image's structure without lending hue to the map; the compressed range
    # (40..190) keeps the map's colours from being pushed to black or white by the image.
    grey = np.repeat((40.0 + lum * (150.0 / 255.0))[..., None], 3, axis=2)
    outside = np.repeat((25.0 + lum * (90.0 / 255.0))[..., None], 3, axis=2)
    return Base(colour, grey, outside, nearest)


def _colourize(values: np.ndarray, vrange: tuple[float, float], cmap: str) -> np.ndarray:
    lo, hi = vrange
    return apply_cmap((values - lo) / (hi - lo), cmap)


def map_panel(base: Base, values: np.ndarray, vrange: tuple[float, float], cmap: str, opacity: float,
              bounds: Boundaries | None, outline_ids: Sequence[int], anchors: Sequence[tuple[float, float] | None],
              font_px: int) -> "PILImage.Image":
    """One map drawn over the base (opacity < 1) or alone (opacity = 1), with boundaries and numbers."""
    from PIL import Image

    inside = np.isfinite(values)
    colour = _colourize(values, vrange, cmap)
    rgb = np.where(inside[..., None], opacity * colour + (1.0 - opacity) * base.grey, base.outside)
    rgb = draw_lines(rgb, bounds, outline_ids, font_px)
    panel = Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8))
    if anchors:
        draw_number_boxes(panel, anchors, [str(i + 1) for i in range(len(anchors))], font_px)
    return panel


def panel_anchors(labels_full: np.ndarray | None, ids: Sequence[int], size: tuple[int, int]) -> list[tuple[float, float] | None]:
    """Where each of segments ``ids`` gets its number, in the pixels of a panel of ``size`` (none without labels)."""
    if labels_full is None or not ids:
        return []
    h0, w0 = labels_full.shape
    fy, fx = size[0] / h0, size[1] / w0
    return [None if a is None else ((a[0] + 0.5) * fy - 0.5, (a[1] + 0.5) * fx - 0.5)
            for a in _segment_anchors(labels_full, ids)]


def _segment_anchors(labels: np.ndarray, ids: Sequence[int]) -> list[tuple[float, float] | None]:
    """(row, col) in the label map's pixels where each segment's number goes, None if absent.

    The centroid, unless it falls outside the segment (a C-shaped one): then the segment's
    pixel nearest to it, so a number always sits on its own segment.
    """
    anchors: list[tuple[float, float] | None] = []
    for seg in ids:
        rows, cols = np.nonzero(labels == seg)
        if rows.size == 0:
            anchors.append(None)
            continue
        cy, cx = float(rows.mean()), float(cols.mean())
        iy, ix = int(round(cy)), int(round(cx))
        if not (0 <= iy < labels.shape[0] and 0 <= ix < labels.shape[1] and labels[iy, ix] == seg):
            k = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
            cy, cx = float(rows[k]), float(cols[k])
        anchors.append((cy, cx))
    return anchors


def draw_number_boxes(panel: "PILImage.Image", anchors: Sequence[tuple[float, float] | None], texts: Sequence[str],
                      font_px: int) -> None:
    """White rounded boxes with dark numbers centred on the anchors (panel pixels), kept inside the panel."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(panel)
    font = load_font(font_px)
    pad = max(2, font_px // 5)
    # Box height from the digits' ink, so every box of a figure has the same height.
    x0, y0, x1, y1 = draw.textbbox((0, 0), "0123456789", font=font, anchor="lt")
    box_h = (y1 - y0) + 2 * pad
    for anchor, text in zip(anchors, texts):
        if anchor is None:
            continue
        cy, cx = anchor
        box_w = max(box_h, draw.textlength(text, font=font) + 2 * pad + 2)
        left = float(np.clip(cx - box_w / 2, 1, panel.width - box_w - 2))
        top = float(np.clip(cy - box_h / 2, 1, panel.height - box_h - 2))
        draw.rounded_rectangle([left, top, left + box_w, top + box_h], radius=max(2, box_h // 4),
                               fill=PAPER, outline=(40, 40, 40), width=1)
        draw.text((left + box_w / 2, top + box_h / 2), text, fill=INK, font=font, anchor="mm")



#: A drawn box's colour: a green that none of the colour maps (RdBu, inferno, viridis ...) nor grey takes.
BOX_COLOUR = (0, 230, 118)


def draw_box(panel: "PILImage.Image", box: Sequence[float], image_hw: tuple[int, int], font_px: int) -> None:
    """Outline ``box`` (x1, y1, x2, y2 in the image's pixels) on a panel of that image, over a dark halo."""
    from PIL import ImageDraw

    sy, sx = panel.height / image_hw[0], panel.width / image_hw[1]
    x1, y1, x2, y2 = (float(box[0]) * sx, float(box[1]) * sy, float(box[2]) * sx, float(box[3]) * sy)
    width = max(2, font_px // 6)
    draw = ImageDraw.Draw(panel)
    corners = [min(max(x1, 0), panel.width - 1), min(max(y1, 0), panel.height - 1),
               min(max(x2, x1 + 1), panel.width - 1), min(max(y2, y1 + 1), panel.height - 1)]
    draw.rectangle([corners[0] - 1, corners[1] - 1, corners[2] + 1, corners[3] + 1], outline=(0, 0, 0), width=width + 2)
    draw.rectangle(corners, outline=BOX_COLOUR, width=width)
