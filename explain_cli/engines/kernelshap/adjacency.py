"""Interaction features that follow the superpixels' adjacency graph, for Kernel SHAP's proxy.

Occluding one superpixel changes what its neighbours mean to the model far more than what a
distant one means: an image game's interactions live mostly on small connected sets of
neighbouring segments. Kernel SHAP fits only the game's odd part (v(S) − v(N∖S))/2, in which
even-order terms vanish, so the adjacency terms are odd monomials u^T = Π_{i∈T} u_i
(u = 2z − 1) over connected sets T of odd size: connected triples (paths i–j–k and
triangles) and, optionally, connected 5-sets. Each has the closed-form Shapley value 2/|T| for
every member of T. There are a few hundred connected triples for M = 50 superpixels, so the
features are explicit columns next to the generic interaction kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from explain_cli.segmentation import segment_adjacency


def connected_sets(adj: np.ndarray, size: int, limit: int | None = None) -> np.ndarray:
    """(n, size) sorted member lists of every connected induced subgraph with ``size`` nodes.

    Grown from each set of size − 1 by adding a neighbour, deduplicated; ``limit`` caps the
    count (the first ones in lexicographic order) so that dense graphs stay cheap.
    """
    m = len(adj)
    neighbours = [np.flatnonzero(adj[i]) for i in range(m)]
    level: set[tuple[int, ...]] = {(i,) for i in range(m)}
    for _ in range(size - 1):
        grown = set()
        for s in level:
            members = set(s)
            for i in s:
                for j in neighbours[i]:
                    if j not in members:
                        grown.add(tuple(sorted(members | {int(j)})))
        level = grown
    out = sorted(level)
    if limit is not None:
        out = out[:limit]
    return np.asarray(out, dtype=np.int64).reshape(-1, size)


@dataclass(frozen=True)
class OddAdjacencyFeatures:
    """Columns u^T for connected sets T of odd size ≥ 3, and their Shapley values."""

    m: int
    sets: tuple[np.ndarray, ...]  # one (n_d, d) array per odd order d

    @classmethod
    def from_segments(cls, segments: np.ndarray, m: int, orders: tuple[int, ...] = (3,)) -> "OddAdjacencyFeatures":
        adj = segment_adjacency(segments, m)
        return cls(m, tuple(connected_sets(adj, d) for d in orders if d <= m))

    @property
    def size(self) -> int:
        return sum(len(s) for s in self.sets)

    def __call__(self, u: np.ndarray) -> np.ndarray:
        """(n, size) feature matrix for ±1 coalitions u (n, M)."""
        cols = [np.prod(u[:, s], axis=2) for s in self.sets if len(s)]
        return np.concatenate(cols, axis=1) if cols else np.zeros((len(u), 0))

    @cached_property
    def shapley(self) -> np.ndarray:
        """(M, size): column t holds the Shapley values of the game u ↦ u^{T_t}: 2/|T| per member."""
        out = np.zeros((self.m, self.size))
        col = 0
        for s in self.sets:
            n, d = s.shape
            out[s, np.arange(col, col + n)[:, None]] = 2.0 / d
            col += n
        return out

