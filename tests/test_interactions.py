"""The odd interaction kernel: its matrix equals explicit monomial features, its Shapley values are exact."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from explain_cli.engines.kernelshap.interactions import OddInteractionKernel, elementary_symmetric
from tests.oracles import exact_shapley

WEIGHTS = ((3, 1.0), (5, 0.25))


def monomials(u: np.ndarray, weights=WEIGHTS) -> np.ndarray:
    """Explicit features √c_d · u^S for every S of each order d."""
    cols = [math.sqrt(c) * np.prod(u[:, list(s)], axis=1) for d, c in weights
            for s in combinations(range(u.shape[1]), d)]
    return np.stack(cols, axis=1)


def all_signs(m: int) -> np.ndarray:
    codes = np.arange(2**m)
    return 2.0 * ((codes[:, None] >> np.arange(m)) & 1) - 1.0


def test_elementary_symmetric_table_matches_direct_sum():
    rng = np.random.default_rng(0)
    w = rng.choice([-1.0, 1.0], size=9)
    table = elementary_symmetric(9, 5)
    plus = int((w > 0).sum())
    for d in range(6):
        direct = sum(np.prod(w[list(s)]) for s in combinations(range(9), d))
        assert table[plus, d] == pytest.approx(direct)


def test_kernel_equals_feature_inner_products():
    rng = np.random.default_rng(1)
    a, b = rng.choice([-1.0, 1.0], size=(7, 8)), rng.choice([-1.0, 1.0], size=(5, 8))
    kernel = OddInteractionKernel(8, WEIGHTS)
    np.testing.assert_allclose(kernel(a, b), monomials(a) @ monomials(b).T, atol=1e-9)


def test_shapley_values_of_kernel_sections_are_exact():
    m = 7
    kernel = OddInteractionKernel(m, WEIGHTS)
    u = all_signs(m)
    rng = np.random.default_rng(2)
    centres = rng.choice([-1.0, 1.0], size=(3, m))
    games = kernel(centres, u)  # row j: the game u ↦ k(centre_j, u) on all coalitions
    psi = kernel.shapley(centres)
    for j in range(len(centres)):
        np.testing.assert_allclose(psi[j], exact_shapley(games[j]), atol=1e-9)
    # efficiency: Σ_i ψ_i = k(c, 1) − k(c, −1) = 2 k(c, 1) for an odd kernel
    np.testing.assert_allclose(psi.sum(axis=1), 2 * kernel(centres, np.ones((1, m)))[:, 0])
