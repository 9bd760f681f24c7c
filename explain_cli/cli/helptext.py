"""``--help`` in one style for every command: usage, the summary, arguments, then options by panel.

Typer's own help shows Python types beside arguments (``<list[str]>``, ``<int range>``) and
writes required arguments as ``{config}``; its rich panels squeeze at 80 columns. Here every
value has one kind of placeholder (``N``, ``FILE``, ``a|b`` for choices), and options are grouped
under their help panel: for ``explain run`` the schema's groups (Method, Targets, Segmentation,
Input, Model, Output, Evaluation, Run). Each command gets an eager ``--help`` option
(:func:`help_option`) that prints :func:`command_help` and exits.
"""

from __future__ import annotations

import inspect
import shutil
import textwrap
from enum import Enum
from typing import Annotated, Any

import typer

PROG = "explain"
HELP_TEXT = "Show this message and exit."
#: The panel of options that declare none.
OPTIONS_PANEL = "Options"


def width() -> int:
    """Text width: the terminal's (``COLUMNS``), at most 100, at least 50."""
    return max(min(shutil.get_terminal_size((80, 24)).columns, 100) - 2, 50)


def _column(rows: list[tuple[str, str]]) -> int:
    """Where the help column starts: after the longest term, up to a point (longer terms get a line of their own)."""
    return min(max((len(term) for term, _ in rows), default=0), 28) + 4


def _rows(rows: list[tuple[str, str]], total: int, column: int | None = None) -> list[str]:
    """A two-column definition list: terms padded to one column, help wrapped beside them (or below a long term)."""
    column = column or _column(rows)
    lines = []
    for term, text in rows:
        wrapped = textwrap.wrap(text, max(total - column, 20)) or [""]
        if len(term) + 4 > column:
            lines.append(f"  {term}")
            lines += [" " * column + line for line in wrapped if line]
        else:
            lines.append(f"  {term:<{column - 2}}{wrapped[0]}".rstrip())
            lines += [" " * column + line for line in wrapped[1:]]
    return lines


def _metavar(param: Any) -> str:
    if param.metavar is not None:
        return str(param.metavar)
    return param.name.upper()


def _default_text(param: Any) -> str | None:
    default = param.default
    if param.show_default is False or default is None or default is False or default == [] or callable(default):
        return None
    return str(default.value if isinstance(default, Enum) else default)


def _option_term(param: Any) -> str:
    shorts = [o for o in param.opts if not o.startswith("--")]
    longs = [o for o in param.opts if o.startswith("--")]
    names = ", ".join(shorts + longs)
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    if not param.is_flag:
        names += f" {_metavar(param)}"
    return names


def _option_help(param: Any) -> str:
    text = " ".join((param.help or "").split())
    shown = _default_text(param)
    if shown is not None and "[default:" not in text:
        text += f" [default: {shown}]"
    return text


def _usage(command: Any, name: str) -> str:
    pieces = [f"Usage: {PROG} {name}".rstrip(), "[OPTIONS]"]
    for param in command.params:
        if param.param_type_name != "argument":
            continue
        shown = _metavar(param).removesuffix("...")
        shown += "..." if param.nargs != 1 else ""
        pieces.append(shown if param.required else f"[{shown}]")
    return " ".join(pieces)


def command_help(command: Any, name: str, panels: tuple[str, ...] = ()) -> str:
    """The help of one command: usage, its docstring, its arguments, its options under their panels.

    ``panels`` orders the panels that come first; the others follow in order of appearance.
    """
    total = width()
    lines = [_usage(command, name), ""]
    for paragraph in inspect.cleandoc(command.help or "").split("\n\n"):
        lines += ["  " + line for line in textwrap.wrap(" ".join(paragraph.split()), total - 2)] + [""]
    arguments = [(_metavar(p), " ".join((p.help or "").split())) for p in command.params
                 if p.param_type_name == "argument" and not p.hidden]
    if arguments:
        lines += ["Arguments:", *_rows(arguments, total), ""]
    grouped: dict[str, list[tuple[str, str]]] = {panel: [] for panel in panels}
    for param in command.params:
        if param.param_type_name == "option" and not param.hidden:
            panel = getattr(param, "rich_help_panel", None) or OPTIONS_PANEL
            grouped.setdefault(panel, []).append((_option_term(param), _option_help(param)))
    column = _column([row for rows in grouped.values() for row in rows])  # one column for every panel
    for panel, rows in grouped.items():
        if rows:
            lines += [f"{panel}:", *_rows(rows, total, column), ""]
    return "\n".join(lines).rstrip() + "\n"


def group_help(group: Any, summary: str) -> str:
    """The top-level help: what the tool does, each command with its whole summary, the global options."""
    total = width()
    lines = [f"Usage: {PROG} [OPTIONS] COMMAND [ARGS]...", ""]
    lines += ["  " + line for line in textwrap.wrap(summary, total - 2)] + [""]
    commands = [(name, (cmd.help or "").strip().split("\n\n")[0]) for name, cmd in group.commands.items() if not cmd.hidden]
    lines += ["Commands:", *_rows([(n, " ".join(h.split())) for n, h in commands], total), ""]
    options = [(_option_term(p), _option_help(p)) for p in group.params if p.param_type_name == "option" and not p.hidden]
    lines += ["Options:", *_rows(options, total), ""]
    lines.append(f"Run '{PROG} COMMAND --help' for a command's arguments and options.")
    return "\n".join(lines) + "\n"


def _show_help(ctx: typer.Context, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    if ctx.parent is None:
        typer.echo(group_help(ctx.command, ctx.command.help or ""), nl=False)
    else:
        from explain_cli.options.schema import GROUPS

        typer.echo(command_help(ctx.command, ctx.info_name or "", panels=GROUPS), nl=False)
    raise typer.Exit()


def help_option(panel: str | None = None) -> Any:
    """The annotation of an eager ``--help`` flag (in ``panel``) that prints this module's help and exits."""
    return Annotated[bool, typer.Option("--help", help=HELP_TEXT, is_eager=True, callback=_show_help, expose_value=False,
                                        rich_help_panel=panel, show_default=False)]
