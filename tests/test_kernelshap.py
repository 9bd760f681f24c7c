"""Kernel SHAP: exact Shapley values by enumeration, exact efficiency at every budget, linear exactness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explain_cli.engines.kernelshap.design import kernel_mass, plan
from explain_cli.errors import ExplainError
from tests.conftest import make_linear
from tests.oracles import exact_shapley_of_problem
from tests.helpers import Nonlinear, exact_contributions, make_problem, run_shap


@pytest.mark.parametrize("m", [2, 5, 10])
def test_full_enumeration_equals_brute_force_shapley(m):
    model = Nonlinear().double()
    problem = make_problem(model, n_segments=m, targets=(0, 1), dtype=torch.float64)
    assert problem.n_segments == m
    result = run_shap(problem, samples=2**m)
    expected = exact_shapley_of_problem(problem)
    np.testing.assert_allclose(result.scores, expected, atol=1e-9, rtol=1e-6)
    assert result.extra["exact"] and np.all(result.stderr == 0)
    assert problem.evaluator.evaluations == 2**m  # f(x), f(b) and 2^M − 2 coalitions


@pytest.mark.parametrize("samples", [20, 64, 200, 1000])
@pytest.mark.parametrize("allocation", ["kernel", "leverage"])
def test_efficiency_exact_at_every_budget(samples, allocation):
    problem = make_problem(Nonlinear(), n_segments=16, targets=(0, 1))
    result = run_shap(problem, samples=samples, allocation=allocation)
    total = result.scores.sum(axis=1)
    np.testing.assert_allclose(total, problem.reference.numpy() - result.baseline_score, atol=1e-9)
    np.testing.assert_allclose(result.base_value, result.baseline_score)
    assert problem.evaluator.evaluations <= samples
    assert problem.evaluator.evaluations >= samples - 2
    assert result.stderr.shape == result.scores.shape and np.all(result.stderr >= 0)


@pytest.mark.parametrize("samples", [30, 300])
def test_linear_model_is_exact_at_any_budget(samples):
    model = make_linear()
    problem = make_problem(model, n_segments=25)
    result = run_shap(problem, samples=samples)
    expected = exact_contributions(model, problem)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_error_shrinks_with_budget_and_stderr_is_honest():
    model = Nonlinear().double()
    m = 12
    problem = make_problem(model, n_segments=m, targets=(0,), dtype=torch.float64)
    exact = exact_shapley_of_problem(problem)
    errors, coverage = [], []
    for samples in (128, 1024):
        errs = []
        for seed in range(6):
            p = make_problem(model, n_segments=m, targets=(0,), dtype=torch.float64)
            r = run_shap(p, seed=seed, samples=samples)
            errs.append(np.linalg.norm(r.scores - exact) / np.linalg.norm(exact))
            coverage.append(np.mean(np.abs(r.scores - exact) <= 3 * r.stderr + 1e-12))
        errors.append(np.mean(errs))
    assert errors[1] < errors[0]
    assert np.mean(coverage) > 0.8  # ±3 standard errors cover the truth most of the time


def test_design_weights_match_kernel_when_complete():
    m = 6
    design = plan(m, 2**m - 2, allocation="kernel", exact=True, generator=torch.Generator())
    sizes = design.z.sum(1)
    pi = (m - 1) / (np.array([math.comb(m, s) for s in sizes]) * sizes * (m - sizes))
    np.testing.assert_allclose(design.weight, pi)


def test_design_pairs_are_complements_and_distinct():
    design = plan(20, 500, allocation="kernel", exact=False, generator=torch.Generator().manual_seed(0))
    keys = {row.tobytes() for row in design.z}
    assert len(keys) == len(design.z) <= 500
    for pid in np.unique(design.pair[design.pair >= 0]):
        a, b = design.z[design.pair == pid]
        assert np.all(a == ~b)
    # sizes 1 and 19 fit in the budget completely: enumerated
    assert (design.stratum == 1).sum() == 20 and np.all(design.pair[design.stratum == 1] == -1)
    # weights per size sum to that size's kernel mass
    mass = kernel_mass(20)
    for s in np.unique(design.stratum):
        assert design.weight[design.stratum == s].sum() == pytest.approx(mass[s])


def test_exact_with_too_many_segments_says_how_many_evaluations():
    problem = make_problem(make_linear(), n_segments=16)
    with pytest.raises(ExplainError, match=r"samples ≥ 2\^M = 65,536"):
        run_shap(problem, samples=1000, exact=True)


def test_kernelshap_cli_writes_stderr(cli, linear_script, tmp_path):
    x = torch.rand(3, 16, 16)
    torch.save(x, tmp_path / "x.pt")
    result = cli("run", linear_script, tmp_path / "x.pt", "--method", "kernelshap", "--samples", "100",
                 "--out", tmp_path, "--top-k", "2", "--segments", "grid", "--n-segments", "16")
    assert result.exit_code == 0, result.stderr
    import json

    doc = json.loads((tmp_path / "x.kernelshap.json").read_text())
    assert doc["evaluations"] == 100
    for t in doc["targets"]:
        assert all("stderr" in s for s in t["segments"])
        assert sum(s["score"] for s in t["segments"]) == pytest.approx(t["score"] - t["baseline_score"], abs=1e-6)


def test_sampled_strata_are_balanced():
    """Every segment appears about equally often within each sampled coalition size."""
    design = plan(20, 600, allocation="kernel", exact=False, generator=torch.Generator().manual_seed(1))
    sampled = design.pair >= 0
    for s in np.unique(design.stratum[sampled]):
        rows = design.z[sampled & (design.stratum == s)]
        counts = rows.sum(axis=0)
        assert counts.max() - counts.min() <= 3, (s, counts)  # independent draws spread ~8 here


@pytest.mark.parametrize("proxy", ["generic", "image"])
def test_adjusted_fit_is_exact_when_every_coalition_is_present(proxy):
    """The regression adjustment (either prior) leaves no additive residual, so full enumeration stays exact."""
    from explain_cli.engines.kernelshap.design import complements
    from explain_cli.engines.kernelshap.fit import adjusted_fit, image_proxy

    m = 8
    problem = make_problem(Nonlinear().double(), n_segments=m, targets=(0, 1), dtype=torch.float64)
    design = plan(m, 2**m - 2, allocation="kernel", exact=True, generator=torch.Generator())
    f_b = problem.baseline_output().numpy()
    y = problem.segment_outputs(torch.from_numpy(design.z).double()).numpy() - f_b
    delta, partner = problem.reference.numpy() - f_b, complements(design.z)
    if proxy == "image":
        fit = image_proxy(design, y, delta, partner, max_order=5, segments=problem.segments.numpy(),
                          generator=torch.Generator())
    else:
        fit = adjusted_fit(design, y, delta, partner, orders=((3, 1.0), (5, 0.1)), ridge=0.3, representers=1024,
                           generator=torch.Generator())
    np.testing.assert_allclose(fit.phi, exact_shapley_of_problem(problem), atol=1e-8)


class Triple(torch.nn.Module):
    """A product of three region means: a cubic game, which the order-3 adjustment models."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.flatten(2).mean(dim=1)
        a, b, c = q[:, :80].mean(1), q[:, 80:170].mean(1), q[:, 170:].mean(1)
        return (20 * a * b * c + a)[:, None]


