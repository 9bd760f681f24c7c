"""Brute-force oracles: exact Shapley and Owen values by enumeration, for tests and benchmarks.

Exponential in the number of players M (2^M coalitions, or all M! orders for Owen values):
for small games only. A game's values on all coalitions are a *table* indexed by the
coalition's bit mask (bit i set = player i present). The benchmarks import this module too
(``benchmarks/_common.py`` puts the repository root on ``sys.path``), so it needs nothing
from pytest.
"""

from __future__ import annotations

from itertools import permutations
from math import factorial
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from explain_cli.core import Problem
    from explain_cli.engines.hierarchy import Hierarchy


def all_coalitions(m: int) -> np.ndarray:
    """(2^M, M) bool: row c is the coalition of bit mask c."""
    codes = np.arange(2**m, dtype=np.int64)
    return ((codes[:, None] >> np.arange(m)) & 1).astype(bool)


def exact_shapley(table: np.ndarray) -> np.ndarray:
    """φ_i = Σ_{S ∌ i} |S|!(M−|S|−1)!/M! · (v(S ∪ i) − v(S)) from a game's full table.

    Parameters
    ----------
    table : (2^M,) or (2^M, K) ndarray
        v of every coalition, row c for bit mask c; K games at once when 2-D.

    Returns
    -------
    (M,) or (K, M) ndarray: the Shapley values, players last.
    """
    table = np.asarray(table, dtype=np.float64)
    m = len(table).bit_length() - 1
    if len(table) != 2**m:
        raise ValueError(f"a game's table has 2^M rows, got {len(table)}")
    codes = np.arange(2**m, dtype=np.int64)
    size = np.zeros(2**m, dtype=np.int64)
    for i in range(m):
        size += (codes >> i) & 1
    weight = np.array([factorial(s) * factorial(m - s - 1) / factorial(m) for s in range(m)] + [0.0])
    phi = np.zeros((m, *table.shape[1:]))
    for i in range(m):
        without = codes[(codes >> i) & 1 == 0]
        w = weight[size[without]].reshape(-1, *[1] * (table.ndim - 1))
        phi[i] = np.sum(w * (table[without | (1 << i)] - table[without]), axis=0)
    return np.moveaxis(phi, 0, -1)


def exact_shapley_of_game(game: Callable[[np.ndarray], np.ndarray], m: int) -> np.ndarray:
    """Exact Shapley values of ``game`` (z (n, M) bool -> (n,) or (n, K) values) over M players."""
    return exact_shapley(game(all_coalitions(m)))


def exact_shapley_of_problem(problem: "Problem") -> np.ndarray:
    """(K, M) exact Shapley values of a problem's game over its segments, the model run in float64.

    v(S) is the model's raw output for the targets on the input with the segments outside S at
    the baseline; the evaluator is bypassed, so its evaluation count does not move.
    """
    import torch

    from explain_cli.core import compose_segments

    m = problem.n_segments
    z = torch.from_numpy(all_coalitions(m)).double()
    ev = problem.evaluator
    with torch.no_grad():
        v = torch.cat([ev.model(compose_segments(problem.x.double(), problem.baseline.double(), problem.segments,
                                                 z[i:i + 256])) for i in range(0, len(z), 256)]).double().numpy()
    return exact_shapley(v if ev.targets is None else v[:, ev.targets.cpu().numpy()])


def exact_owen(v: Callable[[np.ndarray], np.ndarray], tree: "Hierarchy") -> np.ndarray:
    """Mean marginal contribution over the orders that keep every node's leaves together, (K, M).

    ``v`` maps (n, M) float presence vectors to (n, K) values. For a binary tree these are the
    2^(M−1) orders Owen's definition draws uniformly.
    """
    m = tree.n_leaves
    groups = [np.flatnonzero(tree.members[n]) for n in range(m, tree.n_nodes)]
    total, orders = 0.0, 0
    for order in permutations(range(m)):
        position = np.argsort(order)
        if any(position[g].max() - position[g].min() != len(g) - 1 for g in groups):
            continue
        z = np.zeros((m + 1, m))
        for step, player in enumerate(order):
            z[step + 1:, player] = 1.0
        values = v(z)  # (M + 1, K): v of each prefix
        gains = np.zeros((values.shape[1], m))
        gains[:, list(order)] = (values[1:] - values[:-1]).T
        total, orders = total + gains, orders + 1
    assert orders == 2 ** (m - 1)
    return total / orders
