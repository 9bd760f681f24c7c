"""A figure of deletion and insertion curves, drawn with Pillow (no matplotlib, no torch).

Two panels side by side (deletion left, insertion right), target probability against the share
of pixels moved, one colour per target, the random-order reference dashed in the same colour,
AUCs in the legend. Sized to sit beside the heatmap PNG (pass its height).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from explain_cli.errors import ExplainError
from explain_cli.render.layout import load_font

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from explain_cli.metrics.curves import Curve

# Okabe-Ito: distinguishable for colour-blind readers and in greyscale print.
PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (230, 159, 0), (0, 0, 0)]
SUPERSAMPLE = 3  # draw large, then downsample: smooth lines without an antialiasing backend


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
                        height: int = 260, score: str = "probability") -> "PILImage.Image":
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
        Output height in pixels (e.g. the heatmap's), at least 160.
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

    s = SUPERSAMPLE
    font_px = int(np.clip(height / 20, 10, 14))
    font = load_font(font_px * s)
    line_h = (font_px + 4) * s
    panel_w = int(height * 1.15) * s
    width = panel_w * len(kinds)
    canvas = Image.new("RGB", (width, height * s), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4 * s, 2 * s), title, fill=(20, 20, 20), font=font)
    top = line_h + 4 * s
    legend_rows = n_targets
    left, right = 34 * s, 10 * s
    bottom = height * s - (line_h * 2) - legend_rows * line_h
    grey = (215, 215, 215)
    for p, kind in enumerate(kinds):
        x0 = p * panel_w + left
        x1 = (p + 1) * panel_w - right
        y0, y1 = top + line_h, bottom
        draw.text((x0, top), f"{kind}: {score} ({'lower' if kind == 'deletion' else 'higher'} is better)",
                  fill=(20, 20, 20), font=font)
        for v in (0.0, 0.25, 0.5, 0.75, 1.0):
            gx = x0 + v * (x1 - x0)
            gy = y1 - v * (y1 - y0)
            draw.line([(x0, gy), (x1, gy)], fill=grey, width=s)
            draw.line([(gx, y0), (gx, y1)], fill=grey, width=s)
            text = f"{v:g}"
            draw.text((x0 - draw.textlength(text, font=font) - 3 * s, gy - font_px * s // 2), text,
                      fill=(60, 60, 60), font=font)
            draw.text((gx - draw.textlength(text, font=font) / 2, y1 + 2 * s), text, fill=(60, 60, 60), font=font)
        draw.rectangle([x0, y0, x1, y1], outline=(90, 90, 90), width=s)
        axis = "pixels deleted" if kind == "deletion" else "pixels inserted"
        draw.text(((x0 + x1) / 2 - draw.textlength(axis, font=font) / 2, y1 + line_h), axis,
                  fill=(60, 60, 60), font=font)
        legend: dict[int, list[str]] = {}
        for c in (c for c in curves if c.kind == kind):
            for k in range(c.scores.shape[0]):
                colour = PALETTE[k % len(PALETTE)]
                pts = [(x0 + f * (x1 - x0), y1 - float(np.clip(v, 0, 1)) * (y1 - y0))
                       for f, v in zip(c.fractions, c.scores[k])]
                if c.ranking == "random":
                    _dashed(draw, pts, colour, 2 * s, 6 * s)
                    legend.setdefault(k, []).append(f"random {c.auc[k]:.3f}")
                else:
                    draw.line(pts, fill=colour, width=3 * s, joint="curve")
                    legend.setdefault(k, []).insert(0, f"AUC {c.auc[k]:.3f}")
        for row, k in enumerate(sorted(legend)):
            ly = y1 + 2 * line_h + row * line_h
            colour = PALETTE[k % len(PALETTE)]
            draw.line([(x0, ly + font_px * s // 2), (x0 + 16 * s, ly + font_px * s // 2)], fill=colour, width=3 * s)
            draw.text((x0 + 20 * s, ly), f"{names[k]}: {', '.join(legend[k])}", fill=(20, 20, 20), font=font)
    return canvas.resize((width // s, height), Image.Resampling.LANCZOS)
