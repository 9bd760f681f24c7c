"""Heatmap figures drawn with numpy and Pillow (no torch, no matplotlib).

A figure is a title, a grid of panels (the image and one map per target, or per method and
target for ``explain compare``) and colour bars. The map is drawn opaquely over a dimmed
greyscale copy of the image (``style="overlay"``) or beside the colour image
(``style="side-by-side"``), so the map's colours never mix with the object's. One colour scale
is shared by the whole figure unless the caller asks otherwise (``scale``), so equal colours mean
equal scores. Segment boundaries are anti-aliased at the panel's resolution and the top segments
are outlined and numbered as in the JSON.

Every ``render_*_png`` function has a ``render_*_image`` twin that returns a ``PIL.Image.Image``
(for notebooks); the PNG bytes are that image, encoded. ``image.info[PANELS_KEY]`` lists the
panels' boxes (left, top, right, bottom), in reading order, for cropping one out.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np

from explain_cli.colormaps import NAMES as CMAPS
from explain_cli.colormaps import apply_cmap, default_cmap, lookup_table
from explain_cli.errors import OptionError

if TYPE_CHECKING:
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

STYLES: tuple[str, ...] = ("overlay", "side-by-side")
DEFAULT_STYLE = "overlay"
# Opaque enough that the map's colours read true; the rest shows the image's structure in grey.
DEFAULT_ALPHA = 0.7
DEFAULT_SCALE = "figure"
SCALE_FORMS: tuple[str, ...] = ("figure", "panel", "fixed:LO,HI")
MIN_PANEL = 256  # short side of a panel, px: smaller inputs are enlarged to stay legible
MAX_PANEL = 1024  # long side of a panel, px: larger photos are reduced (the .npy keeps full resolution)
MAX_COMPARE_PANEL = 512  # a montage has many panels; keep the whole figure screen-sized

# Key of ``image.info`` holding the panels' (left, top, right, bottom) boxes, row by row.
PANELS_KEY = "explain_cli.panels"

_INK = (25, 25, 25)
_PAPER = (255, 255, 255)


class Scale(NamedTuple):
    """A parsed ``scale`` option: ``mode`` is figure | panel | fixed; ``limits`` only for fixed."""

    mode: str
    limits: tuple[float, float] | None = None


def parse_scale(text: str | Scale) -> Scale:
    """Parse ``figure``, ``panel`` or ``fixed:LO,HI`` into a `Scale`.

    ``figure``: one colour scale (and bar) for the whole figure; ``panel``: each panel its own
    scale and bar; ``fixed:LO,HI``: the given limits, values beyond them clipped, so maps of
    different images can be compared.

    Raises
    ------
    OptionError
        Naming ``scale``, for an unknown form, a limit that is not a finite number, or LO >= HI.

    Examples
    --------
    >>> parse_scale("fixed:-0.1,0.1")
    Scale(mode='fixed', limits=(-0.1, 0.1))
    """
    if isinstance(text, Scale):
        return text
    raw = str(text).strip()
    if raw in ("figure", "panel"):
        return Scale(raw)
    if not raw.startswith("fixed:"):
        raise OptionError("scale", f"must be one of {', '.join(SCALE_FORMS)}, not {raw!r}")
    parts = [p.strip() for p in raw[len("fixed:"):].split(",")]
    if len(parts) != 2:
        raise OptionError("scale", f"fixed needs two limits, as in fixed:-0.5,0.5; got {raw!r}")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise OptionError("scale", f"fixed limits must be numbers, as in fixed:-0.5,0.5; got {raw!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise OptionError("scale", f"fixed limits must be finite; got {raw!r}")
    if lo >= hi:
        raise OptionError("scale", f"fixed needs LO < HI; got {raw!r}")
    return Scale("fixed", (lo, hi))


def _check_style(style: str) -> str:
    if style not in STYLES:
        raise OptionError("style", f"must be one of {', '.join(STYLES)}, not {style!r}")
    return style


def _check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, (int, float)) and 0.0 <= float(alpha) <= 1.0):
        raise OptionError("alpha", f"must be a number in [0, 1], not {alpha!r}")
    return float(alpha)


def _resolve_cmap(cmap: str | None, signed: bool) -> str:
    name = default_cmap(signed) if cmap is None else cmap
    lookup_table(name)  # raises OptionError("cmap", ...) for an unknown name
    return name


# --------------------------------------------------------------------------------------------
# Colour scales and ticks


def color_range(maps: np.ndarray, *, signed: bool) -> tuple[float, float]:
    """Colour limits for ``maps`` (any shape, NaN ignored): symmetric ±max|v| if signed, else [min, max].

    A constant or empty map gets a unit-wide range so that it still draws (as the centre
    colour if signed, the lowest colour otherwise).
    """
    finite = np.asarray(maps, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (-1.0, 1.0) if signed else (0.0, 1.0)
    if signed:
        vmax = float(np.abs(finite).max()) or 1.0
        return -vmax, vmax
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """About ``n`` round tick values (steps of 1, 2, 2.5 or 5 × 10^k) inside [lo, hi].

    Among the steps whose tick count is closest to ``n`` the largest wins, so ``±0.0506`` gets
    ``-0.05, -0.025, 0, 0.025, 0.05`` rather than ticks that stop short of the ends.
    """
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return np.array([lo])
    base = 10.0 ** math.floor(math.log10(span / max(n - 1, 1)))
    best: tuple[tuple[int, float], float] | None = None
    for mag in (base / 10, base, base * 10):
        for m in (1.0, 2.0, 2.5, 5.0):
            step = m * mag
            count = math.floor(hi / step + 1e-9) - math.ceil(lo / step - 1e-9) + 1
            if count < 2:
                continue
            key = (abs(count - n), -step)
            if best is None or key < best[0]:
                best = (key, step)
    step = best[1] if best else span
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    ticks = np.arange(first, last + 1) * step
    ticks[np.abs(ticks) < step * 1e-6] = 0.0  # no "-0" from rounding
    return ticks


def format_ticks(ticks: Sequence[float]) -> list[str]:
    """Labels for evenly spaced ticks: as few decimals as the step needs, ``0`` for zero, no ``+``.

    Scientific notation (``2.5e-5``) only when fixed notation would need more than four
    decimals or more than five integer digits.
    """
    values = np.asarray(ticks, dtype=np.float64)
    if values.size == 0:
        return []
    step = float(np.min(np.diff(values))) if values.size > 1 else (abs(float(values[0])) or 1.0)
    biggest = float(np.max(np.abs(values))) or step
    decimals = _decimals(step)
    if decimals <= 4 and biggest < 1e5:
        return ["0" if v == 0 else f"{v:.{decimals}f}" for v in values]
    exponent = math.floor(math.log10(biggest))
    mant_decimals = _decimals(step / 10.0**exponent)
    labels = []
    for v in values:
        if v == 0:
            labels.append("0")
            continue
        labels.append(f"{v / 10.0**exponent:.{mant_decimals}f}e{exponent}")
    return labels


def _decimals(step: float) -> int:
    """Decimals needed to write multiples of ``step`` exactly (step = m × 10^k, m in 1, 2, 2.5, 5)."""
    for d in range(0, 12):
        if abs(step * 10**d - round(step * 10**d)) < 1e-6 * max(1.0, step * 10**d):
            return d
    return 12


# --------------------------------------------------------------------------------------------
# Resampling to the panel's size


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


def _resize_float(values: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
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


def _resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-resample segment ids to ``size``; NaN (outside the window) becomes -1."""
    from PIL import Image

    ids = np.where(np.isfinite(labels), labels, -1).astype(np.float32)
    h, w = size
    if ids.shape != (h, w):
        ids = np.asarray(Image.fromarray(ids).resize((w, h), Image.Resampling.NEAREST))
    return np.rint(ids).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Smooth segment boundaries


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


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge replication (so the image border is not a boundary)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for j, weight in enumerate(kernel):
            acc += weight * (padded[j:j + n, :] if axis == 0 else padded[:, j:j + n])
        out = acc
    return out


