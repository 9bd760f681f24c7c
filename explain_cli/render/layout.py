"""Figure layout: fonts and wrapped text, colour bars, the grid of captioned panels, and the PNG encoder."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

from explain_cli.render.colormaps import apply_cmap
from explain_cli.render.scale import TickLayout, tick_layout

if TYPE_CHECKING:
    from PIL import Image as PILImage
    from PIL import ImageFont

# Key of ``image.info`` holding the panels' (left, top, right, bottom) boxes, row by row.
PANELS_KEY = "explain_cli.panels"

INK = (25, 25, 25)
PAPER = (255, 255, 255)


@lru_cache(maxsize=32)
def load_font(size: int) -> "ImageFont.FreeTypeFont | ImageFont.ImageFont":
    """Pillow's default font at ``size`` px (a fixed bitmap font where Pillow lacks FreeType); cached."""
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
            bar_span: tuple[int, int] | None = None, note: str | None = None) -> "PILImage.Image":
    """Title, a grid of cells (captions above panels, optional per-cell bars), figure bars and a note below.

    ``bar_span`` = (first, last) columns the figure bars are centred under (the map columns);
    ``note`` is one muted line (wrapped) under everything, e.g. what the numbers mean.
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
    first, last = bar_span if bar_span is not None else (0, n_cols - 1)
    span_x0, span_x1 = col_x[first], col_x[last] + col_w[last]
    span = span_x1 - span_x0
    figure_bw = int(min(span * 0.85, max(360, span * 0.6)))
    # Each bar's ticks are chosen for its length with the real font, so labels never collide.
    figure_ticks = [bar_ticks(b.vrange, figure_bw, font_px, (span - figure_bw) / 2 + margin) for b in bars]
    cell_ticks = {id(cell): bar_ticks(cell.bar.vrange, _cell_bar_width(cell), font_px,
                                      (cell.image.width - _cell_bar_width(cell)) / 2 + gap / 2)
                  for r in grid for cell in r if cell is not None and cell.bar is not None}

    # Captions wrap to their panel's width; a row's captions share one height so panels align.
    wrapped = [[_wrap_lines(cell.caption, font, col_w[c]) if cell else [] for c, cell in enumerate(r)] for r in grid]
    title_lines = _wrap(title, title_font, width - 2 * margin)
    y = margin // 2
    heights = []
    for r, row in enumerate(grid):
        cap_h = line * max((len(w) for w in wrapped[r]), default=0)
        pan_h = max((cell.image.height for cell in row if cell), default=0)
        own_bar = max((_bar_height(font_px, cell.bar, cell_ticks[id(cell)]) for cell in row if cell and cell.bar),
                      default=0)
        heights.append((cap_h, pan_h, own_bar))
    note_lines = _wrap(note, font, width - 2 * margin) if note else []
    title_h = round(font_px * 1.5) * len(title_lines) + (gap // 2 if title_lines else 0)
    figure_bars_h = sum(_bar_height(font_px, b, t) + gap // 2 for b, t in zip(bars, figure_ticks))
    height = (y + title_h + sum(c + p + (b + gap // 2 if b else 0) + gap for c, p, b in heights) + figure_bars_h
              + line * len(note_lines) + margin // 2)
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
                bw = _cell_bar_width(cell)
                _draw_bar(canvas, cell.bar, cell_ticks[id(cell)], x + (cell.image.width - bw) // 2,
                          y + cap_h + pan_h + gap // 2, bw, font_px)
        y += cap_h + pan_h + (own_bar + gap // 2 if own_bar else 0) + gap
    for bar, ticks in zip(bars, figure_ticks):
        _draw_bar(canvas, bar, ticks, span_x0 + (span - figure_bw) // 2, y, figure_bw, font_px)
        y += _bar_height(font_px, bar, ticks) + gap // 2
    for text in note_lines:
        draw.text((width / 2, y), text, fill=(90, 90, 90), font=font, anchor="ma")
        y += line
    # Where each panel lies, so a notebook (or a test) can crop one without knowing the layout.
    canvas.info[PANELS_KEY] = boxes
    return canvas


def _wrap_lines(lines: Sequence[str], font, width: int) -> list[str]:
    return [piece for text in lines for piece in _wrap(text, font, width)]


def _cell_bar_width(cell: Cell) -> int:
    return round(cell.image.width * 0.85)


def bar_ticks(vrange: tuple[float, float], width: int, font_px: int, overhang: float) -> TickLayout:
    """The ticks of a colour bar over ``vrange`` drawn ``width`` px long, measured in the figures' font.

    Labels keep 0.6 em between them and reach at most ``overhang`` px past the bar's ends.
    """
    return tick_layout(vrange[0], vrange[1], width, lambda text: _label_width(text, font_px),
                       gap=max(6.0, font_px * 0.6), overhang=overhang)


@lru_cache(maxsize=4096)
def _label_width(text: str, font_px: int) -> float:
    return float(load_font(font_px).getlength(text))


def _bar_height(font_px: int, bar: Bar, ticks: TickLayout) -> int:
    ramp = max(8, round(font_px * 0.8))
    under = bar.label is not None or ticks.exponent != 0
    return ramp + 4 + round(font_px * 1.3) + (round(font_px * 1.35) if under else 0)


def _draw_bar(canvas: "PILImage.Image", bar: Bar, ticks: TickLayout, x: int, y: int, width: int,
              font_px: int) -> None:
    """A horizontal colour bar with its ticks below it and, optionally, a label (and ×10ⁿ) under those."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(canvas)
    font = load_font(font_px)
    ramp_h = max(8, round(font_px * 0.8))
    colours = apply_cmap(np.linspace(0.0, 1.0, width), bar.cmap).round().astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(colours[None], ramp_h, axis=0)), (x, y))
    draw.rectangle([x - 1, y - 1, x + width, y + ramp_h], outline=(110, 110, 110))
    lo, hi = bar.vrange
    for value, text in zip(ticks.values, ticks.labels):
        tx = x + (value - lo) / (hi - lo) * (width - 1)
        draw.line([(tx, y + ramp_h), (tx, y + ramp_h + 3)], fill=(90, 90, 90), width=1)
        draw.text((tx, y + ramp_h + 4), text, fill=INK, font=font, anchor="ma")
    if bar.label is not None or ticks.exponent != 0:
        _draw_label(draw, x + width / 2, y + ramp_h + 4 + round(font_px * 1.3), bar.label, ticks.exponent, font_px)


