"""The parse hooks of the free-form options: text in, a typed value out, once, at resolution.

Each function here is declared as the ``parse`` hook of its option in
:mod:`explain_cli.options.schema`; :func:`explain_cli.options.settings.settings` calls it on the
merged value, so the typed groups hold ``(224, 160)``, not ``"224,160"``. Two hooks live with
their domain and are declared the same way: ``scale`` (:func:`explain_cli.render.scale.parse_scale`,
whose ``Scale`` the renderer draws with) and the ``segments`` label-map file
(:func:`explain_cli.inputs.maps.parse_segments`, which reads it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from explain_cli.errors import OptionError

#: Largest model-input side accepted (a 4096² float image is already 200 MB per copy).
MAX_SIDE = 4096
#: Largest batch a forward pass takes.
MAX_BATCH = 65536
_PLAIN_NAME = re.compile(r"^[^/\\\x00-\x1f]+$")


def parse_size(text: str) -> tuple[int, int]:
    """``H`` or ``H,W`` (or ``HxW``) as a positive (H, W) pair.

    >>> parse_size("224"), parse_size("224,160")
    ((224, 224), (224, 160))
    """
    try:
        parts = [int(p) for p in str(text).replace("x", ",").split(",") if p.strip()]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) <= 0:
        raise OptionError("size", f"must be H or H,W with positive integers, e.g. 224 or 224,160; got {text!r}")
    if max(parts) > MAX_SIDE:
        raise OptionError("size", f"must be at most {MAX_SIDE} pixels a side, got {text!r}")
    return parts[0], parts[1]


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """Comma-separated finite numbers for ``option`` (its name, e.g. ``mean``)."""
    try:
        values = tuple(float(p) for p in str(text).split(","))
    except ValueError:
        raise OptionError(option, f"must be comma-separated numbers, e.g. 0.5,0.5,0.5; got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise OptionError(option, f"must be finite numbers, got {text!r}")
    return values


def parse_mean(text: str) -> tuple[float, ...]:
    """The ``mean`` option: per-channel numbers."""
    return parse_floats(text, "mean")


def parse_std(text: str) -> tuple[float, ...]:
    """The ``std`` option: positive per-channel numbers."""
    values = parse_floats(text, "std")
    if any(v <= 0 for v in values):
        raise OptionError("std", f"must be positive, got {text!r}")
    return values


def parse_batch_size(value: str | int) -> int | Literal["auto"]:
    """The ``batch_size`` option: a positive integer, or ``"auto"`` (chosen by device when the model is loaded).

    >>> parse_batch_size(" Auto "), parse_batch_size("32")
    ('auto', 32)
    """
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if not text.lstrip("-").isdigit():
        raise OptionError("batch_size", f"must be a positive integer or auto, got {value!r}")
    size = int(text)
    if not 1 <= size <= MAX_BATCH:
        raise OptionError("batch_size", f"must be between 1 and {MAX_BATCH} (or auto), got {size}")
    return size


def check_name(name: str) -> str:
    """The ``name`` option: a plain file name (no folders), as given."""
    if not _PLAIN_NAME.match(name) or name in (".", ".."):
        raise OptionError("name", f"must be a plain file name (no folders), got {name!r}")
    return name


@dataclass(frozen=True)
class Baseline:
    """A parsed ``baseline`` option."""

    kind: str  # zero | mean | blur | value
    values: tuple[float, ...]  # the colour, for ``value`` only
    spec: str  # the option's text, as the JSON records it


def parse_baseline(spec: str) -> Baseline:
    """The ``baseline`` option's parse hook: checks a spec before any work.

    Raises
    ------
    OptionError
        Unknown kind, or values that are not finite numbers.

    Examples
    --------
    >>> parse_baseline("value:128,128,128")
    Baseline(kind='value', values=(128.0, 128.0, 128.0), spec='value:128,128,128')
    """
    text = (spec or "zero").strip().lower()
    if text in ("zero", "mean", "blur", "reference"):
        return Baseline(text, (), spec)
    if text.startswith("value:"):
        try:
            values = tuple(float(v) for v in text[len("value:"):].split(","))
        except ValueError:
            values = ()
        if not values or len(values) > 4:
            raise OptionError("baseline", f"value: takes 1 or 3 comma-separated numbers, e.g. value:128,128,128; got {spec!r}")
        if not all(math.isfinite(v) for v in values):
            raise OptionError("baseline", f"value: numbers must be finite, got {spec!r}")
        return Baseline("value", values, spec)
    raise OptionError("baseline", f"must be zero, mean, blur, reference or value:R,G,B, got {spec!r}")