# Slope of erf at 0 (2/sqrt(pi)) for the two-region margin, and of the Gaussian CDF (1/sqrt(2 pi)):
# near an edge blurred with sigma, margin ≈ slope · distance / sigma.
_SLOPE_PAIR = 2.0 / math.sqrt(math.pi) / math.sqrt(2.0)
_SLOPE_ONE = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass
class _Boundaries:
    """Approximate distances (panel px) to the nearest boundary and to each outlined segment's edge."""

    all: np.ndarray  # (h, w) distance to the nearest boundary between any two segments
    outlines: dict[int, np.ndarray] = field(default_factory=dict)  # id -> (h, w) distance to its edge


def _boundaries(labels: np.ndarray, sigma: float, outline: Sequence[int] = (), outline_sigma: float = 2.0) -> _Boundaries:
    """Soft boundaries of a panel-sized label map (-1 = outside the window).

    Each segment's indicator is blurred and the two largest values kept per pixel: their
    margin grows linearly with the distance to the boundary, so a line of any width can be
    drawn anti-aliased from it. Work is confined to each segment's padded bounding box.
    """
    h, w = labels.shape
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    ids, starts = np.unique(flat[order], return_index=True)
    rows, cols = np.divmod(order, w)
    top_rows = np.minimum.reduceat(rows, starts)
    bottom_rows = np.maximum.reduceat(rows, starts)
    left_cols = np.minimum.reduceat(cols, starts)
    right_cols = np.maximum.reduceat(cols, starts)
    first = np.zeros((h, w))
    second = np.zeros((h, w))
    pad = int(math.ceil(3 * sigma)) + 1
    wanted = {int(i) for i in outline}
    out = _Boundaries(all=np.zeros((h, w)))
    for i, seg in enumerate(ids):
        t, b = max(0, top_rows[i] - pad), min(h, bottom_rows[i] + pad + 1)
        le, r = max(0, left_cols[i] - pad), min(w, right_cols[i] + pad + 1)
        inside = (labels[t:b, le:r] == seg).astype(np.float64)
        soft = _gaussian_blur(inside, sigma)
        f, s = first[t:b, le:r], second[t:b, le:r]
        higher = soft > f
        s[...] = np.where(higher, f, np.maximum(s, soft))
        f[...] = np.where(higher, soft, f)
        if int(seg) in wanted:
            # A wider blur for outlines: the margin must stay linear out to the halo's width.
            pad_o = int(math.ceil(3 * outline_sigma)) + 1
            t2, b2 = max(0, top_rows[i] - pad_o), min(h, bottom_rows[i] + pad_o + 1)
            l2, r2 = max(0, left_cols[i] - pad_o), min(w, right_cols[i] + pad_o + 1)
            soft_o = _gaussian_blur((labels[t2:b2, l2:r2] == seg).astype(np.float64), outline_sigma)
            dist = np.full((h, w), np.inf)
            dist[t2:b2, l2:r2] = np.abs(soft_o - 0.5) * outline_sigma / _SLOPE_ONE
            out.outlines[int(seg)] = dist
    out.all = (first - second) * sigma / _SLOPE_PAIR
    return out


