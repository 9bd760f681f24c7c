"""What the command line shows on stderr: one-line errors and warnings, and a progress bar."""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import typer

from explain_cli.cli.flags import flags, render
from explain_cli.errors import ExplainError, ExplainWarning, one_line


def err(message: str) -> None:
    typer.echo(f"explain: error: {message}", err=True)


def warn(message: str) -> None:
    typer.echo(f"explain: warning: {flags(message)}", err=True)


@contextmanager
def relay_warnings(*, quiet: bool = False) -> Iterator[None]:
    """Print each ExplainWarning the library issues inside as ``explain: warning: ...``, when it happens."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", ExplainWarning)
        shown = warnings.showwarning

        def show(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
            if not issubclass(category, ExplainWarning):
                shown(message, category, *args, **kwargs)
            elif not quiet:
                warn(str(message))

        warnings.showwarning = show
        yield


class guard:
    """Run a command body: user errors become one line + exit 2, crashes one line + exit 1.

    The library's ExplainWarnings are silenced inside: the commands print warnings
    their own way (``explain: warning: ...``, or with the input's name), never twice.
    """

    def __init__(self, debug: bool) -> None:
        self.debug = debug
        self._warnings = warnings.catch_warnings()

    def __enter__(self) -> None:
        self._warnings.__enter__()
        warnings.simplefilter("ignore", ExplainWarning)
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._warnings.__exit__(exc_type, exc, tb)
        if exc is None or isinstance(exc, (typer.Exit, typer.Abort, KeyboardInterrupt)) or self.debug:
            return False
        if isinstance(exc, ExplainError):
            err(render(exc))
            raise typer.Exit(code=exc.exit_code) from None
        if isinstance(exc, MemoryError):
            err("out of memory; lower --batch-size")
            raise typer.Exit(code=1) from None
        if isinstance(exc, OSError) and exc.filename:
            err(f"cannot access {exc.filename}: {exc.strerror or exc}")
            raise typer.Exit(code=2) from None
        text = one_line(str(exc))
        err(f"internal error: {type(exc).__name__}: {text[:300]} (run with --debug for the traceback)")
        raise typer.Exit(code=1) from None


class RichProgress:
    """A rich progress bar on stderr (the library's Progress protocol)."""

    def __init__(self, unit: str = "evals") -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                             console=Console(stderr=True), transient=True)
        self._task: Any = None

    def start(self, total: int, description: str) -> None:
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(description, total=total)
        else:
            self._bar.reset(self._task, total=total, description=description)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)

    def describe(self, text: str) -> None:
        if self._task is not None:
            self._bar.update(self._task, description=text)

    def stop(self) -> None:
        if self._task is not None:
            self._bar.stop()
            self._task = None


def make_progress(*, quiet: bool, unit: str = "evals") -> Any:
    """A bar when stderr is a terminal, a plain line every 10 s when it is not (make, CI, nohup); nothing if ``quiet``."""
    from explain_cli.progress import LineProgress, NullProgress

    if quiet:
        return NullProgress()
    if not sys.stderr.isatty():
        return LineProgress(unit="evaluations" if unit == "evals" else unit)
    return RichProgress(unit)

