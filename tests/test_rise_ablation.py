"""RISE against a slow reference with the same masks; mask statistics; ablation's exact definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain_cli.core import compose_segments
from explain_cli.engines import build_params, get_engine
from explain_cli.engines.rise import iterate_masks, plan_masks, render_masks
from tests.conftest import make_linear
from tests.helpers import make_problem


class Region(torch.nn.Module):
    """Reads only rows 2..5 × cols 9..13 of channel 0: its score is that region's mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x[:, 0, 2:6, 9:14].mean(dim=(1, 2))
        return torch.stack([r, 1 - r], dim=1)


def run_engine(name, problem, seed=0, **values):
    engine = get_engine(name)
    return engine.run(problem, build_params(engine, values), torch.Generator().manual_seed(seed))


def test_rise_equals_slow_reference_with_same_masks():
    model = make_linear().double()
    problem = make_problem(model, output="probs", dtype=torch.float64, batch_size=7)
    n, grid, p1 = 50, 4, 0.4
    result = run_engine("rise", problem, seed=3, masks=n, grid=grid, p1=p1)
    plan = plan_masks(n, (16, 16), grid, p1, torch.Generator().manual_seed(3))
    expected = torch.zeros(3, 16, 16, dtype=torch.float64)
    for i in range(n):  # one mask at a time, straight from the formula
        mask = render_masks(plan, i, i + 1, torch.device("cpu"))[0].double()
        xi = problem.x * mask + problem.baseline * (1 - mask)
        f = torch.softmax(model(xi[None]), dim=1)[0]
        expected += f[:, None, None] * mask
    expected /= n * p1
    np.testing.assert_allclose(result.pixel_maps, expected.numpy(), rtol=1e-5, atol=1e-7)
    assert problem.evaluator.evaluations == n + 2


def test_masks_mean_smooth_shifted_and_batch_independent():
    plan = plan_masks(3000, (40, 40), 5, 0.3, torch.Generator().manual_seed(0))
    masks = torch.cat(list(iterate_masks(plan, 256, torch.device("cpu"))))
    assert masks.shape == (3000, 40, 40)
    assert abs(float(masks.mean()) - 0.3) < 0.01
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    # smooth: neighbouring pixels differ by at most one cell's slope (1 / cell = 1/8)
    assert float((masks[:, :, 1:] - masks[:, :, :-1]).abs().max()) <= 1 / 8 + 1e-6
    # not binary: bilinear upsampling gives intermediate values
    assert ((masks > 0.05) & (masks < 0.95)).float().mean() > 0.2
    # shifted: the same grid with different shifts gives different windows
    assert len(set(plan.shifts[:, 0].tolist())) == 8
    again = torch.cat(list(iterate_masks(plan, 999, torch.device("cpu"))))
    assert torch.equal(masks, again)


@pytest.mark.parametrize("shape,grid", [((40, 40), 5), ((37, 52), 7), ((16, 16), 4)])
def test_masks_equal_upsample_then_crop(shape, grid):
    """The separable construction equals the paper's: bilinear upsampling to (s+1)·cell, then a shifted crop."""
    import torch.nn.functional as F

    plan = plan_masks(20, shape, grid, 0.5, torch.Generator().manual_seed(1))
    fast = render_masks(plan, 0, 20, torch.device("cpu"))
    up = ((grid + 1) * plan.cell[0], (grid + 1) * plan.cell[1])
    big = F.interpolate(plan.grids[:, None], size=up, mode="bilinear", align_corners=False)[:, 0]
    for i in range(20):
        dy, dx = plan.shifts[i].tolist()
        torch.testing.assert_close(fast[i], big[i, dy : dy + shape[0], dx : dx + shape[1]], atol=1e-6, rtol=0)


def test_rise_maximum_lies_in_the_region_the_model_reads():
    problem = make_problem(Region(), output="logits", targets=(0,))
    problem.x[:] = 1.0
    problem.baseline.zero_()
    result = run_engine("rise", problem, masks=1500, grid=4, p1=0.5)
    sal = result.pixel_maps[0]
    r, c = np.unravel_index(np.argmax(sal), sal.shape)
    assert 2 <= r < 6 and 9 <= c < 14, (r, c)


def test_rise_memory_independent_from_n_is_streamed():
    """The model sees batches of at most batch_size masks, and no batch ever holds all N masks."""
    problem = make_problem(make_linear(), batch_size=16)
    sizes: list[int] = []
    model = problem.evaluator.model

    def spy(inputs):  # the evaluator calls the model: record every batch it composes
        sizes.append(inputs.shape[0])
        return model(inputs)

    problem.evaluator.model = spy
    run_engine("rise", problem, masks=100)
    mask_batches = sizes[1:]  # the first call is f(baseline)
    assert sum(mask_batches) == 100
    assert max(mask_batches) == 16 and len(mask_batches) == 7


def test_ablation_is_exactly_the_difference():
    model = make_linear().double()  # float64, so batching cannot change the last bits
    problem = make_problem(model, n_segments=7, dtype=torch.float64)
    result = run_engine("ablation", problem)
    for g in range(7):
        z = torch.ones(1, 7)
        z[0, g] = 0
        ablated = model(compose_segments(problem.x, problem.baseline, problem.segments, z.double()))[0]
        np.testing.assert_allclose(result.scores[:, g], (problem.reference - ablated).numpy(), rtol=1e-12, atol=1e-12)
    assert problem.evaluator.evaluations == 7 + 2
    again = run_engine("ablation", make_problem(model, n_segments=7, dtype=torch.float64), seed=99)
    np.testing.assert_array_equal(result.scores, again.scores)


@pytest.mark.parametrize("method", ["rise", "ablation", "kernelshap"])
def test_engines_through_cli(cli, tmp_path, method):
    from tests.conftest import SAMPLE_IMAGES, SAMPLE_MODEL

    args = ["run", SAMPLE_MODEL, SAMPLE_IMAGES[0], "--method", method, "--out", tmp_path, "--top-k", "2", "-q"]
    if method == "rise":
        args += ["--masks", "200"]
    if method == "kernelshap":
        args += ["--samples", "200"]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / f"{SAMPLE_IMAGES[0].stem}.{method}.png").exists()
