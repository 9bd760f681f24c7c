"""``samples auto``: draw batch after batch until the explanation has converged.

The rule (Covert & Lee 2021, "Improving KernelSHAP", their convergence detection): stop when
every score's standard error is below ``auto_tolerance`` × the range of the scores (max − min
over the segments, per target) *and* the top-5 segments of every target are the same as in the
previous round; or when the next round would pass ``max_samples`` evaluations. Each engine
supplies its own standard errors:

* LIME — a heteroskedasticity-consistent (HC1 sandwich) covariance of the weighted ridge
  coefficients over its i.i.d. samples (:func:`explain_cli.engines.lime.sandwich_stderr`);
* Kernel SHAP — its infinitesimal jackknife (``fit.stderr``), re-planned with a larger budget each
  round, reusing every coalition already evaluated;
* RISE — the standard error of the mean over its i.i.d. masks (batch means with groups of one).

The rounds depend only on the seed and the scores, never on the batch size, so the same seed
gives the same numbers. The JSON records ``extra.auto``: evaluations, max_stderr_ratio,
stopped (``converged`` or ``max_samples``) and rounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explain_cli.params import param

AUTO = "auto"
TOP = 5
DEFAULT_MAX_SAMPLES = 20_000
GROWTH = 1.5


def tolerance_param(default: float = 0.01) -> Any:
    """The ``auto_tolerance`` field; each engine passes the default measured for it (benchmarks/auto_samples.py)."""
    return param(default, "With samples auto: stop once every score's standard error is below this share of "
                 "the scores' range (max − min over segments) and the top-5 segments hold.",
                 minimum=0.0, exclusive_minimum=True, maximum=1.0)


def max_samples_param() -> Any:
    return param(DEFAULT_MAX_SAMPLES, "With samples auto: the most model evaluations it may use.",
                 minimum=16, maximum=10_000_000)


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == AUTO


def stderr_ratio(scores: np.ndarray, stderr: np.ndarray | None) -> float:
    """max over targets and segments of stderr / (max − min of that target's scores); inf when unknown."""
    if stderr is None:
        return math.inf
    scores, stderr = np.atleast_2d(scores), np.atleast_2d(stderr)
    if not np.all(np.isfinite(stderr)):
        return math.inf
    spread = scores.max(axis=1) - scores.min(axis=1)
    worst = stderr.max(axis=1)
    ratios = np.where(spread > 0, worst / np.where(spread > 0, spread, 1.0), np.where(worst > 0, math.inf, 0.0))
    return float(ratios.max())


def top_segments(scores: np.ndarray, top: int = TOP) -> tuple[frozenset[int], ...]:
    """The ``top`` highest-scoring segments of each target (as sets: their order may still swap)."""
    scores = np.atleast_2d(scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    return tuple(frozenset(int(j) for j in row) for row in order)


@dataclass
class Stopper:
    """Applies the stopping rule round by round and writes ``extra.auto``."""

    tolerance: float
    max_samples: int
    rounds: int = 0
    evaluations: int = 0
    ratio: float = math.inf
    stopped: str = ""
    _top: tuple | None = field(default=None, repr=False)

    def update(self, evaluations: int, scores: np.ndarray, stderr: np.ndarray | None) -> bool:
        """Record one round; True when it has converged (the caller also stops at ``max_samples``)."""
        self.rounds += 1
        self.evaluations = int(evaluations)
        self.ratio = stderr_ratio(scores, stderr)
        top = top_segments(scores)
        stable = self._top is not None and top == self._top
        self._top = top
        if self.ratio < self.tolerance and stable:
            self.stopped = "converged"
            return True
        return False

    def cap(self) -> None:
        self.stopped = "max_samples"

    def record(self) -> dict[str, Any]:
        return {"evaluations": self.evaluations,
                "max_stderr_ratio": self.ratio if math.isfinite(self.ratio) else None,
                "stopped": self.stopped or "max_samples", "rounds": self.rounds,
                "tolerance": self.tolerance, "max_samples": self.max_samples,
                # one stopping rule waits for every target: with several, each one's numbers depend on the others
                "targets_independent": len(self._top or ()) <= 1}


def next_size(n: int, max_samples: int, growth: float = GROWTH) -> int:
    """The next round's total: ×growth, capped at ``max_samples``."""
    return min(max_samples, max(n + 1, int(math.ceil(n * growth))))


def predicted_total(target: int, stop: Stopper) -> int:
    """Where the run will likely stop: this round's ``target``, or more when the last round's
    errors say so. Standard errors shrink as 1/√n, so the rule needs about
    n·(ratio / tolerance)² evaluations (at most ``max_samples``)."""
    if stop.evaluations == 0 or not math.isfinite(stop.ratio):
        return target
    need = math.ceil(stop.evaluations * (stop.ratio / stop.tolerance) ** 2)
    return max(target, min(stop.max_samples, need))


def show_round(progress: Any, engine: str, total: int, done: int) -> None:
    """Progress over the run's predicted total (not the cap), so its bar and ETA say where it will likely stop.

    Every round has the description ``ENGINE (auto)``: a progress keeps one clock for a phase
    restarted under the same description, so the rate spans the rounds.
    """
    progress.start(int(total), f"{engine} (auto)")
    progress.advance(int(done))

