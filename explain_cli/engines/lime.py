"""LIME (Ribeiro et al. 2016) over superpixels: uniform binary samples, exponential kernel, weighted linear surrogate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.engines import auto
from explain_cli.engines.base import Attribution, Engine
from explain_cli.engines.surrogate import SURROGATES, fit_linear
from explain_cli.errors import OptionError
from explain_cli.params import param

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem

DISTANCES = ("cosine", "euclidean")


@dataclass(frozen=True)
class LimeParams:
    samples: int = param(1000, "Model evaluations, all included; auto: until the scores converge (see auto_tolerance).",
                         minimum=3, maximum=10_000_000, allow_auto=True)
    kernel_width: float = param(0.25, "Kernel width σ in w = exp(-d²/σ²) (lime's default for cosine distance).",
                                minimum=0.0, exclusive_minimum=True, maximum=1e6)
    distance: str = param("cosine", "Distance to the input in the interpretable space.", choices=DISTANCES)
    surrogate: str = param("ridge", "Surrogate: ridge (closed form), lasso or linear (least squares).", choices=SURROGATES)
    alpha: float = param(1e-3, "Surrogate penalty, relative to the data's scale.", minimum=0.0, maximum=1e6)
    auto_tolerance: float = auto.tolerance_param(0.02)
    max_samples: int = auto.max_samples_param()


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


def sandwich_stderr(z: np.ndarray, y: np.ndarray, w: np.ndarray, coef: np.ndarray, intercept: np.ndarray, *,
                    alpha: float, method: str) -> np.ndarray:
    """(K, M) standard errors of the weighted (ridge) surrogate's coefficients over i.i.d. samples.

    The coefficients solve β = A⁻¹ Σ_n w̃_n z̃_n y_n with z̃ the weighted-centred features, w̃ = w/Σw
    and A = Σ w̃_n z̃_n z̃_nᵀ + λI (λ as :func:`explain_cli.engines.surrogate.fit_linear` sets it).
    With rows drawn i.i.d., the HC1 sandwich Cov β ≈ n/(n−p−1) · A⁻¹ (Σ_n w̃_n² e_n² z̃_n z̃_nᵀ) A⁻¹, e_n the
    residuals, is consistent whatever the noise's variance per row (heteroskedasticity: the
    surrogate's misfit depends on the coalition) — White 1980, MacKinnon & White 1985. For lasso
    it is the ridge's sandwich at the lasso's residuals (an approximation).
    """
    n, m = z.shape
    wn = w / w.sum()
    zc = z - wn @ z
    gram = zc.T @ (wn[:, None] * zc)
    lam = alpha * np.trace(gram) / max(m, 1) if method == "ridge" else 0.0
    a_inv = np.linalg.pinv(gram + lam * np.eye(m))
    resid = y - (z @ coef.T + intercept)  # (n, K)
    g = zc @ a_inv  # (n, M): each row's influence direction
    dof = n / max(n - m - 1, 1)
    var = dof * np.einsum("nk,nm->km", (wn[:, None] * resid) ** 2, g**2)
    return np.sqrt(var)


def run(problem: "Problem", params: LimeParams, generator: "torch.Generator") -> Attribution:
    if auto.is_auto(params.samples):
        return run_auto(problem, params, generator)
    problem.begin("lime", params.samples, baseline=False)  # row 1 of the samples is the baseline
    return _attribution(problem, params, *_draw(problem, params.samples, generator))


def _draw(problem: "Problem", n: int, generator: "torch.Generator", *, start: bool = True) -> tuple:
    """n new samples and their outputs; the first call's rows 0 and 1 are the input and the baseline."""
    import torch

    if start:
        z = sample_coalitions(n, problem.n_segments, generator)
        y = torch.empty((n, problem.n_targets), dtype=torch.float64)
        y[0] = problem.reference  # f(x) was evaluated once already, to choose the targets (begin counted it)
        y[1:] = problem.segment_outputs(z[1:])
    else:
        z = torch.randint(0, 2, (n, problem.n_segments), generator=generator).to(torch.float32)
        y = problem.segment_outputs(z)
    return z.double().numpy(), y.numpy()


def run_auto(problem: "Problem", params: LimeParams, generator: "torch.Generator") -> Attribution:
    """Grow the i.i.d. sample set round by round (×1.5, from max(256, 4(M+1))) until the rule holds."""
    m = problem.n_segments
    cap = params.max_samples
    stop = auto.Stopper(params.auto_tolerance, cap)
    problem.begin("lime", cap, baseline=False)
    n = min(cap, max(256, 4 * (m + 1)))
    auto.show_round(problem.evaluator.progress, "lime", n, 1)
    zn, yn = _draw(problem, n, generator)
    while True:
        w = kernel_weights(zn, distance=params.distance, width=params.kernel_width)
        fit = fit_linear(zn, yn, w, method=params.surrogate, alpha=params.alpha)
        stderr = sandwich_stderr(zn, yn, w, fit.coef, fit.intercept, alpha=params.alpha, method=params.surrogate)
        if stop.update(len(zn), fit.coef, stderr):
            break
        if len(zn) >= cap:
            stop.cap()
            break
        more = auto.next_size(len(zn), cap) - len(zn)
        auto.show_round(problem.evaluator.progress, "lime", auto.predicted_total(len(zn) + more, stop), len(zn))
        z_new, y_new = _draw(problem, more, generator, start=False)
        zn, yn = np.concatenate([zn, z_new]), np.concatenate([yn, y_new])
    out = _attribution(problem, params, zn, yn, fit=fit)
    out.stderr = stderr
    out.extra["auto"] = stop.record()
    return out


def _attribution(problem: "Problem", params: LimeParams, zn: np.ndarray, yn: np.ndarray, fit=None) -> Attribution:
    m = problem.n_segments
    samples = len(zn)
    if fit is None:
        w = kernel_weights(zn, distance=params.distance, width=params.kernel_width)
        fit = fit_linear(zn, yn, w, method=params.surrogate, alpha=params.alpha)
    warnings = []
    if samples <= m + 1:
        # M coefficients + an intercept from `samples` rows: no residual degree of freedom, so the
        # surrogate interpolates whatever it is given and r2 is ~1 by construction, not by fit.
        warnings.append(
            f"{samples} LIME samples for {m} segments cannot determine the {m + 1} surrogate coefficients: "
            f"the scores are mostly the penalty's choice and r2 ≈ 1 means nothing; use `samples` well above {m + 1} "
            f"(10× is typical) or fewer segments (`n_segments`)"
        )
    scale = np.abs(yn).max(axis=0) + 1e-12
    for k in range(fit.coef.shape[0]):
        if np.all(np.abs(fit.coef[k]) < 1e-8 * scale[k]):
            warnings.append(
                f"target {k}: every LIME coefficient is ~0 (surrogate {params.surrogate}, alpha {params.alpha}); "
                "lower `alpha`, use `surrogate` ridge, or check the baseline changes the output"
            )
    return Attribution(
        scores=fit.coef,
        base_value=fit.intercept,
        baseline_score=yn[1].copy(),
        r2=fit.r2,
        warnings=warnings,
    )


ENGINE = Engine(
    name="lime",
    summary="weighted linear surrogate over random superpixel coalitions (Ribeiro et al. 2016)",
    params=LimeParams,
    run=run,
)
