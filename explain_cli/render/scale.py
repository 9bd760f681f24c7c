"""Colour scales: the ``scale`` option, the limits a figure's maps share, and the colour bar's ticks."""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np

from explain_cli.errors import OptionError

DEFAULT_SCALE = "figure"
SCALE_FORMS: tuple[str, ...] = ("figure", "panel", "fixed:LO,HI")


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


def group_range(maps: Sequence[np.ndarray], signed: bool, scale: Scale) -> tuple[float, float]:
    """The limits a group of maps shares: ``scale``'s fixed limits, else `color_range` over all of them."""
    if scale.mode == "fixed":
        assert scale.limits is not None
        return scale.limits
    return color_range(np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps]), signed=signed)


class TickLayout(NamedTuple):
    """A colour bar's ticks: values, their labels, and the power of ten the labels share (0: none)."""

    values: np.ndarray  # tick values in data units, increasing
    labels: list[str]  # one per value; the mantissa when ``exponent`` != 0
    exponent: int  # the labels read value / 10**exponent ("×10⁻⁴" under the bar)


def tick_labels(ticks: Sequence[float] | np.ndarray) -> tuple[list[str], int]:
    """Labels for evenly spaced ticks and the power of ten they share (0: plain numbers).

    Plain decimals (as few as the step needs, ``0`` for zero, no ``+``) while they need at most
    three decimals and the largest is under 10⁴; otherwise every label is a mantissa of one shared
    power of ten, so ``±2.5e-4`` reads ``-2.5 … 2.5`` with ``×10⁻⁴`` once. No label is ever ``-0``.

    Examples
    --------
    >>> tick_labels([-0.05, -0.025, 0.0, 0.025, 0.05])
    (['-0.050', '-0.025', '0', '0.025', '0.050'], 0)
    >>> tick_labels([-5e-4, -2.5e-4, 0.0, 2.5e-4, 5e-4])
    (['-5.0', '-2.5', '0', '2.5', '5.0'], -4)
    """
    values = np.asarray(ticks, dtype=np.float64)
    if values.size == 0:
        return [], 0
    step = float(np.min(np.diff(values))) if values.size > 1 else (abs(float(values[0])) or 1.0)
    biggest = float(np.max(np.abs(values))) or step
    exponent = 0
    if _decimals(step) > 3 or biggest >= 1e4:
        exponent = math.floor(math.log10(biggest))
    scale = 10.0 ** exponent
    decimals = _decimals(step / scale)
    return ["0" if v == 0 else f"{v / scale:.{decimals}f}" for v in values], exponent


def format_ticks(ticks: Sequence[float] | np.ndarray) -> list[str]:
    """`tick_labels` written out in full: mantissas get their ``e`` suffix (``2.5e-4``), for text without a bar."""
    labels, exponent = tick_labels(ticks)
    if exponent == 0:
        return labels
    return [text if text == "0" else f"{text}e{exponent}" for text in labels]


def tick_layout(lo: float, hi: float, width: float, measure: Callable[[str], float], *, gap: float,
                overhang: float, most: int = 5) -> TickLayout:
    """Round ticks for a bar of ``width`` px over [lo, hi] whose labels never collide.

    Every step of 1, 2, 2.5 or 5 × 10^k is laid out with ``measure`` (a label's width in px, the
    real font's metrics); an end tick whose label would reach more than ``overhang`` px past the
    bar is dropped. Of the sets whose labels keep ``gap`` px apart, the one with the tick count
    nearest ``most`` wins (the larger step on a tie); if none has two ticks, the one tick nearest
    the middle (0 for a signed bar) that fits, else none.

    Parameters
    ----------
    lo, hi : float
        The bar's limits (lo < hi).
    width : float
        The bar's length in px; value v sits at ``(v - lo) / (hi - lo) * (width - 1)``.
    measure : callable
        ``measure(text)`` is the drawn width of ``text`` in px.
    gap, overhang : float
        Least space between labels; how far a label may reach past either end of the bar.
    most : int
        The tick count aimed at.

    Examples
    --------
    >>> layout = tick_layout(-0.05, 0.05, 400, lambda text: 8.0 * len(text), gap=8, overhang=30)
    >>> layout.labels, layout.exponent
    (['-0.050', '-0.025', '0', '0.025', '0.050'], 0)
    """
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        labels, exponent = tick_labels([lo])
        return TickLayout(np.array([lo]), labels, exponent)
    best: tuple[tuple[int, float], TickLayout] | None = None
    single: tuple[float, TickLayout] | None = None
    middle = 0.0 if lo <= 0.0 <= hi else (lo + hi) / 2
    top = 10.0 ** math.floor(math.log10(span))
    for mag in (top / 100, top / 10, top):
        for m in (1.0, 2.0, 2.5, 5.0):
            step = m * mag
            first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
            if not 1 <= last - first + 1 <= 4 * most:
                continue
            ticks = np.arange(first, last + 1) * step
            ticks[np.abs(ticks) < step * 1e-6] = 0.0  # no "-0" from rounding
            layout = _trimmed(ticks, lo, hi, width, measure, overhang)
            if layout is None or not _fits(layout, lo, hi, width, measure, gap):
                continue
            if len(layout.values) == 1:
                distance = abs(float(layout.values[0]) - middle)
                if single is None or distance < single[0]:
                    single = (distance, layout)
                continue
            key = (abs(len(layout.values) - most), -step)
            if best is None or key < best[0]:
                best = (key, layout)
    if best is not None:
        return best[1]
    # Too short for two labels: the one nearest the middle that fits, else none (never a collision).
    return single[1] if single is not None else TickLayout(np.array([]), [], 0)


def _trimmed(ticks: np.ndarray, lo: float, hi: float, width: float, measure: Callable[[str], float],
             overhang: float) -> TickLayout | None:
    """``ticks`` less the end ticks whose labels reach past ``overhang``; None if none remains."""
    while ticks.size >= 1:
        labels, exponent = tick_labels(ticks)
        left = (ticks[0] - lo) / (hi - lo) * (width - 1) - measure(labels[0]) / 2
        right = (ticks[-1] - lo) / (hi - lo) * (width - 1) + measure(labels[-1]) / 2
        if left >= -overhang and right <= width - 1 + overhang:
            return TickLayout(ticks, labels, exponent)
        ticks = ticks[1:] if -left >= right - (width - 1) else ticks[:-1]
    return None


def _fits(layout: TickLayout, lo: float, hi: float, width: float, measure: Callable[[str], float],
          gap: float) -> bool:
    """Whether labels centred on their ticks are distinct and ``gap`` apart (`_trimmed` kept the ends within reach)."""
    if len(set(layout.labels)) != len(layout.labels):
        return False
    centres = (layout.values - lo) / (hi - lo) * (width - 1)
    halves = np.array([measure(text) / 2 for text in layout.labels])
    return bool(np.all(centres[1:] - halves[1:] - (centres[:-1] + halves[:-1]) >= gap))


def _decimals(step: float) -> int:
    """Decimals needed to write multiples of ``step`` exactly (step = m × 10^k, m in 1, 2, 2.5, 5)."""
    for d in range(0, 16):
        scaled = step * 10**d
        if round(scaled) >= 1 and abs(scaled - round(scaled)) < 1e-6 * scaled:
            return d
    return 16
