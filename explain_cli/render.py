"""Heatmap PNGs drawn over the original image with Pillow and numpy (no torch here)."""

from __future__ import annotations

import io

import numpy as np

# Diverging blue-white-red (ColorBrewer RdBu, reversed) for signed scores centred at 0.
DIVERGING = np.array(
    [[33, 102, 172], [103, 169, 207], [209, 229, 240], [247, 247, 247], [253, 219, 199], [239, 138, 98], [178, 24, 43]],
    dtype=np.float64,
)
# Sequential dark-to-bright (inferno-like) for non-negative saliency.
SEQUENTIAL = np.array(
    [[0, 0, 4], [66, 10, 104], [147, 38, 103], [221, 81, 58], [252, 165, 10], [252, 255, 164]], dtype=np.float64
)


def colormap(t: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Map t in [0, 1] to RGB (float, 0..255) by linear interpolation between anchor colours."""
    t = np.clip(np.nan_to_num(t, nan=0.5), 0.0, 1.0)
    pos = t * (len(anchors) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(anchors) - 2)
    frac = (pos - lo)[..., None]
    return anchors[lo] * (1 - frac) + anchors[lo + 1] * frac


def color_range(maps: np.ndarray, *, signed: bool) -> tuple[float, float]:
    """Shared colour limits: symmetric ±max|v| for signed maps, [min, max] otherwise."""
    finite = maps[np.isfinite(maps)]
    if finite.size == 0:
        return (-1.0, 1.0) if signed else (0.0, 1.0)
    if signed:
        vmax = float(np.abs(finite).max()) or 1.0
        return -vmax, vmax
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def boundaries(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of pixels whose right or lower neighbour has another label (NaN-safe floats)."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge & np.isfinite(labels)


def overlay(display: np.ndarray, values: np.ndarray, vrange: tuple[float, float], *, signed: bool,
            edges: np.ndarray | None = None) -> np.ndarray:
    """Blend a score map over an RGB image; NaN (outside the model's view) is dimmed."""
    base = display.astype(np.float64)
    vmin, vmax = vrange
    inside = np.isfinite(values)
    if signed:
        t = 0.5 + 0.5 * values / vmax
        alpha = 0.85 * np.clip(np.abs(np.nan_to_num(values)) / vmax, 0.0, 1.0) ** 0.75
        rgb = colormap(t, DIVERGING)
    else:
        t = (values - vmin) / (vmax - vmin)
        alpha = 0.2 + 0.5 * np.clip(np.nan_to_num(t), 0.0, 1.0)
        rgb = colormap(t, SEQUENTIAL)
    alpha = np.where(inside, alpha, 0.0)[..., None]
    out = base * (1 - alpha) + rgb * alpha
    out[~inside] *= 0.45
    if edges is not None:
        out[edges] = 0.6 * out[edges] + 0.4 * 255.0
    return out.round().clip(0, 255).astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def render_png(display: np.ndarray, maps: np.ndarray, captions: list[str], *, signed: bool, title: str,
               labels_full: np.ndarray | None = None) -> bytes:
    """A PNG with one panel per target over the original image, each with its caption and colour bar.

    Each panel has its own colour scale, so a weaker second class stays readable; the bar under
    it gives the values.

    Parameters
    ----------
    display : (H, W, 3) uint8
        The original image.
    maps : (K, H, W) float
        Scores at the original resolution; NaN where the model saw nothing.
    captions : list of str
        One line under each panel.
    labels_full : (H, W) float, optional
        Segment ids at the original resolution, to draw superpixel boundaries.
    """
    from PIL import Image, ImageDraw

    k, h, w = maps.shape
    edges = boundaries(labels_full) if labels_full is not None else None
    gap = 10
    font_px = int(np.clip(min(h, w) / 18, 11, 16))
    font = _font(font_px)
    line = font_px + 6
    bar_h = max(8, font_px - 2)
    panel_w = max(w, 200)
    width = k * panel_w + (k - 1) * gap
    title_lines = _wrap(title, font, width - 4)
    top = line * len(title_lines)
    height = top + h + line + bar_h + line + 2
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(title_lines):
        draw.text((2, 3 + j * line), text, fill=(20, 20, 20), font=font)
    for i in range(k):
        x0 = i * (panel_w + gap)
        vrange = color_range(maps[i], signed=signed)
        canvas.paste(Image.fromarray(overlay(display, maps[i], vrange, signed=signed, edges=edges)), (x0, top))
        draw.text((x0 + 2, top + h + 3), captions[i], fill=(20, 20, 20), font=font)
        _colour_bar(draw, canvas, x0 + 6, top + h + line + 1, panel_w - 12, bar_h, vrange, signed, font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _wrap(text: str, font, width: float) -> list[str]:
    """Split a ' · '-separated title into lines that fit ``width`` pixels."""
    from PIL import Image, ImageDraw

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    lines: list[str] = []
    for part in text.split(" · "):
        if lines and measure(f"{lines[-1]} · {part}", font=font) <= width:
            lines[-1] = f"{lines[-1]} · {part}"
        else:
            lines.append(part)
    return lines


def _colour_bar(draw, canvas, x: int, y: int, width: int, height: int, vrange: tuple[float, float],
                signed: bool, font) -> None:
    """A horizontal colour bar with its low, middle and high values."""
    from PIL import Image

    ramp = colormap(np.linspace(0, 1, width), DIVERGING if signed else SEQUENTIAL)
    canvas.paste(Image.fromarray(np.repeat(ramp[None].round().astype(np.uint8), height, axis=0)), (x, y))
    draw.rectangle([x - 1, y - 1, x + width, y + height], outline=(90, 90, 90))
    lo, hi = vrange
    for frac, value in ((0.0, lo), (0.5, (lo + hi) / 2), (1.0, hi)):
        text = f"{value:+.3g}" if signed else f"{value:.3g}"
        tw = draw.textlength(text, font=font)
        tx = int(np.clip(x + frac * width - tw / 2, x - 4, x + width - tw + 4))
        draw.text((tx, y + height + 1), text, fill=(40, 40, 40), font=font)


def render_segments_png(display: np.ndarray, labels_full: np.ndarray, title: str) -> bytes:
    """The original image with superpixel boundaries and a title, to choose segmentation parameters."""
    from PIL import Image, ImageDraw

    h, w = labels_full.shape
    font_px = int(np.clip(min(h, w) / 18, 11, 18))
    font = _font(font_px)
    line = font_px + 6
    edges = boundaries(labels_full)
    picture = display.astype(np.float64)
    picture[~np.isfinite(labels_full)] *= 0.45
    picture[edges] = [255, 230, 0]
    canvas = Image.new("RGB", (max(w, 200), h + line), (255, 255, 255))
    canvas.paste(Image.fromarray(picture.round().astype(np.uint8)), (0, line))
    ImageDraw.Draw(canvas).text((2, 3), title, fill=(20, 20, 20), font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
