"""Partition: Owen values over a binary tree of superpixels (shap's ``PartitionExplainer``).

Design
------
* Players are the M superpixels, v(S) = f(x with the superpixels outside S at the baseline),
  and a binary tree over them (:mod:`explain_cli.engines.hierarchy`) is the coalition structure.
* The Owen value of a node is the Shapley value of the two-player game between it and its
  sibling, averaged over every presence/absence of the ancestors' siblings (the *context*).
  Equivalently it is the mean marginal contribution over orders of the players that keep every
  node's leaves together; a node at depth d has 2^d contexts (its own sibling included).
* The computation walks *items* (node, context C, weight w): the item's marginal is
  Δ = v(C ∪ node) − v(C), both already known. Expanding an item of node P with children L, R
  evaluates v(C ∪ L) and v(C ∪ R) and makes four items of weight w/2: L in contexts C and
  C ∪ R, R in contexts C and C ∪ L. Their marginals add up to 2Δ, so the weighted sum is kept
  exactly: efficiency holds at every level and at every budget. The root item is (root, ∅, 1),
  whose marginal is f(x) − f(b). Expanding every item gives the exact Owen values, in
  2 + 2·Σ_{internal nodes} 2^depth evaluations (O(M²) for a balanced tree).
* Under a budget (``samples``, f(x) and f(b) included) the items with the largest
  w·max_k|Δ_k| are expanded first, so all contexts are averaged as in the definition, but
  coarsely where little happens: an item left unexpanded keeps its weighted marginal on its
  node, and a node's kept value is spread over its leaves in proportion to their pixel area
  (a superpixel's share of the region it belongs to). shap does the same with ``max_evals``
  (its ``fixed_context=None``); we differ in the spreading rule (area, not count) and in
  expanding the top half of the queue per round, independent of the evaluator's batch size.
  The order is shared by the targets (an item's priority is its largest |marginal| over them),
  so under a budget a target's values depend on which others are explained; the JSON says so
  (``extra.targets_independent``), and exact values (enough ``samples``) are independent.
* One round's coalitions are composed and evaluated as one batch; every coalition is memoised
  by its bitmask so that none is evaluated twice.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.engines.base import Attribution, Engine
from explain_cli.engines.hierarchy import HIERARCHIES, Hierarchy, build_hierarchy
from explain_cli.params import param

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem


@dataclass(frozen=True)
class PartitionParams:
    samples: int = param(500, "Model evaluations, f(x) and f(baseline) included; enough for all contexts gives exact Owen values.",
                         minimum=3, maximum=10_000_000)
    hierarchy: str = param("rag", "How superpixels are grouped: merged by adjacency and colour (rag) or halved along the image axes (axis).",
                           choices=HIERARCHIES)


@dataclass(order=True)
class _Item:
    """A node in one context, ordered for a min-heap: largest weighted |marginal| first."""

    priority: float
    tie: float  # random key: equal priorities pop in an order that favours no side of the tree
    node: int = field(compare=False)
    context: np.ndarray = field(compare=False)  # (M,) bool, the ancestors' siblings present
    f_off: np.ndarray = field(compare=False)  # (K,) v(context)
    f_on: np.ndarray = field(compare=False)  # (K,) v(context ∪ node)
    weight: float = field(compare=False)

    @property
    def mass(self) -> np.ndarray:
        """(K,) weighted marginal w·Δ this item contributes to its node."""
        return self.weight * (self.f_on - self.f_off)


def exact_evaluations(tree: Hierarchy) -> int:
    """Evaluations for the exact Owen values, f(x) and f(b) included: 2 + 2·Σ 2^depth over internal nodes."""
    return 2 + 2 * sum(2 ** int(d) for d in tree.depth[tree.n_leaves:])  # Python ints: a deep tree overflows int64


def run(problem: "Problem", params: PartitionParams, generator: "torch.Generator") -> Attribution:
    tree = build_hierarchy(problem.segments.cpu().numpy(), problem.x.detach().cpu().double().numpy(), params.hierarchy)
    return owen_values(problem, tree, samples=params.samples, generator=generator)


def owen_values(problem: "Problem", tree: Hierarchy, *, samples: int, generator: "torch.Generator") -> Attribution:
    """Owen values of the M segments over ``tree`` with at most ``samples`` evaluations.

    Parameters
    ----------
    problem : Problem
        Its ``reference`` (K,) is f(x); f(baseline) costs one more evaluation.
    tree : Hierarchy
        Over exactly ``problem.n_segments`` leaves.
    samples : int
        Evaluation budget, f(x) and f(b) included (at least 3).
    generator : torch.Generator
        Breaks ties between equally important items; nothing else is random.

    Returns
    -------
    Attribution with ``scores`` (K, M), Σ_m scores[k, m] = f_k(x) − f_k(b) exactly.
    """
    m = problem.n_segments
    if tree.n_leaves != m:
        raise ValueError(f"the hierarchy has {tree.n_leaves} leaves but the problem has {m} segments")
    f_x, f_b = problem.begin("partition", min(samples, exact_evaluations(tree)))
    walk = _Walk(problem, tree, f_b=f_b, f_x=f_x, budget=samples - 2, generator=generator)
    walk.run()
    scores = _spread(walk.kept, tree, _leaf_area(problem, m))
    expanded = sorted(walk.expanded)
    return Attribution(
        scores=scores, base_value=f_b.copy(), baseline_score=f_b.copy(), stderr=None,
        extra={
            "hierarchy": tree.algorithm,
            "parent": tree.parent.tolist(),
            "expanded": expanded,
            "expanded_contexts": [walk.expanded[n] for n in expanded],
            "coalitions": walk.coalitions,
            "exact": not walk.queue,
            # under a budget the expansion order follows the largest |marginal| over all targets, so
            # each target's values depend on which others are explained; exact values do not
            "targets_independent": not walk.queue or len(f_x) == 1,
        },
    )


class _Walk:
    """The priority-queue walk over (node, context) items, with memoised, batched evaluations."""

    def __init__(self, problem: "Problem", tree: Hierarchy, *, f_b: np.ndarray, f_x: np.ndarray, budget: int,
                 generator: "torch.Generator") -> None:
        self.problem = problem
        self.tree = tree
        self.budget = budget
        self.generator = generator
        m = tree.n_leaves
        self.memo: dict[bytes, np.ndarray] = {_key(np.zeros(m, bool)): f_b, _key(np.ones(m, bool)): f_x}
        self.kept = np.zeros((tree.n_nodes, f_x.shape[0]))  # (2M−1, K) weighted marginals left on each node
        self.expanded: dict[int, int] = {}  # node -> contexts in which its children were evaluated
        self.coalitions = 0
        self.queue: list[_Item] = []
        self._push([(tree.root, np.zeros(m, bool), f_b, f_x, 1.0)])

    def run(self) -> None:
        """Expand items round by round until none is left or the budget is spent."""
        while self.queue:
            # Half the queue per round: close to one-at-a-time greedy order (children compete
            # with their parents' peers after every round) in O(depth + log items) batches.
            chosen, new = self._choose(max(1, (len(self.queue) + 1) // 2))
            if not chosen:
                break
            self._evaluate(new)
            self._expand(chosen)
        for item in self.queue:
            self.kept[item.node] += item.mass

    def _choose(self, limit: int) -> tuple[list[_Item], dict[bytes, np.ndarray]]:
        """Up to ``limit`` items, most important first, whose new coalitions fit the budget."""
        chosen: list[_Item] = []
        new: dict[bytes, np.ndarray] = {}
        while self.queue and len(chosen) < limit:
            item = self.queue[0]
            wanted = {_key(z): z for z in self._child_coalitions(item)}
            missing = {k: z for k, z in wanted.items() if k not in self.memo and k not in new}
            if self.coalitions + len(new) + len(missing) > self.budget:
                break
            new.update(missing)
            chosen.append(heapq.heappop(self.queue))
        return chosen, new

    def _child_coalitions(self, item: _Item) -> tuple[np.ndarray, np.ndarray]:
        left, right = self.tree.children[item.node]
        return item.context | self.tree.members[left], item.context | self.tree.members[right]

    def _evaluate(self, new: dict[bytes, np.ndarray]) -> None:
        """One batch through the model for the round's new coalitions; results memoised."""
        import torch

        if not new:
            return
        z = torch.from_numpy(np.stack(list(new.values()))).to(torch.float32)
        out = self.problem.segment_outputs(z).numpy()
        for k, row in zip(new, out):
            self.memo[k] = row
        self.coalitions += len(new)

    def _expand(self, chosen: list[_Item]) -> None:
        made = []
        for item in chosen:
            left, right = (int(c) for c in self.tree.children[item.node])
            with_left, with_right = self._child_coalitions(item)
            f_l, f_r = self.memo[_key(with_left)], self.memo[_key(with_right)]
            w = item.weight / 2
            made += [(left, item.context, item.f_off, f_l, w), (left, with_right, f_r, item.f_on, w),
                     (right, item.context, item.f_off, f_r, w), (right, with_left, f_l, item.f_on, w)]
            self.expanded[item.node] = self.expanded.get(item.node, 0) + 1
        self._push(made)

    def _push(self, made: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, float]]) -> None:
        """Queue internal nodes' items; a leaf's item is final, its mass goes straight to the leaf."""
        import torch

        ties = torch.rand(len(made), generator=self.generator, dtype=torch.float64).tolist()
        for (node, context, f_off, f_on, weight), tie in zip(made, ties):
            delta = f_on - f_off
            if self.tree.is_leaf(node):
                self.kept[node] += weight * delta
                continue
            priority = -weight * float(np.max(np.abs(delta))) if delta.size else 0.0
            heapq.heappush(self.queue, _Item(priority, tie, node, context, f_off, f_on, weight))


def _key(z: np.ndarray) -> bytes:
    return np.packbits(z).tobytes()


def _leaf_area(problem: "Problem", m: int) -> np.ndarray:
    """(M,) pixel count of every segment."""
    return np.bincount(problem.segments.cpu().numpy().ravel(), minlength=m).astype(np.float64)


def _spread(kept: np.ndarray, tree: Hierarchy, area: np.ndarray) -> np.ndarray:
    """(K, M) leaf scores: each node's kept value shared by its leaves in proportion to their area.

    A node whose leaves have no pixels at all (empty ids) shares by count instead.
    """
    share = tree.members * area[None, :]  # (2M−1, M)
    total = share.sum(axis=1, keepdims=True)
    by_count = tree.members / tree.members.sum(axis=1, keepdims=True)
    share = np.where(total > 0, share / np.where(total > 0, total, 1.0), by_count)
    return (kept.T @ share).copy()


ENGINE = Engine(
    name="partition",
    summary="Owen values over a hierarchy of superpixels (shap's partition explainer); exact in O(M²) evaluations for a balanced tree",
    params=PartitionParams,
    run=run,
)
