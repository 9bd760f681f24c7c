"""The long-run estimate: one information line when a run will take more than about a minute.

The estimate multiplies the run's evaluations by the cost per evaluation *measured now, in
batches, on the runtime that runs them*: the wall time from the end of the engine's first full
batch to the end of its second (the first pays one-time allocations; a run of at most two
batches uses the first). A single-row call (f(x)) is never the measure: it pays the warm-up
and none of the batching, which made the old estimate 1.3–15× too high; nor is the runtime
verdict's timing, taken once under whatever load the machine had then.

An ``auto`` budget has no total up front: its line waits for the second round, whose total is
the engines' prediction from the first round's standard errors
(:func:`explain_cli.engines.auto.predicted_total`).

The line goes to ``tell`` (stderr in the CLI), never into the result's warnings or JSON, so two
runs of a command write the same JSON. It names a faster runtime or a GPU only when one was
measured or is present.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from explain_cli.progress import duration

if TYPE_CHECKING:
    from explain_cli.core import Evaluator
    from explain_cli.options.groups import Settings

#: A run estimated to take longer than this (seconds) is announced.
LONG_RUN_S = 60.0
#: The fewest rows in a batch whose time may stand for the run's cost per evaluation.
MIN_ROWS = 16


def auto_budget(cfg: "Settings") -> bool:
    """True when the method's budget is ``auto`` (``samples`` or ``masks``)."""
    return any(getattr(cfg.params, name, None) == "auto" for name in ("samples", "masks"))


def planned_evaluations(total: int, cfg: "Settings", n_targets: int, shape: tuple[int, int]) -> int:
    """The engine's ``total`` times its re-runs (stability, sanity), plus the ``evaluate`` curves."""
    from explain_cli.metrics.curves import step_counts

    metrics = cfg.evaluation
    runs = 1 + (max(0, metrics.stability - 1) if metrics.stability >= 2 else 0) + (1 if metrics.sanity else 0)
    evaluations = total * runs
    if metrics.evaluate and not cfg.engine.batch:
        steps = len(step_counts(shape[0] * shape[1], metrics.eval_step))
        evaluations += 2 * steps * max(1, n_targets) + 2 * steps
    return evaluations


def estimate_message(evaluations: int, seconds_per_eval: float, runtime: str, hints: list[str],
                     predicted: bool = False) -> str | None:
    """The line for a run of ``evaluations`` at ``seconds_per_eval``, or None when it is short.

    ``predicted``: the count is an ``auto`` budget's prediction, not a fixed budget.
    """
    estimate = evaluations * seconds_per_eval
    if estimate <= LONG_RUN_S:
        return None
    rate = 1.0 / seconds_per_eval
    rate_text = f"{rate:.3g}" if rate < 100 else f"{rate:,.0f}"
    advice = "; ".join(hints + ["fewer `samples`/`masks`, `n_segments` or `size` shorten it"])
    count = (f"about {evaluations:,} model evaluations until the map is stable (auto)" if predicted
             else f"{evaluations:,} model evaluations")
    return f"this run will take about {duration(estimate)}: {count} at {rate_text}/s on {runtime}; {advice}"


class Announcer:
    """A progress wrapper that tells the long-run estimate once, as soon as it is measured.

    ``evaluations(total)`` turns the engine's total into the run's; ``hints()`` names what would
    make it faster (called only for a long run); ``tell(line)`` shows it. With ``auto`` the
    total comes from the second ``ENGINE (auto)`` round's start (a prediction); the engine's
    first total (the cap) is ignored.
    """

    def __init__(self, inner: Any, evaluator: "Evaluator", *, runtime: str, evaluations: Callable[[int], int],
                 hints: Callable[[], list[str]], tell: Callable[[str], Any], auto: bool = False,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.inner, self.evaluator, self.runtime, self.auto = inner, evaluator, runtime, auto
        self.evaluations, self.hints, self.tell, self.clock = evaluations, hints, tell, clock
        self.planned: int | None = None  # the run's evaluations, once known
        self.seconds_per_eval: float | None = None  # measured, once known
        self.done = False  # told, or decided not to
        self._rounds = 0
        self._last = (0.0, 0)  # (clock, evaluations) at the previous report
        self._batches: list[tuple[float, int]] = []  # (seconds, rows) of the full batches so far

    def start(self, total: int, description: str) -> None:
        if not self._batches and self._rounds == 0 and self.planned is None:
            self._last = (self.clock(), self.evaluator.evaluations)
        if not self.auto and self.planned is None:
            self.planned = self.evaluations(int(total))
        elif self.auto and description.endswith("(auto)"):
            self._rounds += 1
            if self._rounds >= 2:
                self.planned = self.evaluations(int(total))
        self.inner.start(total, description)
        self._decide()

    def advance(self, n: int) -> None:
        self.inner.advance(n)
        now, count = self.clock(), self.evaluator.evaluations
        rows, seconds = count - self._last[1], now - self._last[0]
        self._last = (now, count)
        if rows >= min(MIN_ROWS, self.evaluator.batch_size) and self.seconds_per_eval is None:
            self._batches.append((seconds, rows))
            few = self.planned is not None and self.planned <= 2 * self.evaluator.batch_size
            if len(self._batches) >= 2 or few:
                seconds, rows = self._batches[-1]
                self.seconds_per_eval = seconds / rows
        self._decide()

    def _decide(self) -> None:
        if self.done or self.planned is None or self.seconds_per_eval is None:
            return
        self.done = True
        message = estimate_message(self.planned, self.seconds_per_eval, self.runtime,
                                   self.hints() if self.planned * self.seconds_per_eval > LONG_RUN_S else [], self.auto)
        if message is not None:
            self.tell(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def speed_hints(model: Any, shape: tuple[int, ...], batch_size: int) -> list[str]:
    """What would make this model faster here, only where measured or present.

    A faster runtime is named when this machine's cached verdict measured one (the run was
    forced onto another); a GPU when one is present and the run is on the CPU.
    """
    import torch

    from explain_cli.models.verdict import lookup_verdict

    hints = []
    verdict = lookup_verdict(model, shape, batch_size)
    if verdict is not None and verdict.runtime != model.runtime:
        mine, best = verdict.per_image_s.get(model.runtime), verdict.per_image_s.get(verdict.runtime)
        if mine and best and mine > 1.1 * best:
            hints.append(f"{verdict.runtime} ran {mine / best:.1f}× faster here (`runtime` auto)")
    if model.device.type == "cpu" and torch.cuda.is_available():
        hints.append("a GPU is present (`device` cuda)")
    return hints
