"""Progress reporting as a protocol, so the library needs no terminal library.

The CLI passes its own bar (rich) on a terminal and :class:`LineProgress` elsewhere (make, CI,
nohup: a plain line every 10 s); Python callers pass ``progress=True`` for a self-overwriting
line with rate and ETA, a callable ``fn(done, total, description)``, or nothing. Each
``start`` begins a phase (an engine, a stability re-run, ``evaluate``) with its own total.
"""

from __future__ import annotations

import sys
import threading
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


def duration(seconds: float) -> str:
    """A duration as people say it: ``45 s``, ``3 min``, ``1.5 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class RateProgress:
    """Shows ``DESCRIPTION: done/total UNIT, R/s, ETA T`` on a stream, at most every ``interval`` seconds.

    ``overwrite`` rewrites one line in place (a terminal, a notebook); otherwise each report is
    its own line, for logs. ``clock`` is injectable so tests need not wait.
    """

    def __init__(self, stream: Any = None, *, interval: float, overwrite: bool, unit: str = "evaluations",
                 prefix: str = "", clock: Callable[[], float] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval, self.overwrite, self.unit, self.prefix = interval, overwrite, unit, prefix
        self.clock = clock or time.monotonic
        self.done, self.total, self.description = 0, 0, ""
        self._began = self._last = self.clock()
        self._shown = False

    def start(self, total: int, description: str) -> None:
        """A new phase; the same description again (an auto budget's next round) keeps the phase's clock."""
        if description != self.description or not self.total:
            self._began = self.clock()
        self.done, self.total, self.description = 0, int(total), description
        if not self._shown:
            self._last = self._began  # the first line comes one interval after the first phase starts

    def advance(self, n: int) -> None:
        self.done += n
        self._maybe_show(final=self.overwrite and self.done >= self.total)

    def describe(self, text: str) -> None:
        self.description = text
        self._maybe_show()

    def stop(self) -> None:
        if self.overwrite and self._shown:
            self.stream.write("\n")
            self.stream.flush()
        self._shown = False
        self.total = 0

    def line(self) -> str:
        """The report as of now."""
        elapsed = max(self.clock() - self._began, 1e-9)
        text = f"{self.prefix}{self.description}: {self.done:,}/{self.total:,} {self.unit}"
        if self.done > 0 and elapsed > 0:
            rate = self.done / elapsed
            text += f", {rate:.3g}/s" if rate < 100 else f", {rate:,.0f}/s"
            if self.total > self.done:
                text += f", ETA {duration((self.total - self.done) / rate)}"
        return text

    def _maybe_show(self, final: bool = False) -> None:
        now = self.clock()
        if not final and now - self._last < self.interval:
            return
        self._last = now
        self._shown = True
        if self.overwrite:
            self.stream.write("\r" + self.line() + "\x1b[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()


class TextProgress(RateProgress):
    """One self-overwriting line on stderr with rate and ETA, a few times a second (``progress=True``)."""

    def __init__(self, stream: Any = None, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__(stream, interval=0.2, overwrite=True, clock=clock)


class LineProgress(RateProgress):
    """A plain line on stderr about every 10 s, for logs (no terminal: make, CI, nohup).

    Besides each batch's report, a daemon thread (``ticker``) looks every ``interval / 10``
    seconds, so a model whose single batch takes longer than the interval still gets its lines.
    """

    def __init__(self, stream: Any = None, *, unit: str = "evaluations", interval: float = 10.0,
                 clock: Callable[[], float] | None = None, ticker: bool = True) -> None:
        super().__init__(stream, interval=interval, overwrite=False, unit=unit, prefix="explain: ", clock=clock)
        self.ticker = ticker
        self._lock = threading.Lock()
        self._halt: threading.Event | None = None

    def start(self, total: int, description: str) -> None:
        with self._lock:
            super().start(total, description)
        if self.ticker and self._halt is None:
            self._halt = threading.Event()
            threading.Thread(target=self._tick, args=(self._halt,), daemon=True, name="explain-progress").start()

    def advance(self, n: int) -> None:
        with self._lock:
            super().advance(n)

    def describe(self, text: str) -> None:
        with self._lock:
            super().describe(text)

    def stop(self) -> None:
        if self._halt is not None:
            self._halt.set()
            self._halt = None
        with self._lock:
            super().stop()

    def _tick(self, halt: threading.Event) -> None:
        while not halt.wait(self.interval / 10):
            with self._lock:
                if self.total and not halt.is_set():
                    self._maybe_show()


class ItemProgress:
    """One batch item's evaluations, shown in the description of the batch's items bar."""

    def __init__(self, outer: Any, label: str) -> None:
        self.outer, self.label = outer, label
        self.done, self.total, self.phase = 0, 0, ""

    def start(self, total: int, description: str) -> None:
        self.done, self.total, self.phase = 0, int(total), description
        self._show()

    def advance(self, n: int) -> None:
        self.done += n
        self._show()

    def describe(self, text: str) -> None:
        self.phase = text

    def stop(self) -> None:
        self.outer.describe(self.label)

    def _show(self) -> None:
        phase = "" if self.phase in self.label else f"{self.phase} "
        self.outer.describe(f"{self.label} · {phase}{self.done:,}/{self.total:,} evaluations")


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
