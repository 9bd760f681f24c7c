"""LIME (Ribeiro et al. 2016) over superpixels: uniform binary samples, exponential kernel, weighted linear surrogate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.engines import Attribution, Engine
from explain_cli.errors import ExplainError
from explain_cli.surrogate import SURROGATES, fit_linear

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem

DISTANCES = ("cosine", "euclidean")


@dataclass(frozen=True)
class LimeParams:
    samples: int = 1000  # model evaluations, the original input and the baseline included
    kernel_width: float = 0.25  # σ in w = exp(-d²/σ²); lime's default for cosine distance
    distance: str = "cosine"  # distance to the original in the interpretable space
    surrogate: str = "ridge"  # ridge (closed form) | lasso | linear
    alpha: float = 1e-3  # surrogate penalty, relative to the data's scale

    def validate(self) -> None:
        if self.samples < 3:
            raise ExplainError(f"--samples must be at least 3 for lime, got {self.samples}")
        if not self.kernel_width > 0:
            raise ExplainError(f"--kernel-width must be positive, got {self.kernel_width}")
        if self.distance not in DISTANCES:
            raise ExplainError(f"unknown --distance {self.distance!r}; choose cosine or euclidean")
        if self.surrogate not in SURROGATES:
            raise ExplainError(f"unknown --surrogate {self.surrogate!r}; choose one of {', '.join(SURROGATES)}")
        if self.alpha < 0:
            raise ExplainError(f"--alpha must be non-negative, got {self.alpha}")


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
