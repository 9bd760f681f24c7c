"""The Kernel SHAP engine: its parameters, one run at a fixed budget, and ``samples auto``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.engines import auto
from explain_cli.engines.base import Attribution, Engine
from explain_cli.engines.kernelshap.design import Design, complements, plan
from explain_cli.engines.kernelshap.fit import (ORDER_WEIGHTS, REPRESENTERS, RIDGE, Fit, additive_fit, adjusted_fit,
                                               image_proxy)
from explain_cli.engines.surrogate import weighted_r2
from explain_cli.engines.threads import one_blas_thread
from explain_cli.errors import OptionError
from explain_cli.params import param

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem

ALLOCATIONS = ("kernel", "leverage")
INTERACTIONS = (1, 3, 5)
PROXIES = ("image", "generic")


@dataclass(frozen=True)
class KernelShapParams:
    samples: int = param("auto", "Model evaluations, f(x) and f(baseline) included; auto: until the top-5 segments "
                         "hold and every standard error is under auto_tolerance of the scores' range (at most "
                         "max_samples; typically 600-2,000).", minimum=3, maximum=10_000_000, allow_auto=True)
    exact: bool = param(False, "Enumerate all 2^M coalitions: exact Shapley values (needs samples ≥ 2^M).")
    allocation: str = param("leverage", "How sampled coalitions spread over sizes: equally (leverage scores) or by kernel mass.",
                            choices=ALLOCATIONS)
    interactions: int = param(5, "Highest odd interaction order in the regression adjustment (1: plain Kernel SHAP).",
                              choices=INTERACTIONS)
    proxy: str = param("image", "Interaction prior of the regression adjustment: 'image' favours interactions among "
                       "adjacent segments and among segments that matter alone; 'generic' treats all alike.",
                       choices=PROXIES)
    auto_tolerance: float = auto.tolerance_param(0.02)
    max_samples: int = auto.max_samples_param()



def estimate(design: Design, y: np.ndarray, delta: np.ndarray, params: KernelShapParams,
             generator: "torch.Generator", segments: np.ndarray | None = None) -> Fit:
    """Shapley values from evaluated coalitions: y (n, K) = v(S) − f(b), delta (K,) = f(x) − f(b).

    A design closed under complement (paired sampling, full strata) gets the regression
    adjustment; an unpaired one (tiny budgets) or a complete one is solved as plain Kernel SHAP.
    The solves run on one BLAS thread (:mod:`explain_cli.engines.threads`).
    """
    with one_blas_thread():
        return _estimate(design, y, delta, params, generator, segments)


def _estimate(design: Design, y: np.ndarray, delta: np.ndarray, params: KernelShapParams,
              generator: "torch.Generator", segments: np.ndarray | None) -> Fit:
    partner = None if design.exact else complements(design.z)
    if partner is None:
        return additive_fit(design, y, delta)
    m = design.z.shape[1]
    if params.proxy == "image" and params.interactions > 1:
        return image_proxy(design, y, delta, partner, max_order=params.interactions, segments=segments,
                           generator=generator)
    orders = tuple((d, w) for d, w in ORDER_WEIGHTS.items() if d <= min(params.interactions, m))
    fit = adjusted_fit(design, y, delta, partner, orders=orders, ridge=RIDGE, representers=REPRESENTERS,
                       generator=generator)
    fit.interactions = max((d for d, _ in orders), default=1)
    return fit


def run(problem: "Problem", params: KernelShapParams, generator: "torch.Generator") -> Attribution:
    import torch

    m = problem.n_segments
    if m < 2:
        raise OptionError("n_segments", "gives fewer than 2 segments; kernelshap needs at least 2")
    samples = params.samples
    if auto.is_auto(samples) and not params.exact:
        return run_auto(problem, params, generator)
    if auto.is_auto(samples):  # exact: all 2^M coalitions, within max_samples
        if m > 62 or 2**m > params.max_samples:
            raise OptionError("exact", f"needs 2^M = 2^{m} evaluations for M = {m} segments, more than max_samples "
                              f"({params.max_samples:,}); use fewer n_segments, or raise max_samples")
        samples = 2**m
    design = plan(m, samples - 2, allocation=params.allocation, exact=params.exact, generator=generator)
    f_x, f_b = problem.begin("kernelshap", len(design.z) + 2)
    v = problem.segment_outputs(torch.from_numpy(design.z).float()).numpy()
    fit = estimate(design, v - f_b[None], f_x - f_b, params, generator, segments=problem.segments.cpu().numpy())
    return _attribution(design, fit, v, f_x, f_b, m)


def run_auto(problem: "Problem", params: KernelShapParams, generator: "torch.Generator") -> Attribution:
    """Re-plan with a budget ×1.5 per round until the rule holds; outputs memoised by coalition.

    Each size pair draws from its own seeded stream (``plan(size_generator=...)``), so a larger
    budget's sampled coalitions begin with the smaller one's and enumerated pairs contain them:
    nearly every earlier evaluation is reused, and only new coalitions are evaluated and counted.
    The standard errors are the fit's own (infinitesimal jackknife).
    """
    import torch

    m = problem.n_segments
    cap = params.max_samples
    stop = auto.Stopper(params.auto_tolerance, cap)
    base = int(torch.randint(0, 2**62, (1,), generator=generator))
    streams: dict[int, torch.Generator] = {}

    def stream(s: int) -> "torch.Generator":
        if s not in streams:
            streams[s] = torch.Generator().manual_seed(base + 1 + s)
        return streams[s]

    f_x, f_b = problem.begin("kernelshap", cap)
    segments = problem.segments.cpu().numpy()
    memo: dict[bytes, np.ndarray] = {}
    budget = min(cap, max(256, 4 * (m + 1)))
    result = None
    while True:
        streams.clear()  # every plan replays each pair's stream from its start
        design = plan(m, budget - 2, allocation=params.allocation, exact=False, generator=generator,
                      size_generator=stream)
        keys = [row.tobytes() for row in design.z]
        new = list(dict.fromkeys(k for k in keys if k not in memo))
        if result is not None and len(memo) + 2 + len(new) > cap:
            stop.cap()
            break
        auto.show_round(problem.evaluator.progress, "kernelshap", auto.predicted_total(len(memo) + 2 + len(new), stop),
                        len(memo) + 2)
        if new:
            z_new = np.stack([np.frombuffer(k, dtype=bool) for k in new])
            out = problem.segment_outputs(torch.from_numpy(z_new).float()).numpy()
            memo.update(zip(new, out))
        v = np.stack([memo[k] for k in keys])
        fit = estimate(design, v - f_b[None], f_x - f_b, params, torch.Generator().manual_seed(base),
                       segments=segments)
        result = _attribution(design, fit, v, f_x, f_b, m)
        if stop.update(len(memo) + 2, result.scores, result.stderr):
            break
        if design.exact or budget >= cap:
            if design.exact:
                stop.stopped = "converged"  # every coalition is in: exact Shapley values
            else:
                stop.cap()
            break
        budget = auto.next_size(budget, cap)
    result.extra["auto"] = stop.record()
    return result


def _attribution(design: Design, fit: Fit, v: np.ndarray, f_x: np.ndarray, f_b: np.ndarray, m: int) -> Attribution:
    y = v - f_b[None]
    phi = fit.phi
    pred = design.z.astype(np.float64) @ phi.T
    r2 = weighted_r2(y, pred, design.weight) if len(y) > 1 else None
    stderr, warnings = fit.stderr, []
    if not design.exact and len(design.z) <= m - 1:
        # fewer coalitions than free Shapley values: the fit interpolates, so its residuals (and the
        # standard errors built on them) are zero by construction, not because the values are certain
        stderr = np.full_like(phi, np.nan)
        warnings.append(f"{len(design.z) + 2} Kernel SHAP evaluations for {m} segments cannot determine the "
                        f"{m - 1} free Shapley values: standard errors are unknown (null) and r2 means nothing; use "
                        f"samples well above {m + 1} (10× is typical) or fewer segments")
    elif r2 is not None:
        warnings += [f"target {k}: Kernel SHAP fit r2 = {v:.3g} < 0: the additive model through f(baseline) and f(x) "
                     "fits the sampled coalitions worse than their mean (see extra.r2_definition); raise samples, "
                     "or the model's interactions dominate (try method partition)"
                     for k, v in enumerate(np.atleast_1d(r2)) if np.isfinite(v) and v < 0]
    return Attribution(
        scores=phi,
        base_value=f_b.copy(),
        baseline_score=f_b.copy(),
        r2=r2,
        stderr=stderr,
        warnings=warnings,
        extra={
            "exact": design.exact,
            "interactions": fit.interactions,
            "coalitions": int(len(design.z)),
            "enumerated_coalitions": int((design.pair < 0).sum()),
            "sampled_pairs": int(len(np.unique(design.pair[design.pair >= 0]))),
        },
    )


ENGINE = Engine(
    name="kernelshap",
    summary="Shapley values by constrained weighted regression over paired coalitions (Lundberg & Lee 2017), regression-adjusted by odd interactions",
    params=KernelShapParams,
    run=run,
)
