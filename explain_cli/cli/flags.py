"""The option schema as Typer parameters, and library messages with their options as flags.

Every explanation option becomes a ``--flag`` generated from its declaration
(:data:`explain_cli.options.schema.OPTIONS`: flag, help, choices, default shown in the help).
The library names options in its own words, in backquotes (`max_pixels`); :func:`render` shows
them as this command line's flags (``--max-pixels``).
"""

from __future__ import annotations

import inspect
import re
from typing import Annotated, Any, Callable, Optional

import typer

from explain_cli.errors import ExplainError, OptionError
from explain_cli.options import schema

_METAVARS = {"int": "N", "float": "X", "str": "TEXT", "bool": None, "list": "TEXT", "dict": "KEY=VALUE"}
_PY_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list[str], "dict": list[str]}


def _help(o: schema.Option) -> str:
    text = o.help
    if o.methods and o.per_method:
        text += f" ({'/'.join(o.methods)})"
    elif o.methods:
        text += f" ({'/'.join(o.methods)} only)"
    if o.tasks:
        text += f" (task {'/'.join(o.tasks)})"
    if "[default:" not in text and o.default_text() not in ("none", "{}"):
        text += f" [default: {o.default_text()}]"
    return text


def _parameter(o: schema.Option, help_text: str | None = None) -> inspect.Parameter:
    names = [o.flag] if o.kind != "bool" else [f"{o.flag}/--no-{o.flag[2:]}"]
    if o.short:
        names.append(o.short)
    metavar = o.metavar or ("|".join(str(c) for c in o.choices) if o.choices else _METAVARS[o.kind])
    if o.allow_auto:
        metavar = f"{metavar}|auto"
    info = typer.Option(*names, help=help_text or _help(o), show_default=False, metavar=metavar,
                        rich_help_panel=o.group)
    # a number that may be "auto" arrives as text; the schema's check turns "500" into 500
    annotation = Annotated[Optional[str if o.allow_auto else _PY_TYPES[o.kind]], info]
    return inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def with_options(names: list[str], *fixed: inspect.Parameter, helps: dict[str, str] | None = None,
                 panel: str | None = None) -> Callable[[Callable], Callable]:
    """Give a command the fixed parameters plus the schema's options ``names``; the body gets them as kwargs.

    ``helps`` replaces an option's help sentence where this command uses it differently (``export
    --size``); ``panel`` is where ``--help`` is listed (options keep their schema group as panel).
    """
    from explain_cli.cli.helptext import help_option

    def wrap(body: Callable) -> Callable:
        params = list(fixed) + [_parameter(schema.OPTIONS[n], (helps or {}).get(n)) for n in names]
        params.append(param("show_help", help_option(panel), False))

        def command(**kwargs: Any) -> Any:
            kwargs.pop("show_help", None)
            return body(**kwargs)

        command.__name__ = body.__name__
        command.__doc__ = body.__doc__
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return wrap


def given_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Options given on the command line (None = not given), in the library's types."""
    out = {k: v for k, v in kwargs.items() if k in schema.OPTIONS and v is not None}
    if "seg_param" in out:
        out["seg_param"] = schema.parse_pairs(out["seg_param"], "seg_param")
    if not out.get("target"):
        out.pop("target", None)
    return out


def param(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    """A fixed parameter of a command; without ``default`` it is required."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


_OPTION_NAME = re.compile(r"`([a-z][a-z0-9_]*)`")


def flags(text: str) -> str:
    """Option names the library wrote in backquotes (`max_pixels`), as this command line's flags."""
    return _OPTION_NAME.sub(lambda m: schema.flag(m[1]) if m[1] in schema.OPTIONS else m[0], text)


def render(exc: ExplainError) -> str:
    """An error as the command line says it: options as flags, config problems one per line."""
    text = f"{schema.flag(exc.option)} {exc.problem}" if isinstance(exc, OptionError) else str(exc)
    return flags(text).replace("\n", "\nexplain: error: ")
