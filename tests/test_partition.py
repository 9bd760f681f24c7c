"""Partition (Owen values): brute force from the definition, closed forms, efficiency at every
budget, linear exactness, and the hierarchies being trees over exactly the M segments."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
import torch

from explain_cli.core import Evaluator, Problem
from explain_cli.engines import build_params
from explain_cli.engines.hierarchy import Hierarchy, build_hierarchy
from explain_cli.engines.partition import ENGINE, exact_evaluations, owen_values
from explain_cli.errors import OptionError
from explain_cli.segmentation import grid_labels, segment, segment_adjacency
from tests.conftest import make_linear
from tests.oracles import exact_owen
from tests.helpers import Nonlinear, exact_contributions, make_problem

Game = Callable[[torch.Tensor], torch.Tensor]  # (B, M) presence in [0, 1] -> (B, K)


class SegmentGame(torch.nn.Module):
    """A model that reads back which segments are present and plays a given game on them.

    With x = 1 and baseline = 0 the composed input is exactly z[segments], so the mean of a
    segment's pixels is its presence: the engine's coalitions reach the game unchanged.
    """

    def __init__(self, segments: torch.Tensor, game: Game) -> None:
        super().__init__()
        self.segments = segments.flatten()
        self.m = int(segments.max()) + 1
        self.area = torch.bincount(self.segments, minlength=self.m).double()
        self.game = game

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(x.shape[0], self.m, dtype=torch.float64)
        z.index_add_(1, self.segments, x[:, 0].flatten(1).double())
        return self.game(z / self.area)


def game_problem(game: Game, segments: torch.Tensor, *, batch_size: int = 16) -> Problem:
    h, w = segments.shape
    x = torch.ones(1, h, w, dtype=torch.float64)
    ev = Evaluator(SegmentGame(segments, game), torch.device("cpu"), batch_size=batch_size, output="logits")
    reference = ev(x[None])[0].cpu()
    ev.select_targets(list(range(reference.shape[0])))
    return Problem(x=x, baseline=torch.zeros_like(x), segments=segments, evaluator=ev, reference=reference)


def strips(widths: list[int]) -> torch.Tensor:
    """(4, Σ widths) label map of vertical strips, segment i being widths[i] columns wide."""
    return torch.repeat_interleave(torch.arange(len(widths)), torch.tensor(widths)).expand(4, -1).contiguous()


def run_owen(problem: Problem, tree: Hierarchy, samples: int, seed: int = 0):
    return owen_values(problem, tree, samples=samples, generator=torch.Generator().manual_seed(seed))


def assert_tree(tree: Hierarchy, m: int) -> None:
    """A binary tree over exactly the M leaves: one root, valid parents, every leaf once."""
    n = 2 * m - 1
    assert tree.n_leaves == m and tree.n_nodes == n and tree.root == n - 1
    assert np.flatnonzero(tree.parent == -1).tolist() == [n - 1]
    assert (tree.children[:m] == -1).all()
    kids = tree.children[m:].ravel()
    assert sorted(kids.tolist()) == list(range(n - 1))  # every node but the root is a child exactly once
    for node in range(m, n):
        left, right = tree.children[node]
        assert left < node and right < node
        assert tree.parent[left] == tree.parent[right] == node
        assert not (tree.members[left] & tree.members[right]).any()
        assert (tree.members[node] == (tree.members[left] | tree.members[right])).all()
    assert tree.members[tree.root].all() and (tree.members[:m] == np.eye(m, dtype=bool)).all()


# --- known answers ----------------------------------------------------------------------------

# a fixed unbalanced tree over 6 leaves: ((0, 1), (2, (3, (4, 5))))
FIXED_SIX = Hierarchy.from_merges([(0, 1), (4, 5), (3, 7), (2, 8), (6, 9)])


def random_game(m: int, seed: int) -> Game:
    """A small random tanh network on the presence vector, two outputs: strongly non-additive."""
    g = torch.Generator().manual_seed(seed)
    w1, b1 = torch.randn(m, 8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    w2 = torch.randn(8, 2, generator=g, dtype=torch.float64)
    return lambda z: torch.tanh(z @ w1 * 1.5 + b1) @ w2 + (z[:, :1] * z[:, -1:])


@pytest.mark.parametrize("tree", ["fixed", "axis", "rag"])
def test_full_budget_equals_exact_owen(tree):
    segments = strips([2, 3, 1, 4, 2, 3])
    game = random_game(6, seed=3)
    problem = game_problem(game, segments, batch_size=5)
    hierarchy = FIXED_SIX if tree == "fixed" else build_hierarchy(segments.numpy(), torch.rand(3, 4, 15).numpy(), tree)
    expected = exact_owen(lambda z: game(torch.from_numpy(z)).numpy(), hierarchy)
    result = run_owen(problem, hierarchy, samples=10_000)
    np.testing.assert_allclose(result.scores, expected, atol=1e-12, rtol=1e-12)
    assert result.extra["exact"]
    assert result.extra["coalitions"] == exact_evaluations(hierarchy) - 2
    assert problem.evaluator.evaluations == exact_evaluations(hierarchy)  # f(x), f(b), coalitions, none twice


def test_owen_differs_from_shapley_on_an_unbalanced_tree():
    """The unanimity game of all players: Shapley gives 1/M each, Owen halves the credit per level."""
    problem = game_problem(lambda z: z.prod(dim=1, keepdim=True), strips([1] * 6))
    result = run_owen(problem, FIXED_SIX, samples=1000)
    np.testing.assert_allclose(result.scores[0], [1 / 4, 1 / 4, 1 / 4, 1 / 8, 1 / 16, 1 / 16], atol=1e-15)


def test_product_of_two_groups_has_closed_form():
    """v = g(A)·h(B) with A = {0, 1} and B = {2, 3, 4} the root's children.

    g = α + a·z additive, h = β + c·z2·z3·z4. B being on or off with probability ½ in A's
    contexts, φ_i = a_i (β + c/2) for i in A; A likewise, φ_j = (α + Σa/2)·c·2^−(depth of j in B).
    """
    alpha, beta, c = 0.5, -1.5, 3.0
    a = np.array([2.0, -0.7])

    def game(z: torch.Tensor) -> torch.Tensor:
        g = alpha + z[:, :2] @ torch.from_numpy(a)
        h = beta + c * z[:, 2] * z[:, 3] * z[:, 4]
        return (g * h)[:, None]

    tree = Hierarchy.from_merges([(0, 1), (3, 4), (2, 6), (5, 7)])  # ((0, 1), (2, (3, 4)))
    result = run_owen(game_problem(game, strips([3, 1, 2, 2, 1])), tree, samples=1000)
    centre = alpha + a.sum() / 2
    expected = [a[0] * (beta + c / 2), a[1] * (beta + c / 2), centre * c / 2, centre * c / 4, centre * c / 4]
    np.testing.assert_allclose(result.scores[0], expected, atol=1e-12)


@pytest.mark.parametrize("hierarchy", ["rag", "axis"])
def test_linear_model_exact_at_full_budget(hierarchy):
    model = make_linear().double()
    problem = make_problem(model, n_segments=12, dtype=torch.float64)
    expected = exact_contributions(model, problem)
    engine_params = build_params(ENGINE, {"samples": 100_000, "hierarchy": hierarchy})
    result = ENGINE.run(problem, engine_params, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(result.scores, expected, atol=1e-9 * np.abs(expected).max(), rtol=0)
    assert result.extra["exact"] and result.extra["hierarchy"] == hierarchy


@pytest.mark.parametrize("samples", [3, 4, 12, 40])
def test_linear_model_regions_exact_under_budget(samples):
    """Additive game: every item of a node has the same marginal Σ_{i∈node} a_i, whatever its
    context, so a region's total is exact once all its ancestors are expanded in every context;
    inside an unexpanded region the value is shared by area, not exact."""
    model = make_linear().double()
    problem = make_problem(model, n_segments=12, dtype=torch.float64)
    tree = build_hierarchy(problem.segments.numpy(), problem.x.numpy(), "axis")
    expected = exact_contributions(model, problem)
    result = run_owen(problem, tree, samples=samples)
    full = {n for n, c in zip(result.extra["expanded"], result.extra["expanded_contexts"]) if c == 2 ** tree.depth[n]}
    checked = 0
    for node in range(tree.n_nodes):
        ancestors, p = [], tree.parent[node]
        while p != -1:
            ancestors.append(int(p))
            p = tree.parent[p]
        if all(a in full for a in ancestors):
            leaves = tree.members[node]
            np.testing.assert_allclose(result.scores[:, leaves].sum(1), expected[:, leaves].sum(1), atol=1e-9)
            checked += 1
    assert checked >= (1 if samples < 4 else 3)  # the root, and its children once the root is expanded
    assert not result.extra["exact"]


def test_unexpanded_value_is_spread_by_area():
    """samples = 3 leaves the root unexpanded: f(x) − f(b) shared in proportion to pixel area."""
    widths = [2, 3, 1, 4, 2, 3]
    problem = game_problem(random_game(6, seed=1), strips(widths))
    result = run_owen(problem, FIXED_SIX, samples=3)
    total = problem.reference.numpy() - result.baseline_score
    np.testing.assert_allclose(result.scores, total[:, None] * np.array(widths) / sum(widths), atol=1e-12)
    assert result.extra["expanded"] == [] and result.extra["coalitions"] == 0


# --- budget, efficiency, determinism ------------------------------------------------------------

@pytest.mark.parametrize("samples", [3, 5, 20, 64, 200, 5000])
def test_efficiency_exact_at_every_budget(samples):
    problem = make_problem(Nonlinear(), n_segments=16, targets=(0, 1))
    result = ENGINE.run(problem, build_params(ENGINE, {"samples": samples}), torch.Generator().manual_seed(0))
    np.testing.assert_allclose(result.scores.sum(axis=1), problem.reference.numpy() - result.baseline_score, atol=1e-9)
    np.testing.assert_allclose(result.base_value, result.baseline_score)
    assert problem.evaluator.evaluations <= samples  # f(x) already counted by make_problem
    assert problem.evaluator.evaluations == 2 + result.extra["coalitions"]
    assert result.stderr is None and result.scores.shape == (2, 16)
    parent = result.extra["parent"]
    assert len(parent) == 31 and parent[-1] == -1


def test_budget_goes_where_the_game_is():
    """Segments 3..5 do not matter: at a small budget no item on their side is expanded."""
    problem = game_problem(lambda z: torch.tanh(2 * z[:, :3].prod(1, keepdim=True) + z[:, :1]), strips([1] * 6))
    tree = Hierarchy.from_merges([(0, 1), (3, 4), (2, 6), (5, 7), (8, 9)])  # ((0, 1), 2), ((3, 4), 5)
    result = run_owen(problem, tree, samples=10)
    assert set(result.extra["expanded"]) == {6, 8, 10}  # the root, (0, 1, 2) and (0, 1)
    np.testing.assert_allclose(result.scores[0, 3:], 0.0, atol=1e-15)


def test_same_seed_same_numbers_and_batch_size_does_not_matter():
    runs = []
    for batch_size, seed in ((16, 0), (16, 0), (1, 0), (7, 0), (64, 0)):
        problem = make_problem(Nonlinear().double(), n_segments=16, targets=(0, 1), dtype=torch.float64, batch_size=batch_size)
        params = build_params(ENGINE, {"samples": 90})
        runs.append(ENGINE.run(problem, params, torch.Generator().manual_seed(seed)))
    assert np.array_equal(runs[0].scores, runs[1].scores) and runs[0].extra == runs[1].extra
    for other in runs[2:]:
        np.testing.assert_allclose(other.scores, runs[0].scores, atol=1e-12, rtol=0)
        assert other.extra["expanded"] == runs[0].extra["expanded"]


def test_samples_below_three_is_an_option_error():
    with pytest.raises(OptionError, match="samples"):
        build_params(ENGINE, {"samples": 2})
    with pytest.raises(OptionError, match="hierarchy"):
        build_params(ENGINE, {"hierarchy": "kd"})


# --- hierarchies ----------------------------------------------------------------------------------

def smooth_image(seed: int = 0, h: int = 24, w: int = 32) -> np.ndarray:
    """(H, W, 3) image of four flat quadrants plus a little noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3))
    img[: h // 2, : w // 2] = (1, 0, 0)
    img[: h // 2, w // 2:] = (0, 1, 0)
    img[h // 2:, : w // 2] = (0, 0, 1)
    return img + 0.02 * rng.random((h, w, 3))


def label_maps() -> dict[str, np.ndarray]:
    grid = grid_labels((24, 32), 16)
    missing = np.where(grid >= 5, grid + 1, grid)  # id 5 has no pixels: disconnected in the graph
    split = grid.copy()
    split[:, :4] = grid.max()  # the last segment also owns a strip on the far side
    return {
        "slic": segment(smooth_image(), "slic", n_segments=30).labels,
        "grid": grid,
        "empty-id": missing,
        "split-segment": np.unique(split, return_inverse=True)[1].reshape(split.shape),
    }


@pytest.mark.parametrize("algorithm", ["rag", "axis"])
@pytest.mark.parametrize("name", ["slic", "grid", "empty-id", "split-segment"])
def test_hierarchy_is_a_tree_over_exactly_the_segments(algorithm, name):
    labels = label_maps()[name]
    m = int(labels.max()) + 1
    tree = build_hierarchy(labels, smooth_image().transpose(2, 0, 1), algorithm)
    assert_tree(tree, m)
    assert tree.algorithm == algorithm
    assert tree.depth[:m].max() <= 2 * math.ceil(math.log2(m)) + 1  # balanced enough for O(M²) Owen values


def test_axis_halves_a_grid_into_quadrants_and_is_log_depth():
    rows, cols = np.indices((16, 16))
    labels = rows // 4 * 4 + cols // 4  # 4 x 4 cells, ids row-major
    tree = build_hierarchy(labels, np.zeros((1, 16, 16)), "axis")
    assert (tree.depth[:16] == 4).all()
    quarters = {frozenset(np.flatnonzero(tree.members[n]).tolist()) for n in range(16, 31) if tree.depth[n] == 2}
    assert quarters == {frozenset({0, 1, 4, 5}), frozenset({2, 3, 6, 7}), frozenset({8, 9, 12, 13}), frozenset({10, 11, 14, 15})}


@pytest.mark.parametrize("name", ["slic", "grid", "split-segment"])
def test_rag_merges_only_touching_regions(name):
    labels = label_maps()[name]
    tree = build_hierarchy(labels, smooth_image().transpose(2, 0, 1), "rag")
    adjacent = segment_adjacency(labels, tree.n_leaves)
    for node in range(tree.n_leaves, tree.n_nodes):
        left, right = tree.children[node]
        assert adjacent[np.ix_(tree.members[left], tree.members[right])].any()


def test_rag_groups_similar_colours_first():
    """Four flat quadrants on a 4 x 4 grid: each quadrant's four cells form one subtree."""
    rows, cols = np.indices((24, 32))
    labels = rows // 6 * 4 + cols // 8  # quadrants are 2 x 2 blocks of cells
    tree = build_hierarchy(labels, smooth_image().transpose(2, 0, 1), "rag")
    subtrees = {frozenset(np.flatnonzero(tree.members[n]).tolist()) for n in range(tree.n_nodes)}
    for first in (0, 2, 8, 10):
        assert frozenset({first, first + 1, first + 4, first + 5}) in subtrees


def test_single_segment():
    problem = game_problem(lambda z: 3 * z, strips([5]))
    result = run_owen(problem, Hierarchy.from_merges(np.zeros((0, 2))), samples=3)
    np.testing.assert_allclose(result.scores, [[3.0]])
    assert result.extra["coalitions"] == 0 and result.extra["exact"]
