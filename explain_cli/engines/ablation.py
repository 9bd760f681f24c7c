"""Feature ablation over superpixels: attr(g) = f(x) − f(x with g at the baseline). Deterministic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from explain_cli.engines.base import Attribution, Engine
from explain_cli.params import param

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem


@dataclass(frozen=True)
class AblationParams:
    """No parameters: M + 1 evaluations for the scores, plus f(baseline) for the JSON."""


def run(problem: "Problem", params: AblationParams, generator: "torch.Generator") -> Attribution:
    import torch

    m = problem.n_segments
    f_x, f_b = problem.begin("ablation", m + 2)
    z = 1.0 - torch.eye(m)  # row g: every segment kept but g
    ablated = problem.segment_outputs(z).numpy()  # (M, K)
    scores = f_x[None, :] - ablated
    return Attribution(scores=scores.T.copy(), base_value=f_b.copy(), baseline_score=f_b.copy())


ENGINE = Engine(
    name="ablation",
    summary="occlusion of one superpixel at a time: f(x) − f(x with g at baseline); M + 2 evaluations",
    params=AblationParams,
    run=run,
)