@pytest.mark.parametrize("model_type", [Triple, Nonlinear])
def test_interaction_adjustment_lowers_error_and_keeps_stderr_honest(model_type):
    model = model_type().double()
    m = 12
    exact = exact_shapley_of_problem(make_problem(model, n_segments=m, targets=(0,), dtype=torch.float64))
    errors: dict[int, list[float]] = {1: [], 5: []}
    coverage = []
    for interactions, errs in errors.items():
        for seed in range(6):
            p = make_problem(model, n_segments=m, targets=(0,), dtype=torch.float64)
            r = run_shap(p, seed=seed, samples=200, interactions=interactions)
            assert r.extra["interactions"] == interactions
            errs.append(np.linalg.norm(r.scores - exact) / np.linalg.norm(exact))
            coverage.append(np.mean(np.abs(r.scores - exact) <= 3 * r.stderr + 1e-12))
    # measured: 0.57× on the cubic game, 0.85× on the mixed one
    assert np.mean(errors[5]) < (0.75 if model_type is Triple else 0.95) * np.mean(errors[1]), errors
    assert np.mean(coverage) > 0.8


@pytest.mark.parametrize("m, samples", [(2, 3), (3, 5), (4, 9), (5, 20), (6, 40)])
def test_few_segments_and_small_budgets(m, samples):
    """Designs too small or too few players for interactions still give exact efficiency."""
    problem = make_problem(Nonlinear(), n_segments=m, targets=(0, 1))
    result = run_shap(problem, samples=samples)
    np.testing.assert_allclose(result.scores.sum(axis=1), problem.reference.numpy() - result.baseline_score, atol=1e-9)
    assert np.all(np.isfinite(result.scores))
    if result.extra["coalitions"] <= m - 1:  # as many unknowns as coalitions: no residual, stderr unknown
        assert np.all(np.isnan(result.stderr)) and result.warnings
    else:
        assert np.all(np.isfinite(result.stderr))
    assert result.extra["interactions"] <= max(1, m)
