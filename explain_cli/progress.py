"""Progress reporting as a protocol, so the library needs no terminal library.

The CLI passes its own bar (rich); Python callers pass ``progress=True`` for a plain line on
stderr, a callable ``fn(done, total, description)``, or nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Protocol


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


class CallbackProgress:
    """Calls ``fn(done, total, description)`` at the start and after every batch."""

    def __init__(self, fn: Callable[[int, int, str], Any]) -> None:
        self.fn = fn
        self.done, self.total, self.description = 0, 0, ""

    def start(self, total: int, description: str) -> None:
        self.done, self.total, self.description = 0, total, description
        self.fn(0, total, description)

    def advance(self, n: int) -> None:
        self.done += n
        self.fn(self.done, self.total, self.description)

    def describe(self, text: str) -> None:
        self.description = text

    def stop(self) -> None:
        pass


class TextProgress(CallbackProgress):
    """One self-overwriting line on stderr, at most a few times a second (``progress=True``)."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(self._show)
        self.stream = stream or sys.stderr
        self._last = 0.0

    def _show(self, done: int, total: int, description: str) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.2:
            return
        self._last = now
        self.stream.write(f"\r{description}: {done}/{total} evaluations")
        self.stream.flush()

    def stop(self) -> None:
        if self.total:
            self.stream.write("\n")
            self.stream.flush()
        self.total = 0


def as_progress(progress: "Progress | Callable[[int, int, str], Any] | bool | None") -> Progress:
    """A Progress from what a caller passed: an object, a callable, True (text line) or None/False."""
    if progress is None or progress is False:
        return NullProgress()
    if progress is True:
        return TextProgress()
    if all(hasattr(progress, name) for name in ("start", "advance", "stop", "describe")):
        return progress  # type: ignore[return-value]
    if callable(progress):
        return CallbackProgress(progress)
    raise TypeError(f"progress must be True, a callable(done, total, description) or None, not {type(progress).__name__}")
