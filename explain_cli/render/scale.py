"""Colour scales: the ``scale`` option, the limits a figure's maps share, and the colour bar's ticks."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

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


def format_ticks(ticks: Sequence[float] | np.ndarray) -> list[str]:
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
