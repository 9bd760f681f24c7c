"""How an engine declares its parameters: dataclass fields that carry their help, choices and range.

An engine's parameters are a frozen dataclass whose fields are made with :func:`param`. The
option schema (:mod:`explain_cli.options.schema`) reads these fields, so the CLI flag, the YAML key,
the Python keyword, ``explain info`` and the README's option table all come from this one
declaration, and :func:`check_params` validates every value the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from explain_cli.errors import OptionError, suggest


def param(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    metavar: str | None = None,
    allow_auto: bool = False,
) -> Any:
    """A dataclass field for an engine parameter.

    Parameters
    ----------
    default
        The value used when nobody sets it. Written here and nowhere else.
    help
        One sentence for ``--help``, ``explain info`` and the README.
    choices
        The allowed values, if the parameter is a choice.
    minimum, maximum
        The allowed range of a number (inclusive; ``exclusive_minimum`` makes the lower bound strict).
    allow_auto
        A number that may also be the exact string ``"auto"`` (``samples auto``: the engine picks
        the budget by its own stopping rule, :mod:`explain_cli.engines.auto`).
    """
    return dataclasses.field(
        default=default,
        metadata={"help": help, "choices": choices, "minimum": minimum, "maximum": maximum,
                  "exclusive_minimum": exclusive_minimum, "metavar": metavar, "allow_auto": allow_auto},
    )


def check_value(name: str, value: Any, kind: type, meta: Mapping[str, Any]) -> Any:
    """Validate one value against its declaration; returns it converted (int → float where a float is declared).

    Raises
    ------
    OptionError
        Wrong type, a non-finite number, out of range, or not one of the choices.
    """
    if meta.get("allow_auto") and isinstance(value, str) and kind in (int, float):
        text = value.strip()
        if text == "auto":
            return "auto"
        try:
            value = int(text) if kind is int else float(text)
        except ValueError:
            raise OptionError(name, f"must be {'an integer' if kind is int else 'a number'} or auto, got {value!r}") from None
    if kind is bool:
        if not isinstance(value, bool):
            raise OptionError(name, f"must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionError(name, f"must be {'an integer' if kind is int else 'a number'}, got {value!r}"
                              + ("; auto is for lime, kernelshap and rise" if value == "auto" else ""))
        if kind is int and isinstance(value, float):
            if not value.is_integer():
                raise OptionError(name, f"must be an integer, got {value!r}")
            value = int(value)
        if not math.isfinite(value):
            raise OptionError(name, f"must be a finite number, got {value!r}")
        value = kind(value)
        lo, hi = meta.get("minimum"), meta.get("maximum")
        if lo is not None and (value < lo or (meta.get("exclusive_minimum") and value <= lo)):
            rel = "greater than" if meta.get("exclusive_minimum") else "at least"
            raise OptionError(name, f"must be {rel} {_fmt(lo)}, got {_fmt(value)}")
        if hi is not None and value > hi:
            raise OptionError(name, f"must be at most {_fmt(hi)}, got {_fmt(value)}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        hint = suggest(str(value), choices)
        hint = f" ({hint})" if hint else ""
        raise OptionError(name, f"must be one of {', '.join(str(c) for c in choices)}, got {value!r}{hint}")
    return value


def _fmt(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else f"{value:g}" if isinstance(value, float) else str(value)


def field_type(f: dataclasses.Field) -> type:
    """The plain Python type of a parameter field (its annotation may be a string)."""
    tp = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str, "bool": bool}.get(str(f.type), str)
    return tp


def check_params(params: Any) -> None:
    """Validate every field of an engine's parameter dataclass against its declaration."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        checked = check_value(f.name, value, field_type(f), f.metadata)
        if checked is not value:
            object.__setattr__(params, f.name, checked)
