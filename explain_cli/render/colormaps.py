"""Colour-map lookup tables for the heatmaps: 256 RGB entries per map, read from ``colormaps.json``.

The JSON maps each name to 16 hex strings of 16 RGB entries each (package data, read lazily).

The tables were sampled once from matplotlib 3.11.2 (``colormaps[name](np.linspace(0, 1, 256))``,
RGB rounded to uint8) so that the tool draws the same colours without importing matplotlib::

    rgb = (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    rgb.tobytes().hex()

Provenance and licences: matplotlib is distributed under its PSF-based, BSD-compatible licence;
``viridis``, ``inferno`` and ``magma`` (Smith & van der Walt) are CC0; ``cividis`` (Nuñez, Anderton
& Renslow 2018) ships with matplotlib under its licence; ``RdBu_r`` is ColorBrewer's RdBu
(Cynthia Brewer, Apache-2.0-style licence) reversed; ``coolwarm`` is Kenneth Moreland's
diverging map; ``bwr`` and ``gray`` are plain linear ramps.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from explain_cli.errors import OptionError

# Diverging maps have a neutral centre colour, so a symmetric scale puts 0 on it.
DIVERGING: tuple[str, ...] = ("RdBu_r", "coolwarm", "bwr")
# Sequential maps are perceptually uniform (except gray, which is for print).
SEQUENTIAL: tuple[str, ...] = ("inferno", "viridis", "magma", "cividis", "gray")
NAMES: tuple[str, ...] = DIVERGING + SEQUENTIAL
DEFAULT_SIGNED = "RdBu_r"
DEFAULT_UNSIGNED = "inferno"


@lru_cache(maxsize=1)
def _tables() -> dict[str, list[str]]:
    """The tables from ``colormaps.json`` (package data), read on first use."""
    from importlib.resources import files

    return json.loads(files("explain_cli.render").joinpath("colormaps.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def lookup_table(name: str) -> np.ndarray:
    """The (256, 3) uint8 table of colour map ``name`` (read-only; names are case-sensitive).

    Raises
    ------
    OptionError
        For an unknown name; the message lists the available maps.
    """
    if name not in NAMES:
        from explain_cli.errors import suggest

        hint = suggest(name, NAMES, quote=True)
        hint = f"; {hint}" if hint else ""
        raise OptionError("cmap", f"must be one of {', '.join(NAMES)}, not {name!r}{hint}")
    table = np.frombuffer(bytes.fromhex("".join(_tables()[name])), dtype=np.uint8).reshape(256, 3)
    table.flags.writeable = False  # cached and shared: a caller must not recolour everyone's map
    return table


def default_cmap(signed: bool) -> str:
    """The map used when none is asked for: diverging for signed scores, sequential otherwise."""
    return DEFAULT_SIGNED if signed else DEFAULT_UNSIGNED


def apply_cmap(t: np.ndarray, name: str) -> np.ndarray:
    """Colours for positions ``t`` in [0, 1] (clipped), linearly interpolated between table entries.

    Parameters
    ----------
    t : ndarray of float
        Any shape; NaN is treated as 0.5 (callers mask NaN themselves).
    name : str
        One of `NAMES`.

    Returns
    -------
    ndarray of float64, shape ``t.shape + (3,)``
        RGB in 0..255. Interpolating (rather than picking the nearest entry) puts t = 0.5 exactly
        on the diverging maps' neutral centre, between entries 127 and 128.
    """
    table = lookup_table(name).astype(np.float64)
    pos = np.clip(np.nan_to_num(np.asarray(t, dtype=np.float64), nan=0.5), 0.0, 1.0) * 255.0
    lo = np.minimum(np.floor(pos).astype(np.intp), 254)
    frac = (pos - lo)[..., None]
    return table[lo] * (1.0 - frac) + table[lo + 1] * frac
