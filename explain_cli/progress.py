"""Progress reporting on stderr: a rich bar with ETA, or nothing (--quiet, or not a terminal)."""

from __future__ import annotations

import sys
from typing import Protocol


class Progress(Protocol):
    def start(self, total: int, description: str) -> None: ...
    def advance(self, n: int) -> None: ...
    def stop(self) -> None: ...
    def describe(self, text: str) -> None: ...


class NullProgress:
    """Progress that shows nothing."""

    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def stop(self) -> None:
        pass

    def describe(self, text: str) -> None:
        pass


class RichProgress:
    """A rich progress bar on stderr counting model evaluations."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("evals"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: int | None = None

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


def make_progress(*, quiet: bool) -> Progress:
    """A rich bar when stderr is a terminal and not ``quiet``; otherwise silence."""
    if quiet or not sys.stderr.isatty():
        return NullProgress()
    return RichProgress()