def _line_alpha(distance: np.ndarray, width: float) -> np.ndarray:
    """Coverage of a line of ``width`` px centred where distance = 0 (a one-pixel linear ramp)."""
    return np.clip(width / 2 + 0.5 - distance, 0.0, 1.0)


def _blend(rgb: np.ndarray, colour: np.ndarray | tuple[float, float, float], alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return rgb * (1.0 - a) + np.asarray(colour, dtype=np.float64) * a


def _contrast_ink(rgb: np.ndarray) -> np.ndarray:
    """Per pixel, black over light colours and white over dark ones (for lines that always show)."""
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    return np.where((lum > 150)[..., None], 0.0, 255.0) * np.ones(3)


# --------------------------------------------------------------------------------------------
# Fonts, text and labels


def _font(size: int) -> "ImageFont.FreeTypeFont | ImageFont.ImageFont":
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _text_width(text: str, font) -> float:
    from PIL import Image, ImageDraw

    return ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font)


def _wrap(text: str, font, width: float) -> list[str]:
    """Lines of at most ``width`` px, breaking at ' · ' first and at spaces inside a long part."""
    lines: list[str] = []
    for part in text.split(" · ") if text else []:
        if lines and _text_width(f"{lines[-1]} · {part}", font) <= width:
            lines[-1] = f"{lines[-1]} · {part}"
            continue
        current = ""
        for word in part.split(" "):
            trial = f"{current} {word}" if current else word
            if current and _text_width(trial, font) > width:
                lines.append(current)
                current = word
            else:
                current = trial
        lines.append(current)
    return lines


def _font_px(panel_h: int, panel_w: int) -> int:
    """Text size for a panel: about 1/16 of its short side, within 12..22 px."""
    return int(np.clip(round(min(panel_h, panel_w) / 16), 12, 22))


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


def _draw_number_boxes(panel: "PILImage.Image", anchors: Sequence[tuple[float, float] | None], texts: Sequence[str],
                       font_px: int) -> None:
    """White rounded boxes with dark numbers centred on the anchors (panel pixels), kept inside the panel."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(panel)
    font = _font(font_px)
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
                               fill=_PAPER, outline=(40, 40, 40), width=1)
        draw.text((left + box_w / 2, top + box_h / 2), text, fill=_INK, font=font, anchor="mm")


# --------------------------------------------------------------------------------------------
# Panels


@dataclass
class _Bar:
    """A colour bar: limits, colour map, an optional label under the tick labels."""

    vrange: tuple[float, float]
    cmap: str
    label: str | None = None


@dataclass
class _Cell:
    """One panel of the grid with the lines above it and, optionally, its own bar below."""

    image: "PILImage.Image"
    caption: list[str]
    bar: _Bar | None = None


class _Base(NamedTuple):
    """The picture at panel size: colour, and the dimmed greyscale copy maps are drawn over."""

    colour: np.ndarray  # (h, w, 3) uint8
    grey: np.ndarray  # (h, w, 3) float, dimmed greyscale under a map
    outside: np.ndarray  # (h, w, 3) float, darker greyscale where the model saw nothing
    nearest: bool


def _as_rgb(display: np.ndarray) -> np.ndarray:
    image = np.asarray(display)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"display must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"display must be uint8 (0..255); got {image.dtype}")
    image = image[..., :3]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def _base(display: np.ndarray, size: tuple[int, int], nearest: bool) -> _Base:
    colour = np.ascontiguousarray(_resize_rgb(display, size, nearest))
    lum = colour.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    # Grey keeps the image's structure without lending hue to the map; the compressed range
    # (40..190) keeps the map's colours from being pushed to black or white by the image.
    grey = np.repeat((40.0 + lum * (150.0 / 255.0))[..., None], 3, axis=2)
    outside = np.repeat((25.0 + lum * (90.0 / 255.0))[..., None], 3, axis=2)
    return _Base(colour, grey, outside, nearest)


def _colourize(values: np.ndarray, vrange: tuple[float, float], cmap: str) -> np.ndarray:
    lo, hi = vrange
    return apply_cmap((values - lo) / (hi - lo), cmap)


def _map_panel(base: _Base, values: np.ndarray, vrange: tuple[float, float], cmap: str, alpha: float,
               bounds: _Boundaries | None, outline_ids: Sequence[int], anchors: Sequence[tuple[float, float] | None],
               font_px: int) -> "PILImage.Image":
    """One map drawn over the base (alpha < 1) or alone (alpha = 1), with boundaries and numbers."""
    from PIL import Image

    inside = np.isfinite(values)
    colour = _colourize(values, vrange, cmap)
    rgb = np.where(inside[..., None], alpha * colour + (1.0 - alpha) * base.grey, base.outside)
    rgb = _draw_lines(rgb, bounds, outline_ids, font_px)
    panel = Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8))
    if anchors:
        _draw_number_boxes(panel, anchors, [str(i + 1) for i in range(len(anchors))], font_px)
    return panel


def _line_widths(font_px: int) -> tuple[float, float]:
    """Widths (px) of the thin segment boundaries and of the top segments' outlines."""
    return max(1.0, font_px / 14), max(1.5, font_px / 9)


