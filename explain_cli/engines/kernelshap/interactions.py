"""Odd-order interaction kernels over coalitions, and the Shapley values of the functions they span.

A coalition is coded u ∈ {−1, +1}^M (u = 2z − 1). The monomials u^S = Π_{i∈S} u_i of odd order
|S| = d are odd functions of u (u^S(−u) = −u^S(u)), and each has a closed-form Shapley value:
2/d to every member of S (by symmetry, and efficiency u^S(1) − u^S(−1) = 2). The kernel

    k(u, u') = Σ_d c_d Σ_{|S|=d} u^S u'^S = Σ_d c_d e_d(u ⊙ u')

(e_d the elementary symmetric polynomial) spans all such monomials at the orders chosen, yet
costs one matrix product to evaluate: e_d of a ±1 vector depends only on how many entries are
+1. Kernel SHAP's regression adjustment (:mod:`explain_cli.engines.kernelshap.fit`) fits a game's odd
part with it and reads Shapley values off the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np


class InteractionKernel(Protocol):
    """What the regression adjustment needs of a kernel over ±1 coalitions."""

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(len(a), len(b)) kernel matrix."""

    def shapley(self, r: np.ndarray) -> np.ndarray:
        """(len(r), M): row j holds the Shapley values of the game u ↦ k(r_j, u)."""


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


def _elementary_from_power_sums(p: list, max_order: int) -> list:
    """e_0..e_max_order from power sums p[1..max_order] (Newton's identities); p[0] unused."""
    e = [np.ones_like(p[1]) if isinstance(p[1], np.ndarray) else 1.0]
    for k in range(1, max_order + 1):
        e.append(sum((-1) ** (j - 1) * e[k - j] * p[j] for j in range(1, k + 1)) / k)
    return e


@dataclass(frozen=True)
class WeightedOddKernel:
    """k(u, u') = Σ_d c_d Σ_{|T|=d} ρ^T u^T u'^T: the odd interaction kernel with a weight per player.

    ρ^T = Π_{i∈T} ρ_i puts the prior mass of the interactions on sets of heavy players
    (heredity: interactions among players that matter alone are the large ones). It is
    e_d(ρ ⊙ u ⊙ u'), computed from power sums by Newton's identities: for ±1 vectors the odd
    power sums are matrix products and the even ones constants, so the kernel costs one matrix
    product per odd order. Each order's weight is rescaled so that its total prior mass
    e_d(ρ) equals C(M, d), as with ρ = 1 (where this is :class:`OddInteractionKernel`).
    Orders 3 and 5 (all the engine offers) are evaluated as one polynomial.
    """

    m: int
    weights: tuple[tuple[int, float], ...]  # orders among 3 and 5
    rho: np.ndarray  # (M,) positive

    def __post_init__(self) -> None:
        if not {d for d, _ in self.weights} <= {3, 5}:
            raise ValueError(f"WeightedOddKernel takes orders 3 and 5, not {[d for d, _ in self.weights]}")

    @cached_property
    def _max(self) -> int:
        return max(d for d, _ in self.weights)

    @cached_property
    def _scaled(self) -> tuple[tuple[int, float], ...]:
        p = [None] + [float(np.sum(self.rho ** j)) for j in range(1, self._max + 1)]
        e = _elementary_from_power_sums(p, self._max)
        return tuple((d, c * math.comb(self.m, d) / max(e[d], 1e-300)) for d, c in self.weights)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # orders 3 and 5 as polynomials in the odd power sums p1, p3, p5 with
        # constant p2, p4: e3 = (p1³ − 3p2p1 + 2p3)/6 and
        # e5 = (p1⁵ − 10p2p1³ + 15p2²p1 − 30p4p1 + 20p1²p3 − 20p2p3 + 24p5)/120, Horner in q = p1²
        c = dict(self._scaled)
        c3, c5 = c.get(3, 0.0), c.get(5, 0.0)
        s2, s4 = float(np.sum(self.rho ** 2)), float(np.sum(self.rho ** 4))
        p1 = (a * self.rho) @ b.T
        q = p1 * p1
        inner = q * (c5 / 120.0)
        inner += c3 / 6.0 - c5 * s2 / 12.0
        inner *= q
        inner += c5 * (15.0 * s2 * s2 - 30.0 * s4) / 120.0 - c3 * s2 / 2.0
        out = p1
        out *= inner
        p3 = (a * self.rho ** 3) @ b.T
        q *= c5 / 6.0
        q += c3 / 3.0 - c5 * s2 / 6.0
        q *= p3
        out += q
        if c5:
            out += (c5 / 5.0) * ((a * self.rho ** 5) @ b.T)
        return out

    def shapley(self, r: np.ndarray) -> np.ndarray:
        """(len(r), M): Shapley values of u ↦ k(r_j, u): Σ_d c_d (2/d) x_i e_{d−1}(x without i), x = ρ ⊙ r_j."""
        x = r * self.rho
        # power sums of x = ρ ⊙ r with r ∈ {±1}^M: r·ρ^j for odd j, Σρ^j for even j
        p = [None] + [(r @ self.rho ** j)[:, None] if j % 2 else np.full((len(r), 1), float(np.sum(self.rho ** j)))
                      for j in range(1, self._max + 1)]
        e = _elementary_from_power_sums(p, self._max)  # each (n, 1)
        without = [np.ones_like(x)]  # e_k(x without i), (n, M)
        for k in range(1, self._max):
            without.append(e[k] - x * without[k - 1])
        return sum(c * (2.0 / d) * x * without[d - 1] for d, c in self._scaled)
