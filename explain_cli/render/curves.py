"""A figure of deletion and insertion curves, drawn with Pillow (no matplotlib, no torch).

Two panels side by side (deletion left, insertion right), target probability against the share
of pixels moved, one colour per target, the random-order reference dashed in the same colour
(a legend on the title line says so), AUCs in the legend. Drawn at print resolution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from explain_cli.errors import ExplainError
from explain_cli.render.layout import INK, load_font

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from explain_cli.metrics.curves import Curve

# Okabe-Ito: distinguishable for colour-blind readers and in greyscale print.
PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (230, 159, 0), (0, 0, 0)]
SUPERSAMPLE = 3  # draw large, then downsample: smooth lines without an antialiasing backend
DEFAULT_HEIGHT = 520  # px: about 1200 px wide, sharp in print at a column's width
PRINT_DPI = 200  # recorded in the PNG: the default figure is about 6 × 2.6 inches
GRID, MUTED = (215, 215, 215), (60, 60, 60)


def _dashed(draw, points: list[tuple[float, float]], fill, width: int, dash: float) -> None:
    """A polyline drawn in dashes of ``dash`` pixels (Pillow has no dash style)."""
    carry, on = 0.0, True
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        length = float(np.hypot(x1 - x0, y1 - y0))
        t = 0.0
        while t < length:
            run = min(dash - carry, length - t)
            if on:
                a, b = t / length, (t + run) / length
                draw.line([(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)],
                          fill=fill, width=width)
            t += run
            carry += run
            if carry >= dash - 1e-9:
                carry, on = 0.0, not on


def render_curves_image(curves: Sequence["Curve"], title: str, *, labels: Sequence[str] | None = None,
                        height: int = DEFAULT_HEIGHT, score: str = "probability") -> "PILImage.Image":
    """Deletion and insertion curves as a PIL image (`explain_cli.render.layout.to_png` encodes it).

    Parameters
    ----------
    curves : sequence of Curve
        Any mix of deletion/insertion curves ranked by a map or at random (``Curve.ranking``);
        each holds K targets (scores (K, T)). A kind with no curve gets no panel.
    title : str
        One line above the panels.
    labels : sequence of K str, optional
        Target names for the legend; default ``target 0``, ``target 1``, ...
    height : int
        Output height in pixels, at least 160; everything scales with it. The default (520 px,
        about 1200 px wide) prints sharp at a column's width; `explain_cli.render.layout.to_png`
        records 200 dpi.
    score : str
        What the curves measure, in the panels' headings (detection: ``box score``).

    Raises
    ------
    ExplainError
        No deletion or insertion curve, ``height`` under 160, or fewer labels than targets.
    """
    from PIL import Image, ImageDraw

    kinds = [k for k in ("deletion", "insertion") if any(c.kind == k for c in curves)]
    if not kinds:
        raise ExplainError("render_curves_image needs at least one deletion or insertion curve")
    if height < 160:
        raise ExplainError(f"render_curves_image: height must be at least 160 pixels, got {height}")
    n_targets = max(c.scores.shape[0] for c in curves)
    names = list(labels) if labels is not None else [f"target {k}" for k in range(n_targets)]
    if len(names) < n_targets:
        raise ExplainError(f"render_curves_image: {n_targets} targets but {len(names)} labels")

    u = height / 260 * SUPERSAMPLE  # every length below is in px of the 260-px design, times u
    font_px = round(13 * u)
    font = load_font(font_px)
    line_h = round(17 * u)
    panel_w = round(299 * height / 260) * SUPERSAMPLE
    width = panel_w * len(kinds)
    canvas = Image.new("RGB", (width, height * SUPERSAMPLE), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4 * u, 2 * u), title, fill=INK, font=font)
    _style_legend(draw, width - 8 * u, 2 * u + font_px / 2, font, u)
    top = line_h + 4 * u
    left, right = 34 * u, 10 * u
    bottom = height * SUPERSAMPLE - line_h * 2 - n_targets * line_h
    for p, kind in enumerate(kinds):
        x0, x1 = p * panel_w + left, (p + 1) * panel_w - right
        y0, y1 = top + line_h, bottom
        draw.text((x0, top), f"{kind}: {score} ({'lower' if kind == 'deletion' else 'higher'} is better)",
                  fill=INK, font=font)
        _axes(draw, (x0, y0, x1, y1), font, u, "pixels deleted" if kind == "deletion" else "pixels inserted", line_h)
        legend: dict[int, list[str]] = {}
        for c in (c for c in curves if c.kind == kind):
            for k in range(c.scores.shape[0]):
                colour = PALETTE[k % len(PALETTE)]
                pts = [(x0 + f * (x1 - x0), y1 - float(np.clip(v, 0, 1)) * (y1 - y0))
                       for f, v in zip(c.fractions, c.scores[k])]
                if c.ranking == "random":
                    _dashed(draw, pts, colour, round(2 * u), 6 * u)
                    legend.setdefault(k, []).append(f"random {c.auc[k]:.3f}")
                else:
                    draw.line(pts, fill=colour, width=round(3 * u), joint="curve")
                    legend.setdefault(k, []).insert(0, f"AUC {c.auc[k]:.3f}")
        for row, k in enumerate(sorted(legend)):
            ly = y1 + 2 * line_h + row * line_h
            colour = PALETTE[k % len(PALETTE)]
            draw.line([(x0, ly + font_px / 2), (x0 + 16 * u, ly + font_px / 2)], fill=colour, width=round(3 * u))
            draw.text((x0 + 20 * u, ly), f"{names[k]}: {', '.join(legend[k])}", fill=INK, font=font)
    figure = canvas.resize((width // SUPERSAMPLE, height), Image.Resampling.LANCZOS)
    figure.info["dpi"] = (PRINT_DPI, PRINT_DPI)  # the default size prints 6 inches wide
    return figure


def _axes(draw, box: tuple[float, float, float, float], font, u: float, xlabel: str, line_h: float) -> None:
    """Grid lines at quarters, tick labels on both axes, the frame and the x axis' name."""
    x0, y0, x1, y1 = box
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        gx, gy = x0 + v * (x1 - x0), y1 - v * (y1 - y0)
        draw.line([(x0, gy), (x1, gy)], fill=GRID, width=round(u))
        draw.line([(gx, y0), (gx, y1)], fill=GRID, width=round(u))
        text = f"{v:g}"
        draw.text((x0 - 4 * u, gy), text, fill=MUTED, font=font, anchor="rm")
        draw.text((gx, y1 + 3 * u), text, fill=MUTED, font=font, anchor="ma")
    draw.rectangle([x0, y0, x1, y1], outline=(90, 90, 90), width=round(u))
    draw.text(((x0 + x1) / 2 - draw.textlength(xlabel, font=font) / 2, y1 + line_h), xlabel, fill=MUTED, font=font)


def _style_legend(draw, right: float, mid: float, font, u: float) -> None:
    """Right-aligned on the title line: a solid sample "pixels in the map's order", a dashed one "in random order"."""
    entries = [("solid", "in the map's order"), ("dashed", "in random order")]
    x = right
    for style, text in reversed(entries):
        x -= draw.textlength(text, font=font)
        draw.text((x, mid), text, fill=INK, font=font, anchor="lm")
        x -= 24 * u
        sample = [(x, mid), (x + 18 * u, mid)]
        if style == "solid":
            draw.line(sample, fill=MUTED, width=round(3 * u))
        else:
            _dashed(draw, sample, MUTED, round(2 * u), 6 * u)
        x -= 14 * u
