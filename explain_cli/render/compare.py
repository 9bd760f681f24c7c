"""The ``explain compare`` figure: per target, the image then each method's map, each on its own scale.

`explain_cli.render.montage` reads the saved results and calls `render_compare_image`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from explain_cli.render.boundaries import segments_layer
from explain_cli.render.figures import (
    DEFAULT_OPACITY,
    DEFAULT_STYLE,
    check_opacity,
    check_style,
    panel_values,
    resolve_cmap,
)
from explain_cli.render.layout import Bar, Cell, compose, panel_font_px
from explain_cli.render.overlays import draw_overlay
from explain_cli.render.panels import MIN_PANEL, as_rgb, map_panel, panel_anchors, panel_base, panel_size
from explain_cli.render.scale import Scale, color_range, group_range, parse_scale

if TYPE_CHECKING:
    from PIL import Image as PILImage

MAX_COMPARE_PANEL = 512  # a montage has many panels; keep the whole figure screen-sized


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
    labels: np.ndarray | None = None  # (H, W) this row's segment ids (NaN outside); default: labels_full
    centres: Sequence[float] | None = None  # per target, the value drawn neutral (RISE: its mean), as in render_image


def render_compare_image(
    display: np.ndarray,
    rows: Sequence[CompareRow],
    *,
    target_captions: Sequence[str],
    overlays: Sequence[Mapping[str, Any] | None] | None = None,
    title: str = "",
    labels_full: np.ndarray | None = None,
    style: str = DEFAULT_STYLE,
    opacity: float = DEFAULT_OPACITY,
    cmap: str | None = None,
    scale: str | Scale = "panel",
    bar_label: str | None = None,
    min_size: int = MIN_PANEL,
    max_size: int | None = MAX_COMPARE_PANEL,
) -> "PILImage.Image":
    """A montage for ``explain compare``: per target, the image then each method's map.

    Laid out with one line of panels per target (the image, captioned with the target, then
    one panel per method titled ``method · N evals`` and its metric string). By default
    (``panel``) every map has its own scale and bar, as captum's ``visualize_image_attr``
    normalises each map: methods' units and magnitudes differ, and a shared scale fades the
    weaker ones to grey. Under ``figure`` the signed methods share one symmetric scale and bar
    and the non-negative methods (RISE) another; ``fixed:LO,HI`` applies to every panel.
    Segment-level maps are filled by smoothed segment, with the heatmap's smooth edges.

    Parameters
    ----------
    display : (H, W, 3) uint8 ndarray
        The original image.
    rows : sequence of CompareRow
        One per method, all with the same K targets and (H, W).
    target_captions : sequence of str
        K captions, e.g. ``"tabby (281): prob 0.61"``.
    overlays : sequence of mappings or None, optional
        Per target, what to draw over its image and map panels, as in `render_image`
        (`explain_cli.render.overlays.draw_overlay`): a box (detection) or a region's mask
        (segmentation) in the image's pixels.
    title, labels_full, style, opacity, cmap, scale, bar_label, min_size, max_size
        As in `render_image`; ``cmap`` (if given) applies to both groups.

    Raises
    ------
    OptionError
        For a bad ``style``, ``opacity``, ``cmap`` or ``scale``.
    """
    from PIL import Image

    style = check_style(style)
    opacity = check_opacity(opacity)
    parsed = parse_scale(scale)
    if not rows:
        raise ValueError("render_compare_image needs at least one CompareRow")
    image = as_rgb(display)
    stacks = [np.asarray(r.maps, dtype=np.float64).reshape((-1, *image.shape[:2])) for r in rows]
    k = stacks[0].shape[0]
    if any(s.shape[0] != k for s in stacks) or len(target_captions) != k:
        raise ValueError("every CompareRow needs the same number of maps as target_captions")
    stacks = [s if r.centres is None else s - np.asarray(r.centres, dtype=np.float64)[:, None, None]
              for s, r in zip(stacks, rows)]
    diverging = [r.signed or r.centres is not None for r in rows]  # centred RISE maps draw as signed ones
    cmaps = {signed: resolve_cmap(cmap, signed) for signed in (True, False)}
    # Under a figure scale, signed methods share one range and non-negative ones (RISE) another.
    members = {signed: [i for i, r in enumerate(rows) if r.signed == signed] for signed in (True, False)}
    group_diverging = {signed: any(diverging[i] for i in members[signed]) for signed in (True, False)}
    shared = {signed: group_range([stacks[i] for i in members[signed]], group_diverging[signed], parsed)
              for signed in (True, False) if members[signed]}

    h, w, nearest = panel_size(*image.shape[:2], min_size=min_size, max_size=max_size)
    base = panel_base(image, (h, w), nearest)
    font_px = panel_font_px(h, w)
    map_opacity = opacity if style == "overlay" else 1.0
    layers = {}
    for i, row in enumerate(rows):
        ranks = [list(map(int, t)) for t in row.top_segments] if row.top_segments is not None else [[] for _ in range(k)]
        outline = sorted({s for r in ranks for s in r})
        labels = row.labels if row.labels is not None else labels_full
        bounds = segments_layer(labels, (h, w), nearest, outline) if row.boundaries else None
        layers[i] = (labels, bounds, ranks)
    grid: list[list[Cell | None]] = []
    for t in range(k):
        overlay = overlays[t] if overlays is not None else None
        picture = Image.fromarray(base.colour)
        draw_overlay(picture, overlay, image.shape[:2], font_px)
        line: list[Cell | None] = [Cell(picture, [target_captions[t]])]
        for i, row in enumerate(rows):
            values = stacks[i][t]
            vrange = color_range(values, signed=diverging[i]) if parsed.mode == "panel" else shared[row.signed]
            labels, bounds, ranks = layers[i]
            anchors = panel_anchors(labels, ranks[t], (h, w)) if bounds is not None else []
            panel = map_panel(base, panel_values(values, labels, bounds, (h, w), nearest), vrange,
                              cmaps[diverging[i]], map_opacity, bounds, ranks[t] if bounds is not None else [],
                              anchors, font_px)
            draw_overlay(panel, overlay, image.shape[:2], font_px)
            head = row.method + (f" · {row.evaluations} evals" if row.evaluations is not None else "")
            if row.centres is not None:
                head += f" · centred on its mean {row.centres[t]:.3g}"
            caption = [head] + ([row.metrics[t]] if row.metrics is not None and row.metrics[t] else [])
            own_bar = Bar(vrange, cmaps[diverging[i]], bar_label) if parsed.mode == "panel" else None
            line.append(Cell(panel, caption, own_bar))
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
                bars.append(Bar(shared[signed], cmaps[group_diverging[signed]], label))
    return compose(title, grid, bars, font_px, bar_span=(1, len(rows)))