def _draw_label(draw, centre: float, y: float, label: str | None, exponent: int, font_px: int) -> None:
    """``label`` centred at ``centre``, followed by ``×10ⁿ`` when the tick labels share a power of ten.

    The default font has no × or superscript glyphs, so the cross is drawn and the exponent set
    in a smaller font, raised.
    """
    colour = (70, 70, 70)
    font = load_font(font_px)
    if exponent == 0:
        draw.text((centre, y), label or "", fill=colour, font=font, anchor="ma")
        return
    small = load_font(max(8, round(font_px * 0.7)))
    prefix = f"{label}  " if label else ""
    cross = round(font_px * 0.5)  # the × box, px
    power = str(exponent)
    widths = [font.getlength(prefix), cross + 2, font.getlength("10"), small.getlength(power)]
    x = centre - sum(widths) / 2
    draw.text((x, y), prefix, fill=colour, font=font, anchor="la")
    x += widths[0]
    _, top, _, bottom = draw.textbbox((0, y), "x", font=font, anchor="la")
    mid, half = (top + bottom) / 2, cross * 0.32
    cx = x + cross / 2
    stroke = max(1, round(font_px / 12))
    draw.line([(cx - half, mid - half), (cx + half, mid + half)], fill=colour, width=stroke)
    draw.line([(cx - half, mid + half), (cx + half, mid - half)], fill=colour, width=stroke)
    x += widths[1]
    draw.text((x, y), "10", fill=colour, font=font, anchor="la")
    x += widths[2]
    draw.text((x + 1, y - round(font_px * 0.25)), power, fill=colour, font=small, anchor="la")


def to_png(image: "PILImage.Image") -> bytes:
    """The PNG file's bytes for ``image`` (optimised; every figure the tool writes goes through here).

    A print size set in ``image.info["dpi"]`` (the curves figure's) is recorded in the file.
    """
    buffer = io.BytesIO()
    extra = {"dpi": image.info["dpi"]} if "dpi" in image.info else {}
    image.save(buffer, format="PNG", optimize=True, **extra)
    return buffer.getvalue()

