"""Figure layout: fonts and wrapped text, colour bars, the grid of captioned panels, and the PNG encoder."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from explain_cli.render.colormaps import apply_cmap
from explain_cli.render.scale import format_ticks, nice_ticks

if TYPE_CHECKING:
    from PIL import Image as PILImage
    from PIL import ImageFont

# Key of ``image.info`` holding the panels' (left, top, right, bottom) boxes, row by row.
PANELS_KEY = "explain_cli.panels"

INK = (25, 25, 25)
PAPER = (255, 255, 255)


def load_font(size: int) -> "ImageFont.FreeTypeFont | ImageFont.ImageFont":
    """Pillow's default font at ``size`` px (a fixed bitmap font where Pillow lacks FreeType)."""
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


def panel_font_px(panel_h: int, panel_w: int) -> int:
    """Text size for a panel: about 1/16 of its short side, within 12..22 px."""
    return int(np.clip(round(min(panel_h, panel_w) / 16), 12, 22))


@dataclass
class Bar:
    """A colour bar: limits, colour map, an optional label under the tick labels."""

    vrange: tuple[float, float]
    cmap: str
    label: str | None = None


@dataclass
class Cell:
    """One panel of the grid with the lines above it and, optionally, its own bar below."""

    image: "PILImage.Image"
    caption: list[str]
    bar: Bar | None = None


def compose(title: str, grid: Sequence[Sequence[Cell | None]], bars: Sequence[Bar], font_px: int,
            bar_span: tuple[int, int] | None = None) -> "PILImage.Image":
    """Title, a grid of cells (captions above panels, optional per-cell bars) and figure bars below.

    ``bar_span`` = (first, last) columns the figure bars are centred under (the map columns).
    """
    from PIL import Image, ImageDraw

    font = load_font(font_px)
    title_font = load_font(round(font_px * 1.15))
    line = round(font_px * 1.35)
    gap = max(8, font_px // 2 + 4)
    margin = gap
    n_cols = max(len(r) for r in grid)
    col_w = [max((cell.image.width for r in grid if c < len(r) and (cell := r[c]) is not None), default=0)
             for c in range(n_cols)]
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
    canvas = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(canvas)
    boxes: list[tuple[int, int, int, int]] = []
    for text in title_lines:
        draw.text((margin, y), text, fill=INK, font=title_font)
        y += round(font_px * 1.5)
    y += gap // 2 if title_lines else 0
    for r, row in enumerate(grid):
        cap_h, pan_h, own_bar = heights[r]
        for c, cell in enumerate(row):
            if cell is None:
                continue
            x = col_x[c] + (col_w[c] - cell.image.width) // 2
            for j, text in enumerate(wrapped[r][c]):
                draw.text((x, y + j * line + 2), text, fill=INK, font=font)
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


def _draw_bar(canvas: "PILImage.Image", bar: Bar, x: int, y: int, width: int, font_px: int) -> None:
    """A horizontal colour bar with round ticks below it and, optionally, a label under those."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(canvas)
    font = load_font(font_px)
    ramp_h = max(8, round(font_px * 0.8))
    colours = apply_cmap(np.linspace(0.0, 1.0, width), bar.cmap).round().astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(colours[None], ramp_h, axis=0)), (x, y))
    draw.rectangle([x - 1, y - 1, x + width, y + ramp_h], outline=(110, 110, 110))
    lo, hi = bar.vrange
    ticks = nice_ticks(lo, hi)
    for value, text in zip(ticks, format_ticks(ticks)):
        tx = x + (value - lo) / (hi - lo) * (width - 1)
        draw.line([(tx, y + ramp_h), (tx, y + ramp_h + 3)], fill=(90, 90, 90), width=1)
        draw.text((tx, y + ramp_h + 4), text, fill=INK, font=font, anchor="ma")
    if bar.label:
        draw.text((x + width / 2, y + ramp_h + 4 + round(font_px * 1.3)), bar.label, fill=(70, 70, 70),
                  font=font, anchor="ma")


def to_png(image: "PILImage.Image") -> bytes:
    """The PNG file's bytes for ``image`` (optimised; every figure the tool writes goes through here)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()

