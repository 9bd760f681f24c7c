"""The image proxy of Kernel SHAP: adjacency features, the heredity-weighted kernel, and the estimator."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import torch

from explain_cli.engines.kernelshap.adjacency import OddAdjacencyFeatures, connected_sets
from explain_cli.engines.kernelshap.design import complements, plan
from explain_cli.engines.kernelshap.engine import KernelShapParams, estimate
from explain_cli.engines.kernelshap.interactions import OddInteractionKernel, WeightedOddKernel
from explain_cli.segmentation import segment_adjacency
from tests.oracles import exact_shapley_of_game
from tests.helpers import Nonlinear, make_problem, run_shap


def grid_segments(rows: int, cols: int, cell: int = 2) -> np.ndarray:
    return np.kron(np.arange(rows * cols).reshape(rows, cols), np.ones((cell, cell), dtype=np.int64))


def test_adjacency_and_connected_sets_on_a_grid():
    adj = segment_adjacency(grid_segments(3, 3))
    assert adj.sum() == 2 * 12 and not adj.diagonal().any()  # a 3×3 grid graph has 12 edges
    assert len(connected_sets(adj, 2)) == 12
    # no triangles: the connected triples are the paths i–j–k, Σ_j C(deg j, 2) = 4·1 + 4·3 + 6
    triples = connected_sets(adj, 3)
    assert len(triples) == 22 and all(int(adj[a, b]) + int(adj[b, c]) + int(adj[a, c]) >= 2 for a, b, c in triples)


def test_adjacency_features_have_the_shapley_values_of_their_monomials():
    m = 6
    feats = OddAdjacencyFeatures.from_segments(grid_segments(2, 3), m, (3, 5))
    assert feats.size > 0
    for t in range(feats.size):
        game = lambda z, t=t: feats(2.0 * z - 1.0)[:, t]  # noqa: E731
        np.testing.assert_allclose(feats.shapley[:, t], exact_shapley_of_game(game, m), atol=1e-12)


def test_weighted_kernel_is_the_weighted_monomial_sum_and_its_sections_have_exact_shapley_values():
    m, rng = 7, np.random.default_rng(0)
    rho = rng.uniform(0.1, 1.5, m)
    weights = ((3, 1.0), (5, 0.2))
    kernel = WeightedOddKernel(m, weights, rho)
    a, b = rng.choice([-1.0, 1.0], (4, m)), rng.choice([-1.0, 1.0], (3, m))
    direct = sum(c * np.prod(rho[list(t)]) * np.prod(a[:, list(t)], 1)[:, None] * np.prod(b[:, list(t)], 1)[None]
                 for d, c in kernel._scaled for t in combinations(range(m), d))
    np.testing.assert_allclose(kernel(a, b), direct, atol=1e-10)
    for j in range(len(a)):
        game = lambda z, j=j: kernel(a[j:j + 1], 2.0 * z - 1.0)[0]  # noqa: E731
        np.testing.assert_allclose(kernel.shapley(a)[j], exact_shapley_of_game(game, m), atol=1e-10)
    flat = WeightedOddKernel(m, weights, np.ones(m))  # ρ = 1 is the generic kernel
    np.testing.assert_allclose(flat(a, b), OddInteractionKernel(m, weights)(a, b), atol=1e-9)


class NeighbourGame:
    """v(z) = Σ w_i z_i + Σ over adjacent pairs and connected triples of c_T Π_{i∈T} z_i on a 4×4 grid."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.segments = grid_segments(4, 4)
        self.m = 16
        adj = segment_adjacency(self.segments)
        self.terms = [((i,), rng.normal()) for i in range(self.m)]
        self.terms += [(tuple(t), 1.5 * rng.normal()) for t in connected_sets(adj, 2)]
        self.terms += [(tuple(t), 1.5 * rng.normal()) for t in connected_sets(adj, 3)]

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return sum(c * np.prod(z[:, list(t)], axis=1) for t, c in self.terms)

    def shapley(self) -> np.ndarray:  # a unanimity game Π_{i∈T} z_i gives 1/|T| to each member
        phi = np.zeros(self.m)
        for t, c in self.terms:
            phi[list(t)] += c / len(t)
        return phi