def _draw_lines(rgb: np.ndarray, bounds: _Boundaries | None, outline_ids: Sequence[int], font_px: int) -> np.ndarray:
    if bounds is None:
        return rgb
    thin, thick = _line_widths(font_px)
    # Semi-transparent, and black or white by what lies under it, so it reads on any colour.
    rgb = _blend(rgb, _contrast_ink(rgb), 0.35 * _line_alpha(bounds.all, thin))
    for seg in outline_ids:
        dist = bounds.outlines.get(int(seg))
        if dist is None:
            continue
        # A white line with a faint dark halo stands out on every colour of both ends of the map.
        rgb = _blend(rgb, (0, 0, 0), 0.45 * _line_alpha(dist, thick + 1.2))
        rgb = _blend(rgb, (255, 255, 255), _line_alpha(dist, thick))
    return rgb


# --------------------------------------------------------------------------------------------
# Layout


def _compose(title: str, grid: Sequence[Sequence[_Cell | None]], bars: Sequence[_Bar], font_px: int,
             bar_span: tuple[int, int] | None = None) -> "PILImage.Image":
    """Title, a grid of cells (captions above panels, optional per-cell bars) and figure bars below.

    ``bar_span`` = (first, last) columns the figure bars are centred under (the map columns).
    """
    from PIL import Image, ImageDraw

    font = _font(font_px)
    title_font = _font(round(font_px * 1.15))
    line = round(font_px * 1.35)
    gap = max(8, font_px // 2 + 4)
    margin = gap
    n_cols = max(len(r) for r in grid)
    col_w = [max((r[c].image.width for r in grid if c < len(r) and r[c] is not None), default=0) for c in range(n_cols)]
    col_x = [margin + sum(col_w[:c]) + gap * c for c in range(n_cols)]
    width = col_x[-1] + col_w[-1] + margin
    bar_h = _bar_height(font_px, None)

    # Captions wrap to their panel's width; a row's captions share one height so panels align.
    wrapped = [[_wrap_lines(cell.caption, font, col_w[c]) if cell else [] for c, cell in enumerate(r)] for r in grid]
    title_lines = _wrap(title, title_font, width - 2 * margin)
    y = margin // 2
    heights = []
    for r, row in enumerate(grid):
        cap_h = line * max((len(w) for w in wrapped[r]), default=0)
        pan_h = max((cell.image.height for cell in row if cell), default=0)
        own_bar = max((_bar_height(font_px, cell.bar.label) for cell in row if cell and cell.bar), default=0)
        heights.append((cap_h, pan_h, own_bar))
    title_h = round(font_px * 1.5) * len(title_lines) + (gap // 2 if title_lines else 0)
    figure_bars_h = sum(_bar_height(font_px, b.label) + gap // 2 for b in bars)
    height = y + title_h + sum(c + p + (b + gap // 2 if b else 0) + gap for c, p, b in heights) + figure_bars_h + margin // 2
    canvas = Image.new("RGB", (width, height), _PAPER)
    draw = ImageDraw.Draw(canvas)
    boxes: list[tuple[int, int, int, int]] = []
    for text in title_lines:
        draw.text((margin, y), text, fill=_INK, font=title_font)
        y += round(font_px * 1.5)
    y += gap // 2 if title_lines else 0
    for r, row in enumerate(grid):
        cap_h, pan_h, own_bar = heights[r]
        for c, cell in enumerate(row):
            if cell is None:
                continue
            x = col_x[c] + (col_w[c] - cell.image.width) // 2
            for j, text in enumerate(wrapped[r][c]):
                draw.text((x, y + j * line + 2), text, fill=_INK, font=font)
            canvas.paste(cell.image, (x, y + cap_h))
            boxes.append((x, y + cap_h, x + cell.image.width, y + cap_h + cell.image.height))
            if cell.bar is not None:
                bw = round(cell.image.width * 0.85)
                _draw_bar(canvas, cell.bar, x + (cell.image.width - bw) // 2, y + cap_h + pan_h + gap // 2, bw, font_px)
        y += cap_h + pan_h + (own_bar + gap // 2 if own_bar else 0) + gap
    first, last = bar_span if bar_span is not None else (0, n_cols - 1)
    span_x0, span_x1 = col_x[first], col_x[last] + col_w[last]
    for bar in bars:
        span = span_x1 - span_x0
        bw = int(min(span * 0.85, max(360, span * 0.6)))
        _draw_bar(canvas, bar, span_x0 + (span - bw) // 2, y, bw, font_px)
        y += _bar_height(font_px, bar.label) + gap // 2
    # Where each panel lies, so a notebook (or a test) can crop one without knowing the layout.
    canvas.info[PANELS_KEY] = boxes
    return canvas


def _wrap_lines(lines: Sequence[str], font, width: int) -> list[str]:
    return [piece for text in lines for piece in _wrap(text, font, width)]


def _bar_height(font_px: int, label: str | None) -> int:
    ramp = max(8, round(font_px * 0.8))
    return ramp + 4 + round(font_px * 1.3) + (round(font_px * 1.35) if label else 0)


def _draw_bar(canvas: "PILImage.Image", bar: _Bar, x: int, y: int, width: int, font_px: int) -> None:
    """A horizontal colour bar with round ticks below it and, optionally, a label under those."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(canvas)
    font = _font(font_px)
    ramp_h = max(8, round(font_px * 0.8))
    colours = apply_cmap(np.linspace(0.0, 1.0, width), bar.cmap).round().astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(colours[None], ramp_h, axis=0)), (x, y))
    draw.rectangle([x - 1, y - 1, x + width, y + ramp_h], outline=(110, 110, 110))
    lo, hi = bar.vrange
    ticks = nice_ticks(lo, hi)
    for value, text in zip(ticks, format_ticks(ticks)):
        tx = x + (value - lo) / (hi - lo) * (width - 1)
        draw.line([(tx, y + ramp_h), (tx, y + ramp_h + 3)], fill=(90, 90, 90), width=1)
        draw.text((tx, y + ramp_h + 4), text, fill=_INK, font=font, anchor="ma")
    if bar.label:
        draw.text((x + width / 2, y + ramp_h + 4 + round(font_px * 1.3)), bar.label, fill=(70, 70, 70),
                  font=font, anchor="ma")


def _encode(image: "PILImage.Image") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Public entry points


def _group_range(maps: Sequence[np.ndarray], signed: bool, scale: Scale) -> tuple[float, float]:
    if scale.mode == "fixed":
        assert scale.limits is not None
        return scale.limits
    return color_range(np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps]), signed=signed)


def _segments_layer(labels_full: np.ndarray | None, size: tuple[int, int], nearest: bool,
                    outline: Sequence[int]) -> _Boundaries | None:
    if labels_full is None:
        return None
    h0, _ = labels_full.shape
    factor = size[0] / h0
    step = _label_step(labels_full)
    # Smooth away the staircase left by upsampling model-space segments; keep real pixel edges
    # (step ~1, or an enlarged pixel-art input) crisp, with just enough blur to anti-alias.
    sigma = max(1.5, 0.5 * step * factor) if step >= 1.5 and not nearest else 1.5
    # The outlines' blur must keep the margin linear out to the halo (~2 px) yet not swallow
    # a segment's thin parts (a part narrower than ~2 sigma would be painted solid).
    return _boundaries(_resize_labels(labels_full, size), sigma, outline, outline_sigma=max(2.0, sigma))


def _panel_anchors(labels_full: np.ndarray | None, ids: Sequence[int], size: tuple[int, int]) -> list[tuple[float, float] | None]:
    if labels_full is None or not ids:
        return []
    h0, w0 = labels_full.shape
    fy, fx = size[0] / h0, size[1] / w0
    return [None if a is None else ((a[0] + 0.5) * fy - 0.5, (a[1] + 0.5) * fx - 0.5)
            for a in _segment_anchors(labels_full, ids)]


def render_image(
    display: np.ndarray,
    maps: np.ndarray,
    captions: Sequence[str],
    *,
    signed: bool,
    title: str,
    labels_full: np.ndarray | None = None,
    style: str = DEFAULT_STYLE,
    alpha: float = DEFAULT_ALPHA,
    cmap: str | None = None,
    scale: str | Scale = DEFAULT_SCALE,
    top_segments: Sequence[Sequence[int]] | None = None,
    bar_label: str | None = None,
    min_size: int = MIN_PANEL,
    max_size: int | None = MAX_PANEL,
) -> "PILImage.Image":
    """The heatmap figure as a PIL image: one map panel per target and the shared colour bar.

    Parameters
    ----------
    display : (H, W, 3) uint8 ndarray
        The original image (greyscale (H, W) and RGBA are accepted).
    maps : (K, H, W) float ndarray
        Scores at the original resolution; NaN where the model saw nothing (drawn as the dimmed
        image, with no map colour). A single (H, W) map is taken as K = 1.
    captions : sequence of str
        One caption per target, drawn above its panel (wrapped to the panel's width).
    signed : bool
        Signed scores get a diverging map centred at 0 on a symmetric scale; non-negative ones
        a sequential map on [min, max].
    title : str
        The figure's title; long titles wrap at ' · '.
    labels_full : (H, W) float ndarray, optional
        Segment ids at the original resolution (NaN outside the window): draws smooth boundaries.
    style : {'overlay', 'side-by-side'}
        ``overlay``: each map over a dimmed greyscale image. ``side-by-side``: the colour image
        first, then each map drawn opaquely.
    alpha : float in [0, 1]
        The map's opacity in ``overlay`` (ignored by ``side-by-side``, whose maps are opaque).
    cmap : str, optional
        A name from `explain_cli.colormaps.NAMES`; default ``RdBu_r`` if signed, else ``inferno``.
    scale : {'figure', 'panel', 'fixed:LO,HI'} or Scale
        ``figure``: one scale and one bar for all panels; ``panel``: each its own scale and bar;
        ``fixed:LO,HI``: given limits, values beyond them clipped (compare across images; for
        signed maps a symmetric range keeps 0 on the neutral colour).
    top_segments : sequence of sequences of int, optional
        Per target, segment ids in rank order (as in the JSON): outlined and numbered 1..n.
        Needs ``labels_full``.
    bar_label : str, optional
        Text under the colour bar's ticks (e.g. ``"Δ prob"``).
    min_size, max_size : int
        Panel short side is enlarged to at least ``min_size``; long side reduced to ``max_size``
        (None: never reduce).

    Raises
    ------
    OptionError
        For a bad ``style``, ``alpha``, ``cmap`` or ``scale`` (named as those options).
    ValueError
        For inconsistent arrays (programming errors, not user input).
    """
    style = _check_style(style)
    alpha = _check_alpha(alpha)
    cmap_name = _resolve_cmap(cmap, signed)
    parsed = parse_scale(scale)
    image = _as_rgb(display)
    values = np.asarray(maps, dtype=np.float64)
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3 or values.shape[1:] != image.shape[:2]:
        raise ValueError(f"maps must be (K, H, W) with (H, W) = {image.shape[:2]}; got shape {values.shape}")
    k = values.shape[0]
    if len(captions) != k:
        raise ValueError(f"need one caption per map: {k} maps, {len(captions)} captions")
    if labels_full is not None and labels_full.shape != image.shape[:2]:
        raise ValueError(f"labels_full must be {image.shape[:2]}; got {labels_full.shape}")
    ranks = [list(map(int, t)) for t in top_segments] if top_segments is not None else [[] for _ in range(k)]
    if len(ranks) != k:
        raise ValueError(f"top_segments needs one list per map: {k} maps, {len(ranks)} lists")
    if any(ranks) and labels_full is None:
        raise ValueError("top_segments needs labels_full to find the segments")

    h, w, nearest = panel_size(*image.shape[:2], min_size=min_size, max_size=max_size)
    base = _base(image, (h, w), nearest)
    font_px = _font_px(h, w)
    outline_all = sorted({s for r in ranks for s in r})
    bounds = _segments_layer(labels_full, (h, w), nearest, outline_all)
    shared = _group_range([values], signed, parsed)
    opacity = alpha if style == "overlay" else 1.0
    cells: list[_Cell] = []
    if style == "side-by-side":
        from PIL import Image

        cells.append(_Cell(Image.fromarray(base.colour), ["image"]))
    for i in range(k):
        vrange = color_range(values[i], signed=signed) if parsed.mode == "panel" else shared
        panel_values = _resize_float(values[i], (h, w), nearest)
        anchors = _panel_anchors(labels_full, ranks[i], (h, w))
        panel = _map_panel(base, panel_values, vrange, cmap_name, opacity, bounds, ranks[i], anchors, font_px)
        own_bar = _Bar(vrange, cmap_name, bar_label) if parsed.mode == "panel" else None
        cells.append(_Cell(panel, [captions[i]], own_bar))
    per_row = 4 if style == "overlay" else 5
    grid = [cells[j:j + per_row] for j in range(0, len(cells), per_row)]
    bars = [] if parsed.mode == "panel" else [_Bar(shared, cmap_name, bar_label)]
    first_map_col = 1 if style == "side-by-side" and len(grid) == 1 else 0
    return _compose(title, grid, bars, font_px, bar_span=(first_map_col, max(len(r) for r in grid) - 1))


def render_png(display: np.ndarray, maps: np.ndarray, captions: Sequence[str], *, signed: bool, title: str,
               labels_full: np.ndarray | None = None, style: str = DEFAULT_STYLE, alpha: float = DEFAULT_ALPHA,
               cmap: str | None = None, scale: str | Scale = DEFAULT_SCALE,
               top_segments: Sequence[Sequence[int]] | None = None, bar_label: str | None = None,
               min_size: int = MIN_PANEL, max_size: int | None = MAX_PANEL) -> bytes:
    """`render_image`, encoded as PNG bytes (same parameters)."""
    return _encode(render_image(display, maps, captions, signed=signed, title=title, labels_full=labels_full,
                                style=style, alpha=alpha, cmap=cmap, scale=scale, top_segments=top_segments,
                                bar_label=bar_label, min_size=min_size, max_size=max_size))


def render_segments_image(display: np.ndarray, labels_full: np.ndarray, title: str, *, numbered: bool = False,
                          min_size: int = MIN_PANEL, max_size: int | None = MAX_PANEL) -> "PILImage.Image":
    """The colour image with smooth superpixel boundaries (and optionally each segment's id).

    Parameters
    ----------
    display : (H, W, 3) uint8 ndarray
        The original image.
    labels_full : (H, W) float ndarray
        Segment ids at the original resolution, NaN outside the model's window (dimmed).
    title : str
        Drawn above the picture.
    numbered : bool
        Write each segment's id (as in the JSON) at its centroid.
    """
    from PIL import Image

    image = _as_rgb(display)
    if labels_full.shape != image.shape[:2]:
        raise ValueError(f"labels_full must be {image.shape[:2]}; got {labels_full.shape}")
    h, w, nearest = panel_size(*image.shape[:2], min_size=min_size, max_size=max_size)
    base = _base(image, (h, w), nearest)
    font_px = _font_px(h, w)
    inside = _resize_float(np.where(np.isfinite(labels_full), 0.0, np.nan), (h, w), True)
    rgb = np.where(np.isfinite(inside)[..., None], base.colour.astype(np.float64), base.outside)
    bounds = _segments_layer(labels_full, (h, w), nearest, ())
    assert bounds is not None
    thin, _ = _line_widths(font_px)
    coverage = _line_alpha(bounds.all, thin + 0.5)
    # A dark halo under a yellow line: visible on sky, skin and foliage alike.
    rgb = _blend(rgb, (0, 0, 0), 0.5 * _line_alpha(bounds.all, thin + 2.5))
    rgb = _blend(rgb, (255, 225, 0), coverage)
    panel = Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8))
    if numbered:
        ids = [int(i) for i in np.unique(labels_full[np.isfinite(labels_full)])]
        _draw_number_boxes(panel, _panel_anchors(labels_full, ids, (h, w)), [str(i) for i in ids],
                           max(10, round(font_px * 0.75)))
    return _compose(title, [[_Cell(panel, [])]], [], font_px)


def render_segments_png(display: np.ndarray, labels_full: np.ndarray, title: str, *, numbered: bool = False,
                        min_size: int = MIN_PANEL, max_size: int | None = MAX_PANEL) -> bytes:
    """`render_segments_image`, encoded as PNG bytes."""
    return _encode(render_segments_image(display, labels_full, title, numbered=numbered, min_size=min_size,
                                         max_size=max_size))


@dataclass
class CompareRow:
    """One method's results for `render_compare_image` (a row of the comparison table)."""

    method: str  # panel title, e.g. "kernelshap"
    maps: np.ndarray  # (K, H, W) float at the original resolution, NaN outside the window
    signed: bool  # diverging map centred at 0, or sequential
    evaluations: int | None = None  # model evaluations, shown in the panel title
    metrics: Sequence[str] | None = None  # per target, one line under the title (e.g. "deletion AUC 0.12")
    top_segments: Sequence[Sequence[int]] | None = None  # per target, segment ids in rank order
    boundaries: bool = True  # draw segment boundaries (pixel-level maps such as RISE read better without)


def render_compare_image(
    display: np.ndarray,
    rows: Sequence[CompareRow],
    *,
    target_captions: Sequence[str],
    title: str = "",
    labels_full: np.ndarray | None = None,
    style: str = DEFAULT_STYLE,
    alpha: float = DEFAULT_ALPHA,
    cmap: str | None = None,
    scale: str | Scale = DEFAULT_SCALE,
    bar_label: str | None = None,
    min_size: int = MIN_PANEL,
    max_size: int | None = MAX_COMPARE_PANEL,
) -> "PILImage.Image":
    """A montage for ``explain compare``: per target, the image then each method's map.

    Laid out with one line of panels per target (the image, captioned with the target, then
    one panel per method titled ``method · N evals`` and its metric string). Under ``figure``
    scale the signed methods share one symmetric scale and bar and the non-negative methods
    (RISE) another, because their units differ; ``panel`` gives every panel its own scale and
    bar; ``fixed:LO,HI`` applies to every panel.

    Parameters
    ----------
    display : (H, W, 3) uint8 ndarray
        The original image.
    rows : sequence of CompareRow
        One per method, all with the same K targets and (H, W).
    target_captions : sequence of str
        K captions, e.g. ``"tabby (281): prob 0.61"``.
    title, labels_full, style, alpha, cmap, scale, bar_label, min_size, max_size
        As in `render_image`; ``cmap`` (if given) applies to both groups.

    Raises
    ------
    OptionError
        For a bad ``style``, ``alpha``, ``cmap`` or ``scale``.
    """
    from PIL import Image

    style = _check_style(style)
    alpha = _check_alpha(alpha)
    parsed = parse_scale(scale)
    if not rows:
        raise ValueError("render_compare_image needs at least one CompareRow")
    image = _as_rgb(display)
    stacks = [np.asarray(r.maps, dtype=np.float64).reshape((-1, *image.shape[:2])) for r in rows]
    k = stacks[0].shape[0]
    if any(s.shape[0] != k for s in stacks) or len(target_captions) != k:
        raise ValueError("every CompareRow needs the same number of maps as target_captions")
    cmaps = {signed: _resolve_cmap(cmap, signed) for signed in (True, False)}
    groups = {signed: [s for s, r in zip(stacks, rows) if r.signed == signed] for signed in (True, False)}
    shared = {signed: _group_range(groups[signed], signed, parsed) for signed in (True, False) if groups[signed]}

    h, w, nearest = panel_size(*image.shape[:2], min_size=min_size, max_size=max_size)
    base = _base(image, (h, w), nearest)
    font_px = _font_px(h, w)
    opacity = alpha if style == "overlay" else 1.0
    layers = {}
    for i, row in enumerate(rows):
        ranks = [list(map(int, t)) for t in row.top_segments] if row.top_segments is not None else [[] for _ in range(k)]
        outline = sorted({s for r in ranks for s in r})
        layers[i] = (_segments_layer(labels_full, (h, w), nearest, outline) if row.boundaries else None, ranks)
    grid: list[list[_Cell | None]] = []
    for t in range(k):
        line: list[_Cell | None] = [_Cell(Image.fromarray(base.colour), [target_captions[t]])]
        for i, row in enumerate(rows):
            values = stacks[i][t]
            vrange = color_range(values, signed=row.signed) if parsed.mode == "panel" else shared[row.signed]
            bounds, ranks = layers[i]
            anchors = _panel_anchors(labels_full, ranks[t], (h, w)) if bounds is not None else []
            panel = _map_panel(base, _resize_float(values, (h, w), nearest), vrange, cmaps[row.signed], opacity,
                               bounds, ranks[t] if bounds is not None else [], anchors, font_px)
            head = row.method + (f" · {row.evaluations} evals" if row.evaluations is not None else "")
            caption = [head] + ([row.metrics[t]] if row.metrics is not None and row.metrics[t] else [])
            own_bar = _Bar(vrange, cmaps[row.signed], bar_label) if parsed.mode == "panel" else None
            line.append(_Cell(panel, caption, own_bar))
        grid.append(line)
    bars = []
    if parsed.mode != "panel":
        both = len(shared) == 2
        for signed in (True, False):
            if signed in shared:
                names = ", ".join(r.method for r in rows if r.signed == signed)
                label = f"{'signed' if signed else 'non-negative'}: {names}" if both else bar_label
                if both and bar_label:
                    label = f"{label} ({bar_label})"
                bars.append(_Bar(shared[signed], cmaps[signed], label))
    return _compose(title, grid, bars, font_px, bar_span=(1, len(rows)))


def render_compare_png(display: np.ndarray, rows: Sequence[CompareRow], *, target_captions: Sequence[str],
                       title: str = "", labels_full: np.ndarray | None = None, style: str = DEFAULT_STYLE,
                       alpha: float = DEFAULT_ALPHA, cmap: str | None = None, scale: str | Scale = DEFAULT_SCALE,
                       bar_label: str | None = None, min_size: int = MIN_PANEL,
                       max_size: int | None = MAX_COMPARE_PANEL) -> bytes:
    """`render_compare_image`, encoded as PNG bytes (same parameters)."""
    return _encode(render_compare_image(display, rows, target_captions=target_captions, title=title,
                                        labels_full=labels_full, style=style, alpha=alpha, cmap=cmap, scale=scale,
                                        bar_label=bar_label, min_size=min_size, max_size=max_size))


__all__ = [
    "CMAPS", "CompareRow", "DEFAULT_ALPHA", "DEFAULT_SCALE", "DEFAULT_STYLE", "PANELS_KEY", "SCALE_FORMS", "STYLES", "Scale",
    "color_range", "format_ticks", "nice_ticks", "panel_size", "parse_scale", "render_compare_image",
    "render_compare_png", "render_image", "render_png", "render_segments_image", "render_segments_png",
]
