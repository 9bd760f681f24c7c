"""Heatmap figures drawn with numpy and Pillow (no torch, no matplotlib): the public entry points.

A figure is a title, a grid of panels (the image and one map per target) and colour bars. The
map is drawn opaquely over a greyscale copy of the image that keeps the object visible
(``style="overlay"``, `explain_cli.render.panels.contrast_grey`) or beside the colour image
(``style="side-by-side"``), so the map's colours never mix with the object's. One colour scale
is shared by the whole figure unless the caller asks otherwise (``scale``), so equal colours mean
equal scores. Segment-level maps fill their smoothed segments, boundaries are anti-aliased at
the panel's resolution, and the strongest segments (by |score|) are outlined and numbered.
``explain compare``'s montage is in `explain_cli.render.compare`.

Every ``render_*_image`` function returns a ``PIL.Image.Image`` (a notebook shows it);
`explain_cli.render.layout.to_png` encodes it. ``image.info[PANELS_KEY]`` lists the panels' boxes
(left, top, right, bottom), in reading order, for cropping one out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from explain_cli.errors import OptionError
from explain_cli.render.boundaries import Boundaries, blend, line_alpha, line_widths, segments_layer
from explain_cli.render.colormaps import default_cmap, lookup_table
from explain_cli.render.layout import Bar, Cell, compose, panel_font_px
from explain_cli.render.panels import (
    MAX_PANEL,
    MIN_PANEL,
    as_rgb,
    draw_box,
    draw_number_boxes,
    map_panel,
    panel_anchors,
    panel_base,
    panel_size,
    resize_float,
)
from explain_cli.render.overlays import draw_overlay, reference_picture
from explain_cli.render.regions import segment_fill
from explain_cli.render.scale import DEFAULT_SCALE, Scale, color_range, group_range, parse_scale

if TYPE_CHECKING:
    from PIL import Image as PILImage

STYLES: tuple[str, ...] = ("overlay", "side-by-side")
DEFAULT_STYLE = "overlay"
# Opaque enough that the map's colours read true; the rest shows the image's structure in grey.
DEFAULT_OPACITY = 0.7


def check_style(style: str) -> str:
    """``style`` if it is one of `STYLES`, else an OptionError naming ``style``."""
    if style not in STYLES:
        raise OptionError("style", f"must be one of {', '.join(STYLES)}, not {style!r}")
    return style


def check_opacity(opacity: float) -> float:
    """``opacity`` as a float if it is a number in [0, 1], else an OptionError naming ``opacity``."""
    if not (isinstance(opacity, (int, float)) and 0.0 <= float(opacity) <= 1.0):
        raise OptionError("opacity", f"must be a number in [0, 1], not {opacity!r}")
    return float(opacity)


def resolve_cmap(cmap: str | None, signed: bool) -> str:
    """``cmap``, or the default for signed or non-negative scores; an OptionError naming ``cmap`` if unknown."""
    name = default_cmap(signed) if cmap is None else cmap
    lookup_table(name)  # raises OptionError("cmap", ...) for an unknown name
    return name


def render_image(
    display: np.ndarray,
    maps: np.ndarray,
    captions: Sequence[str],
    *,
    signed: bool,
    title: str,
    labels_full: np.ndarray | None = None,
    style: str = DEFAULT_STYLE,
    opacity: float = DEFAULT_OPACITY,
    cmap: str | None = None,
    scale: str | Scale = DEFAULT_SCALE,
    top_segments: Sequence[Sequence[int]] | None = None,
    bar_label: str | None = None,
    note: str | None = None,
    centres: Sequence[float] | None = None,
    boxes: Sequence[Sequence[float] | None] | None = None,
    overlays: Sequence[Mapping[str, Any] | None] | None = None,
    reference: np.ndarray | None = None,
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
        a sequential map on [min, max], unless ``centres`` are given.
    title : str
        The figure's title; long titles wrap at ' · '.
    labels_full : (H, W) float ndarray, optional
        Segment ids at the original resolution (NaN outside the window): draws smooth boundaries.
    style : {'overlay', 'side-by-side'}
        ``overlay``: each map over a dimmed greyscale image. ``side-by-side``: the colour image
        first, then each map drawn opaquely.
    opacity : float in [0, 1]
        The map's opacity in ``overlay`` (ignored by ``side-by-side``, whose maps are opaque).
    cmap : str, optional
        A name from `explain_cli.render.colormaps.NAMES`; default ``RdBu_r`` if signed, else ``inferno``.
    scale : {'figure', 'panel', 'fixed:LO,HI'} or Scale
        ``figure``: one scale and one bar for all panels; ``panel``: each its own scale and bar;
        ``fixed:LO,HI``: given limits, values beyond them clipped (compare across images; for
        signed maps a symmetric range keeps 0 on the neutral colour).
    top_segments : sequence of sequences of int, optional
        Per target, segment ids in rank order (as in the JSON): outlined and numbered 1..n.
        Needs ``labels_full``.
    bar_label : str, optional
        Text under the colour bar's ticks (e.g. ``"prob"``).
    note : str, optional
        A muted line under the bar, e.g. what the numbers mean (`explain_cli.render.captions.numbering_note`).
    centres : sequence of K float, optional
        The value each map is neutral at (RISE: its mean, `saliency_centres`): map k is drawn as
        ``maps[k] - centres[k]``, diverging and symmetric like signed scores, so that 0 means
        "no effect" and a weak target's structure still shows.
    boxes : sequence of (x1, y1, x2, y2) or None, optional
        Per target, a box in the image's pixels drawn over its panel (a detection); None: none.
    overlays : sequence of mappings or None, optional
        Per target, its task's overlay (`explain_cli.render.overlays.draw_overlay`: a box or a
        region outlined over its panel).
    reference : (h, w, 3) ndarray, optional
        A reference image (similarity), drawn as its own panel, captioned ``reference``, before the maps.
    min_size, max_size : int
        Panel short side is enlarged to at least ``min_size``; long side reduced to ``max_size``
        (None: never reduce).

    Raises
    ------
    OptionError
        For a bad ``style``, ``opacity``, ``cmap`` or ``scale`` (named as those options).
    ValueError
        For inconsistent arrays (programming errors, not user input).
    """
    style = check_style(style)
    opacity = check_opacity(opacity)
    cmap_name = resolve_cmap(cmap, signed or centres is not None)
    parsed = parse_scale(scale)
    image = as_rgb(display)
    values = np.asarray(maps, dtype=np.float64)
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3 or values.shape[1:] != image.shape[:2]:
        raise ValueError(f"maps must be (K, H, W) with (H, W) = {image.shape[:2]}; got shape {values.shape}")
    k = values.shape[0]
    if len(captions) != k:
        raise ValueError(f"need one caption per map: {k} maps, {len(captions)} captions")
    if centres is not None:
        if len(centres) != k:
            raise ValueError(f"need one centre per map: {k} maps, {len(centres)} centres")
        values = values - np.asarray(centres, dtype=np.float64)[:, None, None]
        signed = True
    if labels_full is not None and labels_full.shape != image.shape[:2]:
        raise ValueError(f"labels_full must be {image.shape[:2]}; got {labels_full.shape}")
    ranks = [list(map(int, t)) for t in top_segments] if top_segments is not None else [[] for _ in range(k)]
    if len(ranks) != k:
        raise ValueError(f"top_segments needs one list per map: {k} maps, {len(ranks)} lists")
    if any(ranks) and labels_full is None:
        raise ValueError("top_segments needs labels_full to find the segments")

    h, w, nearest = panel_size(*image.shape[:2], min_size=min_size, max_size=max_size)
    base = panel_base(image, (h, w), nearest)
    font_px = panel_font_px(h, w)
    outline_all = sorted({s for r in ranks for s in r})
    bounds = segments_layer(labels_full, (h, w), nearest, outline_all)
    shared = group_range([values], signed, parsed)
    map_opacity = opacity if style == "overlay" else 1.0
    cells: list[Cell] = []
    if style == "side-by-side":
        from PIL import Image

        cells.append(Cell(Image.fromarray(base.colour), ["image"]))
    if reference is not None:
        cells.append(Cell(reference_picture(reference, (h, w)), ["reference"]))
    for i in range(k):
        vrange = color_range(values[i], signed=signed) if parsed.mode == "panel" else shared
        drawn = panel_values(values[i], labels_full, bounds, (h, w), nearest)
        anchors = panel_anchors(labels_full, ranks[i], (h, w))
        panel = map_panel(base, drawn, vrange, cmap_name, map_opacity, bounds, ranks[i], anchors, font_px)
        if boxes is not None and boxes[i] is not None:
            draw_box(panel, boxes[i], image.shape[:2], font_px)
        if overlays is not None:
            draw_overlay(panel, overlays[i], image.shape[:2], font_px)
        own_bar = Bar(vrange, cmap_name, bar_label) if parsed.mode == "panel" else None
        cells.append(Cell(panel, [captions[i]], own_bar))
    per_row = 4 if style == "overlay" else 5
    grid = [cells[j:j + per_row] for j in range(0, len(cells), per_row)]
    bars = [] if parsed.mode == "panel" else [Bar(shared, cmap_name, bar_label)]
    leading = (style == "side-by-side") + (reference is not None)  # picture panels before the maps
    first_map_col = leading if len(grid) == 1 else 0
    return compose(title, grid, bars, font_px, bar_span=(first_map_col, max(len(r) for r in grid) - 1), note=note)


