"""Odd-order interaction kernels over coalitions, and the Shapley values of the functions they span.

A coalition is coded u ∈ {−1, +1}^M (u = 2z − 1). The monomials u^S = Π_{i∈S} u_i of odd order
|S| = d are odd functions of u (u^S(−u) = −u^S(u)), and each has a closed-form Shapley value:
2/d to every member of S (by symmetry, and efficiency u^S(1) − u^S(−1) = 2). The kernel

    k(u, u') = Σ_d c_d Σ_{|S|=d} u^S u'^S = Σ_d c_d e_d(u ⊙ u')

(e_d the elementary symmetric polynomial) spans all such monomials at the orders chosen, yet
costs one matrix product to evaluate: e_d of a ±1 vector depends only on how many entries are
+1. Kernel SHAP's regression adjustment (:mod:`explain_cli.engines.kernelshap`) fits a game's odd
part with it and reads Shapley values off the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np


def elementary_symmetric(length: int, max_order: int) -> np.ndarray:
    """E[P, d] = e_d(w) for any w ∈ {±1}^length with P entries +1, for d = 0..max_order.

    e_d is the t^d coefficient of (1 + t)^P (1 − t)^(length − P).
    """
    table = np.zeros((length + 1, max_order + 1))
    for plus in range(length + 1):
        for d in range(max_order + 1):
            table[plus, d] = sum(math.comb(plus, j) * math.comb(length - plus, d - j) * (-1) ** (d - j)
                                 for j in range(d + 1))
    return table


@dataclass(frozen=True)
class OddInteractionKernel:
    """k(u, u') = Σ_d c_d e_d(u ⊙ u') over the odd orders d ≥ 3 in ``weights`` = {d: c_d}."""

    m: int
    weights: tuple[tuple[int, float], ...]  # (order, weight) pairs, odd orders ≥ 3

    @cached_property
    def _orders(self) -> tuple[int, ...]:
        return tuple(d for d, _ in self.weights)

    @cached_property
    def _table(self) -> np.ndarray:
        return elementary_symmetric(self.m, max(self._orders))

    @cached_property
    def _table_minus_one(self) -> np.ndarray:
        return elementary_symmetric(self.m - 1, max(self._orders))

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(len(a), len(b)) kernel matrix between rows of ±1 matrices."""
        plus = np.rint((a @ b.T + self.m) / 2).astype(np.int64)  # entries where u_i = u'_i
        return sum(c * self._table[plus, d] for d, c in self.weights)

    def shapley(self, r: np.ndarray) -> np.ndarray:
        """(len(r), M): row j holds the Shapley values of the game u ↦ k(r_j, u).

        k(r, ·) = Σ_S c_|S| r^S u^S, so player i gets Σ_d c_d (2/d) r_i e_{d−1}(r without i).
        """
        plus = np.rint((r.sum(axis=1, keepdims=True) - r + self.m - 1) / 2).astype(np.int64)
        return sum(c * (2.0 / d) * r * self._table_minus_one[plus, d - 1] for d, c in self.weights)
