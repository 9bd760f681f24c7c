"""The exceptions the tool raises for problems the user can fix."""

from __future__ import annotations

from typing import Any


class ExplainError(Exception):
    """Bad usage or bad input: shown as one line on stderr, exit code 2.

    The message names the problem and, where there is one, the fix.
    """

    exit_code = 2


class OptionError(ExplainError):
    """A bad value for one option, named in the library's words (``samples``).

    Each interface renders the name its own way: the CLI as ``--samples``, YAML as the key
    path, Python as ``samples=``. ``problem`` completes a sentence whose subject is the option.
    """

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        self.problem = problem
        super().__init__(self.render("python"))

    def render(self, style: str = "python") -> str:
        """The message with the option named as ``style`` spells it: cli | yaml | python."""
        if style == "cli":
            name = "--" + self.option.replace("_", "-")
        elif style == "yaml":
            name = self.option
        else:
            name = f"{self.option}="
        return f"{name} {self.problem}" if style != "python" else f"{self.option} {self.problem}"


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
