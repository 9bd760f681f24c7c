"""The long-run estimate: one information line when a run will take more than about a minute.

The estimate multiplies the run's model evaluations by a *measured batched* cost per
evaluation on the runtime that will run them:

* the runtime verdict's seconds per image (``LoadedModel.seconds_per_image``), known before the
  engine's first evaluation, so the line comes up front;
* otherwise (a forced runtime, an ONNX file, a plain callable) the wall time of the engine's
  first full batch, so the line comes after that batch.

A first single-row call (f(x)) is never the measure: it pays the warm-up and none of the
batching, which made the old estimate 1.3–15× too high. The line goes to ``tell`` (stderr in
the CLI), never into the result's warnings or JSON, so two runs of a command write the same
JSON. It names a faster runtime or a GPU only when one was measured or is present.
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
#: Evaluations an ``auto`` budget used on average over the sample and ground-truth images
#: (benchmarks/auto_samples.py, sample model); the estimate's count for an auto run.
TYPICAL_AUTO = {"kernelshap": 900, "lime": 1400, "rise": 20_000}


def auto_budget(cfg: "Settings") -> bool:
    """True when the method's budget is ``auto`` (``samples`` or ``masks``)."""
    return any(getattr(cfg.params, name, None) == "auto" for name in ("samples", "masks"))


def planned_evaluations(total: int, cfg: "Settings", n_targets: int, shape: tuple[int, int]) -> int:
    """The engine's ``total`` times its re-runs (stability, sanity), plus the ``evaluate`` curves.

    An ``auto`` budget announces its cap; the estimate takes what it typically uses instead
    (:data:`TYPICAL_AUTO`), which the line says.
    """
    from explain_cli.metrics.curves import step_counts

    if auto_budget(cfg):
        total = min(total, TYPICAL_AUTO.get(cfg.engine.name, total))
    metrics = cfg.evaluation
    runs = 1 + (max(0, metrics.stability - 1) if metrics.stability >= 2 else 0) + (1 if metrics.sanity else 0)
    evaluations = total * runs
    if metrics.evaluate and not cfg.engine.batch:
        steps = len(step_counts(shape[0] * shape[1], metrics.eval_step))
        evaluations += 2 * steps * max(1, n_targets) + 2 * steps
    return evaluations


def estimate_message(evaluations: int, seconds_per_eval: float, runtime: str, hints: list[str],
                     typical: bool = False) -> str | None:
    """The line for a run of ``evaluations`` at ``seconds_per_eval``, or None when it is short.

    ``typical``: the count is what an ``auto`` budget typically uses, not a fixed budget.
    """
    estimate = evaluations * seconds_per_eval
    if estimate <= LONG_RUN_S:
        return None
    rate = 1.0 / seconds_per_eval
    rate_text = f"{rate:.3g}" if rate < 100 else f"{rate:,.0f}"
    advice = "; ".join(hints + ["fewer `samples`/`masks`, `n_segments` or `size` shorten it"])
    count = f"typically {evaluations:,} model evaluations (auto: until the map is stable)" if typical else \
        f"{evaluations:,} model evaluations"
    return f"this run will take about {duration(estimate)}: {count} at {rate_text}/s on {runtime}; {advice}"


class Announcer:
    """A progress wrapper that tells the long-run estimate once, at the engine's start or after its first full batch.

    ``evaluations(total)`` turns the engine's announced total into the run's; ``hints()`` names
    what would make it faster (called only for a long run); ``tell(line)`` shows it.
    """

    def __init__(self, inner: Any, evaluator: "Evaluator", *, seconds_per_image: float | None, runtime: str,
                 evaluations: Callable[[int], int], hints: Callable[[], list[str]], tell: Callable[[str], Any],
                 typical: bool = False, clock: Callable[[], float] = time.perf_counter) -> None:
        self.inner, self.evaluator, self.runtime, self.typical = inner, evaluator, runtime, typical
        self.seconds_per_image, self.evaluations, self.hints, self.tell, self.clock = (
            seconds_per_image, evaluations, hints, tell, clock)
        self.planned: int | None = None  # the run's evaluations, from the engine's first start
        self.done = False  # told, or decided not to
        self._mark = (0.0, 0)  # (clock, evaluations) at the previous batch

    def start(self, total: int, description: str) -> None:
        if self.planned is None:
            self.planned = self.evaluations(int(total))
            self._mark = (self.clock(), self.evaluator.evaluations)
            if self.seconds_per_image is not None:
                self._decide(self.planned, self.seconds_per_image)
        self.inner.start(total, description)

    def advance(self, n: int) -> None:
        self.inner.advance(n)
        if self.done or self.planned is None:
            return
        now, count = self.clock(), self.evaluator.evaluations
        rows, seconds = count - self._mark[1], now - self._mark[0]
        self._mark = (now, count)
        if rows >= min(MIN_ROWS, self.evaluator.batch_size):
            self._decide(self.planned, seconds / rows)

    def _decide(self, evaluations: int, seconds_per_eval: float) -> None:
        self.done = True
        if evaluations * seconds_per_eval <= LONG_RUN_S:
            return
        message = estimate_message(evaluations, seconds_per_eval, self.runtime, self.hints(), self.typical)
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
