"""The long-run announcement: a warning, before the engine's first evaluation, that a run will take long."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Evaluator
    from explain_cli.options.groups import Settings

#: A run whose model evaluations are estimated to take longer than this (seconds) is announced.
LONG_RUN_S = 60.0
#: Copies of the input in the probe batch that measures the warm cost per image.
PROBE_BATCH = 4


def long_run_warning(total: int, seconds_per_eval: float, cfg: "Settings", n_targets: int,
                     probe: Callable[[], float]) -> str | None:
    """The warning for a run whose evaluations will take long, or None.

    ``total`` is the engine's evaluation count and the cost per evaluation f(x)'s. A first call
    also pays the model's warm-up, so when that says "long", a small uncounted batch (``probe``)
    measures the warm cost per image; it is still an upper bound (full batches are cheaper per
    image). The evaluation options multiply the count.
    """
    evaluations = evaluations_with_metrics(total, cfg, n_targets)
    if evaluations * seconds_per_eval <= LONG_RUN_S:
        return None
    seconds_per_eval = min(seconds_per_eval, probe())
    estimate = evaluations * seconds_per_eval
    if estimate <= LONG_RUN_S:
        return None
    return (f"this run will take long: {evaluations:,} model evaluations at up to {seconds_per_eval * 1e3:.3g} ms "
            f"each, up to about {duration(estimate)}; lower `samples`/`masks`/`repeats`, "
            "`n_segments` or `size`, or use a GPU (`device` cuda)")


def evaluations_with_metrics(total: int, cfg: "Settings", n_targets: int) -> int:
    """The engine's ``total`` evaluations times its reruns (stability, sanity), plus the curves' (evaluate)."""
    metrics = cfg.evaluation
    runs = 1 + (max(0, metrics.stability - 1) if metrics.stability >= 2 else 0) + (1 if metrics.sanity else 0)
    evaluations = total * runs
    if metrics.evaluate and not cfg.engine.batch:
        evaluations += 4 * (int(np.ceil(1.0 / metrics.eval_step)) + 1) * max(1, n_targets)
    return evaluations


def duration(seconds: float) -> str:
    """A duration as people say it: seconds, minutes or hours."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def probe_cost(module: Any, x: "torch.Tensor", evaluator: "Evaluator", copies: int = PROBE_BATCH) -> float:
    """Seconds per image of the model on a batch of ``copies`` copies of ``x`` (not counted, not kept)."""
    import torch

    batch = x.unsqueeze(0).repeat(copies, *([1] * x.dim()))  # its own memory: the model may write into it
    start = time.perf_counter()
    with torch.inference_mode(), evaluator.autocast():
        module(batch)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return (time.perf_counter() - start) / copies


class OnStart:
    """A progress that calls ``hook(total)`` at the engine's first ``start``, before any of its evaluations."""

    def __init__(self, inner: Any, hook: Callable[[int], Any]) -> None:
        self.inner, self.hook, self.fired = inner, hook, False

    def start(self, total: int, description: str) -> None:
        if not self.fired:
            self.fired = True
            self.hook(int(total))
        self.inner.start(total, description)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
