"""Permutation importance: ignored groups score exactly 0, derangements, batch CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from explain_cli.core import Evaluator, Problem
from explain_cli.engines import build_params, get_engine
from explain_cli.engines.permutation import derangement
from explain_cli.segmentation import grid_labels
from tests.helpers import assert_refused


class LeftHalf(torch.nn.Module):
    """Nonlinear in the left 8 columns, blind to the right 8."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[..., :8]
        return torch.stack([torch.tanh(left.sum((1, 2, 3)) / 50), (left**2).mean((1, 2, 3))], dim=1)


def make_batch_problem(n=5, batch_size=8):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 16, 16, generator=g)
    ev = Evaluator(LeftHalf(), torch.device("cpu"), batch_size=batch_size, output="logits")
    reference = ev(x)
    segments = torch.from_numpy(grid_labels((16, 16), 16))  # 4x4 cells of 4x4 pixels
    return Problem(x=x, baseline=torch.zeros(3, 16, 16), segments=segments, evaluator=ev, reference=reference)


def run(problem, seed=0, repeats=4):
    engine = get_engine("permutation")
    return engine.run(problem, build_params(engine, {"repeats": repeats}), torch.Generator().manual_seed(seed))


def test_ignored_groups_get_exactly_zero():
    problem = make_batch_problem()
    result = run(problem)
    right = [g for g in range(16) if g % 4 >= 2]  # columns 8..15
    left = [g for g in range(16) if g % 4 < 2]
    assert np.all(result.scores[:, right] == 0.0)
    assert np.all(result.per_example[:, :, right] == 0.0)
    assert np.all(result.std[:, right] == 0.0)
    assert np.all(np.abs(result.scores[:, left]).max(axis=1) > 0)
    assert result.per_example.shape == (5, 2, 16)
    np.testing.assert_allclose(result.scores, result.per_example.mean(axis=0), atol=1e-12)
    # N for the reference + repeats·M·N perturbations
    assert problem.evaluator.evaluations == 5 + 4 * 16 * 5


def test_batch_size_and_seed():
    a = run(make_batch_problem(batch_size=3), seed=1)
    b = run(make_batch_problem(batch_size=64), seed=1)
    c = run(make_batch_problem(), seed=2)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-7)
    assert not np.allclose(a.per_example, c.per_example)


@pytest.mark.parametrize("n", [2, 3, 7])
def test_derangement_has_no_fixed_point(n):
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        perm = derangement(n, g)
        assert sorted(perm.tolist()) == list(range(n))
        assert not bool((perm == torch.arange(n)).any())


def test_permutation_cli(cli, tmp_path):
    from tests.conftest import SAMPLE_IMAGES, SAMPLE_MODEL

    one = cli("run", SAMPLE_MODEL, SAMPLE_IMAGES[0], "--method", "permutation", "--out", tmp_path)
    assert_refused(one, "at least 2 inputs")
    result = cli("run", SAMPLE_MODEL, *SAMPLE_IMAGES, "--method", "permutation", "--repeats", "2",
                 "--out", tmp_path, "--top-k", "2", "-q")
    assert result.exit_code == 0, result.stderr
    doc = json.loads((tmp_path / "batch.permutation.json").read_text())
    assert len(doc["inputs"]) == len(SAMPLE_IMAGES)
    assert doc["segmentation"]["algorithm"] == "grid"
    for target in doc["targets"]:
        assert len(target["per_example"]) == len(SAMPLE_IMAGES)
        assert all("std" in s for s in target["segments"])
        assert target["baseline_score"] is None
    assert doc["evaluations"] == len(SAMPLE_IMAGES) * (1 + 2 * doc["segmentation"]["n_segments"])