def saliency_centres(maps: np.ndarray) -> list[float]:
    """Each map's mean over the pixels the model saw (NaN ignored): RISE's neutral value.

    A RISE saliency is the expected score when the pixel is kept; its mean over the image is
    about the expected score of a random mask, so above it keeping the pixel helps and below it
    hurts.
    """
    stack = np.asarray(maps, dtype=np.float64).reshape((-1, *np.shape(maps)[-2:]))
    return [float(np.nanmean(m)) if np.isfinite(m).any() else 0.0 for m in stack]


def top_segments(scores: Sequence[Any], n: int = 3) -> list[int]:
    """The ids of the ``n`` segments with the largest |score| in one row ``scores``, strongest first.

    Either sign counts: when all the evidence is negative, the segments that matter are the
    most negative ones. Ties keep the lower id first. The batch summary's ``top_segments``
    column is this, on the first target's scores.

    Examples
    --------
    >>> top_segments([0.1, -0.5, 0.3, 0.0], 2)
    [1, 2]
    """
    return [int(g) for g in sorted(range(len(scores)), key=lambda g: -abs(scores[g]))[:n]]


def strongest_segments(scores: np.ndarray, n: int) -> list[list[int]]:
    """Per row of ``scores`` (K, M), :func:`top_segments`; a NaN score counts as 0.

    Examples
    --------
    >>> strongest_segments(np.array([[0.1, -0.5, 0.3, 0.0]]), 2)
    [[1, 2]]
    """
    rows = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    return [top_segments(np.nan_to_num(row).tolist(), n) for row in rows]