def fit_game(game: NeighbourGame, samples: int, seed: int, **params):
    gen = torch.Generator().manual_seed(seed)
    design = plan(game.m, samples - 2, allocation="leverage", exact=False, generator=gen)
    f_b, f_x = game(np.zeros((1, game.m), bool))[0], game(np.ones((1, game.m), bool))[0]
    y = (game(design.z) - f_b)[:, None]
    return estimate(design, y, np.array([f_x - f_b]), KernelShapParams(samples=samples, **params), gen,
                    segments=game.segments)


def test_image_proxy_beats_the_generic_one_on_neighbour_interactions():
    game = NeighbourGame()
    exact = game.shapley()
    err = {proxy: [] for proxy in ("image", "generic")}
    z2 = []
    for proxy, errs in err.items():
        for seed in range(5):
            fit = fit_game(game, 300, seed, proxy=proxy)
            errs.append(np.linalg.norm(fit.phi[0] - exact) / np.linalg.norm(exact))
            np.testing.assert_allclose(fit.phi.sum(), exact.sum(), atol=1e-9)  # efficiency is exact
            if proxy == "image":
                z2.append(((fit.phi[0] - exact) / fit.stderr[0]) ** 2)
    assert np.mean(err["image"]) < 0.7 * np.mean(err["generic"]), err
    assert 0.4 < np.sqrt(np.mean(z2)) < 2.0  # standard errors stay honest


@pytest.mark.parametrize("samples", [20, 100, 400])
def test_image_proxy_is_exact_for_additive_games(samples):
    rng = np.random.default_rng(1)
    w = rng.normal(size=16)
    game = NeighbourGame()
    game.terms = [((i,), w[i]) for i in range(16)]
    fit = fit_game(game, samples, 0)
    np.testing.assert_allclose(fit.phi[0], w, atol=1e-9)


def test_proxy_option_reaches_the_engine():
    problem = make_problem(Nonlinear(), n_segments=10, targets=(0,))
    image, generic = run_shap(problem, samples=200), run_shap(problem, samples=200, proxy="generic")
    assert image.extra["interactions"] == generic.extra["interactions"] == 5
    assert not np.allclose(image.scores, generic.scores)


@pytest.mark.parametrize("budget", [120, 600])
def test_dual_fit_equals_the_primal_one(budget):
    """kriging_fit (every pair a representer, solved in the dual) is the primal constrained fit, stderr included."""
    from explain_cli.engines.kernelshap.fit import adjusted_fit

    m, rng = 12, np.random.default_rng(1)
    design = plan(m, budget, allocation="leverage", exact=False, generator=torch.Generator().manual_seed(0))
    weights = rng.normal(size=(m, 2))
    z = design.z.astype(np.float64)
    y = np.tanh(z @ weights + z[:, [0]] * z[:, [1]] * z[:, [2]])
    delta = np.tanh(weights.sum(axis=0) + 1.0)
    orders = ((3, 1.0), (5, 0.05))
    common = dict(orders=orders, ridge=0.3, representers=10**6, generator=torch.Generator().manual_seed(0),
                  adjacency=OddAdjacencyFeatures.from_segments(grid_segments(3, 4), m, (3,)), adjacency_weight=10.0,
                  kernel=WeightedOddKernel(m, orders, rng.uniform(0.2, 1.2, m)))
    dual = adjusted_fit(design, y, delta, complements(design.z), dual=True, **common)
    primal = adjusted_fit(design, y, delta, complements(design.z), dual=False, **common)
    np.testing.assert_allclose(dual.phi, primal.phi, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(dual.stderr, primal.stderr, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(dual.phi.sum(axis=1), delta, atol=1e-12)
