"""LIME (Ribeiro et al. 2016) over superpixels: uniform binary samples, exponential kernel, weighted linear surrogate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.engines.base import Attribution, Engine
from explain_cli.params import param
from explain_cli.surrogate import SURROGATES, fit_linear

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem

DISTANCES = ("cosine", "euclidean")


@dataclass(frozen=True)
class LimeParams:
    samples: int = param(1000, "Model evaluations, all included.", minimum=3, maximum=10_000_000)
    kernel_width: float = param(0.25, "Kernel width σ in w = exp(-d²/σ²) (lime's default for cosine distance).",
                                minimum=0.0, exclusive_minimum=True, maximum=1e6)
    distance: str = param("cosine", "Distance to the input in the interpretable space.", choices=DISTANCES)
    surrogate: str = param("ridge", "Surrogate: ridge (closed form), lasso or linear (least squares).", choices=SURROGATES)
    alpha: float = param(1e-3, "Surrogate penalty, relative to the data's scale.", minimum=0.0, maximum=1e6)


def sample_coalitions(n: int, m: int, generator: "torch.Generator") -> "torch.Tensor":
    """(n, m) float samples: row 0 all ones (the input), row 1 all zeros (the baseline), the rest Bernoulli(½)."""
    import torch

    z = torch.randint(0, 2, (n, m), generator=generator).to(torch.float32)
    z[0] = 1.0
    if n > 1:
        z[1] = 0.0
    return z


def kernel_weights(z: np.ndarray, *, distance: str, width: float) -> np.ndarray:
    """w = exp(-d²/σ²), d from each row of ``z`` to the all-ones vector."""
    m = z.shape[1]
    kept = z.sum(axis=1)
    if distance == "cosine":
        # cos(z, 1) = Σz / (|z|·√M); an empty coalition is at distance 1.
        norm = np.sqrt((z**2).sum(axis=1)) * np.sqrt(m)
        cos = np.divide(kept, norm, out=np.zeros_like(kept), where=norm > 0)
        d = 1.0 - cos
    else:
        d = np.sqrt(((1.0 - z) ** 2).sum(axis=1))
    return np.exp(-(d**2) / width**2)


def run(problem: "Problem", params: LimeParams, generator: "torch.Generator") -> Attribution:
    import torch

    m = problem.n_segments
    z = sample_coalitions(params.samples, m, generator)
    y = torch.empty((params.samples, problem.n_targets), dtype=torch.float64)
    y[0] = problem.reference  # f(x) was evaluated once already, to choose the targets
    problem.evaluator.progress.start(params.samples, "lime")
    problem.evaluator.progress.advance(1)
    y[1:] = problem.segment_outputs(z[1:])
    zn = z.double().numpy()
    w = kernel_weights(zn, distance=params.distance, width=params.kernel_width)
    fit = fit_linear(zn, y.numpy(), w, method=params.surrogate, alpha=params.alpha)
    warnings = []
    if params.samples <= m + 1:
        # M coefficients + an intercept from `samples` rows: no residual degree of freedom, so the
        # surrogate interpolates whatever it is given and r2 is ~1 by construction, not by fit.
        warnings.append(
            f"{params.samples} LIME samples for {m} segments cannot determine the {m + 1} surrogate coefficients: "
            f"the scores are mostly the penalty's choice and r2 ≈ 1 means nothing; use --samples well above {m + 1} "
            f"(10× is typical) or fewer segments (--n-segments)"
        )
    scale = np.abs(y.numpy()).max(axis=0) + 1e-12
    for k in range(fit.coef.shape[0]):
        if np.all(np.abs(fit.coef[k]) < 1e-8 * scale[k]):
            warnings.append(
                f"target {k}: every LIME coefficient is ~0 (surrogate {params.surrogate}, alpha {params.alpha}); "
                "lower --alpha, use --surrogate ridge, or check the baseline changes the output"
            )
    return Attribution(
        scores=fit.coef,
        base_value=fit.intercept,
        baseline_score=y[1].numpy().copy(),
        r2=fit.r2,
        warnings=warnings,
    )


ENGINE = Engine(
    name="lime",
    summary="weighted linear surrogate over random superpixel coalitions (Ribeiro et al. 2016)",
    params=LimeParams,
    run=run,
)