def panel_values(values: np.ndarray, labels: np.ndarray | None, bounds: Boundaries | None, size: tuple[int, int],
                  nearest: bool) -> np.ndarray:
    """A map at panel size: by smoothed segment where it is constant per segment (smooth edges), else resampled."""
    if labels is not None and bounds is not None:
        filled = segment_fill(values, labels, bounds)
        if filled is not None:
            return filled
    return resize_float(values, size, nearest)


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

    image = as_rgb(display)
    if labels_full.shape != image.shape[:2]:
        raise ValueError(f"labels_full must be {image.shape[:2]}; got {labels_full.shape}")
    h, w, nearest = panel_size(*image.shape[:2], min_size=min_size, max_size=max_size)
    base = panel_base(image, (h, w), nearest)
    font_px = panel_font_px(h, w)
    inside = resize_float(np.where(np.isfinite(labels_full), 0.0, np.nan), (h, w), True)
    rgb = np.where(np.isfinite(inside)[..., None], base.colour.astype(np.float64), base.outside)
    bounds = segments_layer(labels_full, (h, w), nearest, ())
    assert bounds is not None
    thin, _ = line_widths(font_px)
    coverage = line_alpha(bounds.all, thin + 0.5)
    # A dark halo under a yellow line: visible on sky, skin and foliage alike.
    rgb = blend(rgb, (0, 0, 0), 0.5 * line_alpha(bounds.all, thin + 2.5))
    rgb = blend(rgb, (255, 225, 0), coverage)
    panel = Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8))
    if numbered:
        ids = [int(i) for i in np.unique(labels_full[np.isfinite(labels_full)])]
        draw_number_boxes(panel, panel_anchors(labels_full, ids, (h, w)), [str(i) for i in ids],
                          max(10, round(font_px * 0.75)))
    return compose(title, [[Cell(panel, [])]], [], font_px)
