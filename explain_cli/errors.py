"""The exceptions the tool raises for problems the user can fix."""

from __future__ import annotations

import os
import re
from typing import Any, Iterable

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class ExplainError(Exception):
    """Bad usage or bad input: shown as one line on stderr, exit code 2.

    The message names the problem and, where there is one, the fix. It names options in the
    library's words, in backquotes (``raise the limit with `max_pixels```), so that the command
    line can show its flags instead (``--max-pixels``).
    """

    exit_code = 2


class ExplainWarning(UserWarning):
    """A warning a user should see: random weights, a coarse segmentation, a poor fit, ...

    Issued through :func:`warnings.warn` (see :func:`warn_user`) and also kept in the
    Explanation's ``warnings``, so the JSON has them too. Silence them in Python with
    ``warnings.simplefilter("ignore", explain_cli.ExplainWarning)``.
    """


def warn_user(message: str) -> None:
    """Issue ``message`` as an :class:`ExplainWarning`, pointing at the caller's first line outside this package."""
    import sys
    import warnings

    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, ExplainWarning, stacklevel=level)


class OptionError(ExplainError):
    """A bad value for one option, named in the library's words (``samples``).

    Each interface renders the name its own way: the CLI as ``--samples``, YAML as the key
    path, Python as ``samples``. ``problem`` completes a sentence whose subject is the option.
    """

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        self.problem = problem
        super().__init__(f"{option} {problem}")


def install_hint(extra: str) -> str:
    """The command that installs one of the package's optional extras."""
    return f"pip install 'explain_cli[{extra}]'"


def require_module(name: str, needed_for: str, extra: str) -> Any:
    """Import ``name``, or raise a one-line ExplainError: ``needed_for``, then how to install ``extra``."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ExplainError(f"{needed_for}: {install_hint(extra)}") from None


def suggest(word: str, choices: Iterable[Any], *, n: int = 1, quote: bool = False) -> str:
    """``did you mean X?`` naming the choices closest to ``word`` (at most ``n``), or ``""``.

    Case is ignored when matching; the choices are named as given (``quote``: as ``repr``).

    >>> suggest("lyme", ["lime", "rise"])
    'did you mean lime?'
    >>> suggest("RDBU_R", ["RdBu_r", "inferno"], quote=True)
    "did you mean 'RdBu_r'?"
    >>> suggest("zzz", ["lime"])
    ''
    >>> suggest("shap", ["kernelshap", "partition", "lime"])
    'did you mean kernelshap?'
    """
    import difflib

    names = [str(c) for c in choices]
    by_folded: dict[str, str] = {}
    for name in names:
        by_folded.setdefault(name.casefold(), name)
    folded = str(word).casefold()
    close = difflib.get_close_matches(folded, list(by_folded), n=n)
    if not close and len(folded) >= 3:  # a part of a name: shap -> kernelshap, perm -> permutation
        close = [name for name in by_folded if folded in name][:n]
    if not close:
        return ""
    shown = [repr(by_folded[c]) if quote else by_folded[c] for c in close]
    return f"did you mean {', '.join(shown)}?"


#: A line that names the exception it reports: ``RuntimeError: ...``, ``builtins.ValueError ...: ...``.
RAISED_LINE = re.compile(r"^(?:builtins\.)?[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)\b[^:]*: ")


def one_line(exc: BaseException | str) -> str:
    """An exception's own message on one line (its type name when it has no message).

    TorchScript wraps the message in two tracebacks and ends with ``builtins.RuntimeError:
    message`` (which may span lines): that last raised line and what follows are kept. Other
    messages are joined line by line, up to a C++ backtrace (``Exception raised from ...``).

    >>> one_line(ValueError("bad\\n  header"))
    'bad header'
    >>> one_line(KeyError())
    'KeyError'
    """
    text = str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    if "TorchScript interpreter" in lines[0] or lines[0].startswith("Traceback"):
        starts = [i for i, line in enumerate(lines) if RAISED_LINE.match(line)]
        lines = lines[starts[-1]:] if starts else lines[-1:]
        lines[0] = lines[0].removeprefix("builtins.")
    else:
        cut = next((i for i, line in enumerate(lines) if i and line.startswith("Exception raised from ")), len(lines))
        lines = lines[:cut]
    return " ".join(" ".join(line.split()) for line in lines)
