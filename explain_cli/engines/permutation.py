"""Permutation importance over a batch (Captum's FeaturePermutation design, on superpixel groups).

Every example keeps its own pixels except group g, which comes from another example of the
batch (a permutation with no fixed point): attr_i(g) = f(x_i) − f(x_i with g from x_π(i)).
Repeated ``repeats`` times with fresh permutations; the global importance of g is the mean
over examples, reported with its standard deviation over repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.engines.base import Attribution, Engine
from explain_cli.params import param

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem


@dataclass(frozen=True)
class PermutationParams:
    repeats: int = param(5, "Fresh permutations per group; evaluations = N·(1 + repeats·M).", minimum=1, maximum=10_000)


def derangement(n: int, generator: "torch.Generator") -> "torch.Tensor":
    """A uniformly random permutation of range(n) with no fixed point (rejection sampling, ~e tries)."""
    import torch

    ENGINE.check_inputs(n)
    identity = torch.arange(n)
    while True:
        perm = torch.randperm(n, generator=generator)
        if not bool((perm == identity).any()):
            return perm


def run(problem: "Problem", params: PermutationParams, generator: "torch.Generator") -> Attribution:
    """``problem.x`` is (N, C, H, W) and ``problem.reference`` (N, K): one group map for the batch."""
    import torch

    from explain_cli.core import compose_segments

    x = problem.x
    ENGINE.check_inputs(x.shape[0] if x.dim() == 4 else 1)
    n, m, k = x.shape[0], problem.n_segments, problem.n_targets
    ev = problem.evaluator
    _, f_b = problem.begin("permutation", n * (1 + params.repeats * m), baseline=False)
    reference = problem.reference.to(ev.device)  # (N, K)
    attributions = torch.empty((params.repeats, m, n, k), dtype=torch.float64, device=ev.device)
    groups_per_batch = max(1, ev.batch_size // n)
    keep_all_but = 1.0 - torch.eye(m, device=ev.device)  # row g drops group g
    for r in range(params.repeats):
        donors = x[derangement(n, generator).to(ev.device)]
        for g0 in range(0, m, groups_per_batch):
            g1 = min(m, g0 + groups_per_batch)
            z = keep_all_but[g0:g1].repeat_interleave(n, dim=0)  # (G·N, M)
            inputs = compose_segments(x.repeat(g1 - g0, 1, 1, 1), donors.repeat(g1 - g0, 1, 1, 1), problem.segments, z)
            out = ev(inputs).reshape(g1 - g0, n, k)
            attributions[r, g0:g1] = reference[None] - out
    per_example = attributions.mean(dim=0).permute(1, 2, 0).cpu().numpy()  # (N, K, M)
    global_by_repeat = attributions.mean(dim=2).permute(0, 2, 1).cpu().numpy()  # (R, K, M)
    std = global_by_repeat.std(axis=0, ddof=1) if params.repeats > 1 else np.zeros((k, m))
    mean_ref = reference.mean(dim=0).cpu().numpy()
    return Attribution(
        scores=global_by_repeat.mean(axis=0),
        base_value=mean_ref,
        baseline_score=f_b,  # NaN: removed groups take other inputs' values, not a baseline
        std=std,
        per_example=per_example,
    )


ENGINE = Engine(
    name="permutation",
    summary="permutation importance over a batch of inputs sharing one group map (grid by default)",
    params=PermutationParams,
    run=run,
    batch=True,
    uses_baseline=False,
)
