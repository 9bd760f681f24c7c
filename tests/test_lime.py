"""LIME: known answers on a pixel-linear model, and independence from batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain_cli.engines import build_params, get_engine
from explain_cli.engines.lime import kernel_weights
from tests.conftest import make_linear
from tests.helpers import exact_contributions, make_problem


def run_lime(problem, seed=0, **values):
    engine = get_engine("lime")
    params = build_params(engine, {"samples": 300, "alpha": 1e-9, **values})
    return engine.run(problem, params, torch.Generator().manual_seed(seed))


def test_linear_model_recovers_exact_segment_contributions():
    model = make_linear()
    problem = make_problem(model)
    result = run_lime(problem)
    expected = exact_contributions(model, problem)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(result.r2, 1.0, atol=1e-6)
    np.testing.assert_allclose(result.base_value, result.baseline_score, rtol=1e-4, atol=1e-4)
    # baseline_score really is f(baseline)
    f_b = model(problem.baseline[None])[0].double().numpy()
    np.testing.assert_allclose(result.baseline_score, f_b, rtol=1e-5)


@pytest.mark.parametrize("surrogate", ["linear", "lasso"])
def test_other_surrogates_also_recover_linear_model(surrogate):
    model = make_linear()
    problem = make_problem(model, targets=(1,))
    alpha = 1e-7 if surrogate == "lasso" else 0.0
    result = run_lime(problem, surrogate=surrogate, alpha=alpha)
    expected = exact_contributions(model, problem)[[1]]
    np.testing.assert_allclose(result.scores, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_results_do_not_depend_on_batch_size():
    # float64 end to end, so BLAS blocking differences between batch sizes stay below 1e-12
    model = make_linear().double()
    runs = [run_lime(make_problem(model, batch_size=b, dtype=torch.float64), alpha=1e-3) for b in (1, 7, 64)]
    for other in runs[1:]:
        np.testing.assert_allclose(other.scores, runs[0].scores, rtol=1e-10, atol=1e-12)


def test_evaluation_count_and_targets_share_forwards():
    model = make_linear()
    one = make_problem(model, targets=(0,))
    three = make_problem(model, targets=(0, 1, 2))
    a, b = run_lime(one, samples=100), run_lime(three, samples=100)
    # 1 evaluation for f(x) (done before the engine) + 99 perturbations
    assert one.evaluator.evaluations == three.evaluator.evaluations == 100
    np.testing.assert_allclose(a.scores[0], b.scores[0], rtol=1e-9)


def test_same_seed_same_numbers_different_seed_different_samples():
    model = make_linear()
    # a nonlinear output space makes the fit depend on the samples
    a = run_lime(make_problem(model, output="probs"), seed=3, alpha=1e-3)
    b = run_lime(make_problem(model, output="probs"), seed=3, alpha=1e-3)
    c = run_lime(make_problem(model, output="probs"), seed=4, alpha=1e-3)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert not np.allclose(a.scores, c.scores)


def test_cosine_kernel_weights():
    z = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=float)
    w = kernel_weights(z, distance="cosine", width=0.5)
    d = np.array([0.0, 1 - np.sqrt(0.5), 1.0])
    np.testing.assert_allclose(w, np.exp(-(d**2) / 0.25))
    w_e = kernel_weights(z, distance="euclidean", width=2.0)
    np.testing.assert_allclose(w_e, np.exp(-np.array([0.0, 2.0, 4.0]) / 4.0))


def test_all_zero_coefficients_warn():
    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.ones(x.shape[0], 2)

    result = run_lime(make_problem(Constant(), targets=(0,)), samples=50)
    assert result.warnings and "~0" in result.warnings[0]
