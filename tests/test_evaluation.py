"""Evaluation metrics: known answers on toy models, ROAD's definition, batch-size independence, seeds."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from explain_cli.core import Evaluator, Problem
from explain_cli.errors import ExplainError
from explain_cli.metrics.curves import (
    deletion_curve,
    insertion_curve,
    random_deletion_auc,
    random_deletion_curve,
    random_insertion_auc,
    rank_pixels,
    step_counts,
    trapezoid_auc,
)
from explain_cli.metrics.localisation import energy_in_mask, pointing_hit
from explain_cli.metrics.road import ROAD_NEIGHBOURS, road_impute
from explain_cli.metrics.sanity import randomized_copy, rank_correlation, sanity_check
from explain_cli.metrics.stability import topk_jaccard
from tests.conftest import SAMPLE_MODEL

H = W = 10
REGION = (slice(2, 4), slice(3, 8))  # 2 x 5 = 10 pixels of 100


class RegionMean(torch.nn.Module):
    """Scores [r, 1 − r] with r the mean of channel 0 over REGION: a 'probability' in [0, 1] for x in [0, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x[:, 0, REGION[0], REGION[1]].mean(dim=(1, 2))
        return torch.stack([r, 1 - r], dim=1)


def region_input() -> torch.Tensor:
    x = torch.zeros(3, H, W, dtype=torch.float64)
    x[:, REGION[0], REGION[1]] = 1.0
    return x


def perfect_map() -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.float64)
    m[REGION] = 1.0
    return m


# --------------------------------------------------------------------------- AUC and steps


def test_trapezoid_of_linear_curve_is_one_half_exactly():
    f = np.linspace(0, 1, 101)
    assert trapezoid_auc(f, f) == 0.5
    assert trapezoid_auc(f, 1 - f) == 0.5
    np.testing.assert_array_equal(trapezoid_auc(f, np.stack([f, np.ones_like(f)])), [0.5, 1.0])
    # uneven spacing is integrated on the actual fractions
    assert trapezoid_auc(np.array([0.0, 0.9, 1.0]), np.array([0.0, 0.9, 1.0])) == pytest.approx(0.5, abs=1e-15)


def test_step_counts_cover_all_pixels_with_a_short_last_step():
    np.testing.assert_array_equal(step_counts(100, 0.01), np.arange(101))
    np.testing.assert_array_equal(step_counts(10, 0.3), [0, 3, 6, 9, 10])
    with pytest.raises(ExplainError, match="step"):
        step_counts(10, 0.0)


# --------------------------------------------------------------------------- deletion / insertion


def test_deletion_with_perfect_map_and_zero_baseline_has_exact_curve():
    x, model = region_input(), RegionMean()
    curve = deletion_curve(model, x, perfect_map(), replacement="baseline", baseline=torch.zeros_like(x))
    # one pixel per step: r falls by 1/10 per region pixel, then stays 0 -> a triangle of area 0.1 · 1 / 2
    expected = np.clip(1 - np.arange(101) / 10, 0, None)
    np.testing.assert_allclose(curve.scores[0], expected, atol=1e-12)
    assert curve.auc[0] == pytest.approx(0.05, abs=1e-12)
    assert curve.fractions[0] == 0 and curve.fractions[-1] == 1 and curve.evaluations == 101


@pytest.mark.parametrize("replacement", ["baseline", "blur", "road"])
def test_perfect_map_beats_random_order_on_deletion(replacement):
    x, model = region_input(), RegionMean()
    options = dict(replacement=replacement, baseline=torch.zeros_like(x), blur_sigma=2.0, seed=0)
    good = deletion_curve(model, x, perfect_map(), **options).auc[0]
    random = random_deletion_auc(model, x, repeats=3, **options)[0]
    assert random > good + 0.25, (good, random)


def test_perfect_map_beats_random_order_on_insertion():
    x, model = region_input(), RegionMean()
    good = insertion_curve(model, x, perfect_map(), blur_sigma=2.0).auc[0]
    random = random_insertion_auc(model, x, repeats=3, blur_sigma=2.0)[0]
    assert good > 0.9 and random < good - 0.3, (good, random)
    # the insertion start is the blurred input, the end the input itself
    curve = insertion_curve(model, x, perfect_map(), blur_sigma=2.0)
    assert curve.scores[0, 0] < 0.6 and curve.scores[0, -1] == pytest.approx(1.0)


def test_each_target_is_ranked_by_its_own_map():
    x, model = region_input(), RegionMean()
    rng = torch.Generator().manual_seed(5)
    maps = torch.rand(2, H, W, generator=rng, dtype=torch.float64)
    both = deletion_curve(model, x, maps, replacement="blur", seed=3)
    assert both.scores.shape == (2, 101) and both.evaluations == 202
    # target 1 alone, ranked by map 1, through a one-column score function
    alone = deletion_curve(lambda b: model(b)[:, 1:], x, maps[1], replacement="blur", seed=3)
    first = deletion_curve(lambda b: model(b)[:, :1], x, maps[0], replacement="blur", seed=3)
    np.testing.assert_allclose(both.scores[0], first.scores[0], atol=1e-12)
    # a tie-free map ranks the same whatever the generator's state, so target 1 matches exactly
    np.testing.assert_allclose(both.scores[1], alone.scores[0], atol=1e-12)


def test_evaluator_in_logit_space_is_scored_in_probabilities():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).double()
    x = torch.rand(3, H, W, dtype=torch.float64)
    saliency = torch.rand(H, W, dtype=torch.float64)
    ev = Evaluator(net, torch.device("cpu"), batch_size=9, output="logits")
    ev.select_targets([2])
    via_evaluator = deletion_curve(ev, x, saliency, replacement="blur")
    direct = deletion_curve(lambda b: torch.softmax(net(b), dim=1)[:, 2:3], x, saliency, replacement="blur")
    np.testing.assert_allclose(via_evaluator.scores, direct.scores, rtol=1e-12)
    assert ev.evaluations == 101  # counted by the evaluator, 101 steps in ceil(101 / 9) batches


@pytest.mark.parametrize("replacement", ["road", "blur"])
def test_curves_do_not_depend_on_batch_size(replacement):
    x, model = torch.rand(3, H, W, dtype=torch.float64), RegionMean()
    saliency = torch.rand(2, H, W, dtype=torch.float64)
    runs = [deletion_curve(model, x, saliency, replacement=replacement, batch_size=b, seed=4) for b in (1, 7, 200)]
    runs_ins = [insertion_curve(model, x, saliency, batch_size=b, seed=4) for b in (1, 7, 200)]
    for other, other_ins in zip(runs[1:], runs_ins[1:]):
        np.testing.assert_allclose(other.scores, runs[0].scores, rtol=0, atol=1e-12)
        np.testing.assert_allclose(other_ins.scores, runs_ins[0].scores, rtol=0, atol=1e-12)


def test_seeded_determinism_and_seeds_matter():
    x, model = torch.rand(3, H, W, dtype=torch.float64), RegionMean()
    plateau = torch.zeros(H, W, dtype=torch.float64)
    plateau[:5] = 1.0  # ties everywhere: the order inside each half comes from the seed
    a = deletion_curve(model, x, plateau, seed=1)
    b = deletion_curve(model, x, plateau, seed=1)
    c = deletion_curve(model, x, plateau, seed=2)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert not np.allclose(a.scores, c.scores)
    r1, r2 = random_deletion_curve(model, x, seed=7), random_deletion_curve(model, x, seed=7)
    np.testing.assert_array_equal(r1.scores, r2.scores)
    assert not np.allclose(r1.scores, random_deletion_curve(model, x, seed=8).scores)


def test_rank_pixels_puts_largest_first_and_breaks_ties_by_seed():
    s = torch.tensor([[0.0, 3.0], [1.0, 3.0]])
    orders = {tuple(rank_pixels(s, torch.Generator().manual_seed(i)).tolist()) for i in range(20)}
    assert orders == {(1, 3, 2, 0), (3, 1, 2, 0)}


def test_bad_inputs_give_fixable_errors():
    x, model = region_input(), RegionMean()
    with pytest.raises(ExplainError, match="model's resolution 10x10"):
        deletion_curve(model, x, torch.zeros(20, 20))
    nan_map = perfect_map()
    nan_map[0, 0] = float("nan")
    with pytest.raises(ExplainError, match="NaN"):
        insertion_curve(model, x, nan_map)
    with pytest.raises(ExplainError, match="did you mean road"):
        deletion_curve(model, x, perfect_map(), replacement="raod")
    with pytest.raises(ExplainError, match="baseline"):
        deletion_curve(model, x, perfect_map(), replacement="baseline")
    with pytest.raises(ExplainError, match="3 saliency maps but the score function returns 2"):
        deletion_curve(model, x, torch.rand(3, H, W))


# --------------------------------------------------------------------------- ROAD imputation


def test_road_solves_the_weighted_mean_equations():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((2, 7, 8)))
    deleted = rng.random((7, 8)) < 0.5
    deleted[0, 0] = deleted[6, 7] = True  # corners: only 3 neighbours inside the image
    before = x.clone()
    out = road_impute(x, deleted, noise=0.0).numpy()
    torch.testing.assert_close(x, before)  # the caller's input is not written
    np.testing.assert_array_equal(out[:, ~deleted], x.numpy()[:, ~deleted])
    for y, xx in zip(*np.nonzero(deleted)):  # straight from the definition, one pixel at a time
        total, weights = np.zeros(2), 0.0
        for dy, dx, w in ROAD_NEIGHBOURS:
            if 0 <= y + dy < 7 and 0 <= xx + dx < 8:
                total += w * out[:, y + dy, xx + dx]
                weights += w
        np.testing.assert_allclose(out[:, y, xx], total / weights, atol=1e-7)


def test_road_reproduces_a_linear_ramp_and_fills_everything_deleted():
    yy, xx = np.mgrid[0:9, 0:9].astype(np.float64)
    ramp = torch.from_numpy(np.stack([0.3 * yy - 0.2 * xx + 1.0]))
    deleted = np.zeros((9, 9), bool)
    deleted[3:6, 2:7] = True
    np.testing.assert_allclose(road_impute(ramp, deleted, noise=0.0).numpy(), ramp.numpy(), atol=1e-7)
    everything = road_impute(ramp, np.ones((9, 9), bool), noise=0.0).numpy()
    np.testing.assert_allclose(everything, ramp.mean().item(), atol=1e-7)


def test_road_noise_is_seeded_and_only_on_deleted_pixels():
    x = torch.zeros(3, 30, 30, dtype=torch.float64)
    deleted = np.zeros((30, 30), bool)
    deleted[5:25, 5:25] = True
    a = road_impute(x, deleted, noise=0.1, generator=torch.Generator().manual_seed(0))
    b = road_impute(x, deleted, noise=0.1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert a[:, ~torch.from_numpy(deleted)].abs().max() == 0
    assert a[:, torch.from_numpy(deleted)].std().item() == pytest.approx(0.1, rel=0.1)


# --------------------------------------------------------------------------- localisation and stability


def square_mask() -> np.ndarray:
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[5:10, 5:10] = 255
    return mask


@pytest.mark.parametrize(
    "peak, tolerance, hit",
    [((7, 7), 0, True), ((5, 13), 4, True), ((5, 13), 3.9, False), ((12, 12), 4.25, True), ((12, 12), 4.2, False)],
)
def test_pointing_hit_within_tolerance_of_the_mask(peak, tolerance, hit):
    saliency = np.random.default_rng(0).random((20, 20)) * 0.5
    saliency[peak] = 1.0  # nearest object pixel: (5, 9) at distance 4, or (9, 9) at √18 ≈ 4.243
    assert pointing_hit(saliency, square_mask(), tolerance) is hit


def test_pointing_on_a_constant_map_is_a_miss_and_nan_is_ignored():
    assert pointing_hit(np.ones((20, 20)), square_mask(), 100) is False
    saliency = np.zeros((20, 20))
    saliency[7, 7] = 1.0
    saliency[0, 0] = np.nan
    assert pointing_hit(saliency, square_mask() > 0, 0) is True


def test_energy_in_mask_exact():
    saliency = np.full((20, 20), -1.0)  # negative evidence does not count
    saliency[5:10, 5:10] = 1.0  # 25 inside
    saliency[15, 15:20] = 2.0  # 10 outside
    assert energy_in_mask(saliency, square_mask()) == pytest.approx(25 / 35, abs=1e-15)
    assert np.isnan(energy_in_mask(-np.ones((20, 20)), square_mask()))
    with pytest.raises(ExplainError, match="same|one size"):
        energy_in_mask(np.ones((10, 10)), square_mask())


def test_topk_jaccard_exact():
    runs = [np.array([4.0, 3, 2, 1]), np.array([4.0, 3, 1, 2]), np.array([1.0, 2, 3, 4])]
    assert topk_jaccard(runs, 2) == pytest.approx(1 / 3)  # pairs: 1, 0, 0
    assert topk_jaccard(runs[:2], 3) == pytest.approx(2 / 4)  # {0,1,2} vs {0,1,3}
    with pytest.raises(ExplainError):
        topk_jaccard(runs[:1], 2)


def test_rank_correlation_known_values():
    a = np.arange(10.0)
    assert rank_correlation(a, a**3) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(a - 4.5, -(a - 4.5), absolute=True) == pytest.approx(1.0)
    assert rank_correlation(a, np.ones(10)) == 0.0


# --------------------------------------------------------------------------- sanity check


@pytest.fixture(scope="module")
def sample_model():
    return torch.jit.load(str(SAMPLE_MODEL), map_location="cpu")


@pytest.fixture(scope="module")
def sample_input() -> torch.Tensor:
    from PIL import Image

    from tests.conftest import SAMPLE_IMAGES

    path = next(p for p in SAMPLE_IMAGES if p.stem == "cross_circle")
    pixels = np.asarray(Image.open(path).convert("RGB").resize((64, 64), Image.BILINEAR), dtype=np.float32) / 255
    return (torch.from_numpy(pixels).permute(2, 0, 1) - 0.5) / 0.25  # the model's embedded mean/std


def ablation_map(module, x: torch.Tensor, target: int) -> np.ndarray:
    """Ablation over an 8x8 grid through the real evaluator and engine: (M,) scores for ``target``."""
    from explain_cli.engines import build_params, get_engine
    from explain_cli.segmentation import grid_labels

    ev = Evaluator(module, torch.device("cpu"), batch_size=65, output="probs")
    reference = ev(x[None])[0, [target]].cpu()
    ev.select_targets([target])
    problem = Problem(x=x, baseline=torch.zeros_like(x), segments=torch.from_numpy(grid_labels((64, 64), 64)).long(),
                      evaluator=ev, reference=reference)
    engine = get_engine("ablation")
    return engine.run(problem, build_params(engine, {}), torch.Generator().manual_seed(0)).scores[0]


def test_sanity_check_flags_a_model_independent_explainer(sample_model, sample_input):
    grey = sample_input.mean(0).numpy()
    edges = np.hypot(*np.gradient(grey))  # an edge detector: the same map whatever the model
    result = sanity_check(lambda model: edges, sample_model, seed=0)
    assert result.correlation == pytest.approx(1.0) and not result.passed


def test_sanity_check_passes_ablation_on_the_sample_model(sample_model, sample_input):
    target = int(sample_model(sample_input[None]).argmax())
    result = sanity_check(lambda model: ablation_map(model, sample_input, target), sample_model, seed=0)
    assert result.passed and abs(result.correlation) < 0.3, result


def test_randomized_copy_is_deterministic_and_leaves_the_model_alone(sample_model):
    before = {k: v.clone() for k, v in sample_model.state_dict().items()}
    a, b, c = (randomized_copy(sample_model, seed=s) for s in (0, 0, 1))
    for name, value in sample_model.state_dict().items():
        torch.testing.assert_close(value, before[name])
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        torch.testing.assert_close(pa, pb)
        if pa.dim() >= 2:
            assert not torch.equal(pa, pc) and not torch.equal(pa, dict(sample_model.named_parameters())[name])
    # the copy still responds to its input (a re-initialisation that zeroes a layer would pass any sanity check)
    out = a(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(out).all() and (out[0] - out[1]).abs().max() > 1e-3
    eager = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    eager.eval()
    eager[1].running_mean.fill_(5.0)
    copy = randomized_copy(eager, seed=0)
    assert eager[1].running_mean[0] == 5.0 and copy[1].running_mean.abs().max() == 0
    assert not torch.equal(copy[0].weight, eager[0].weight)


# --------------------------------------------------------------------------- PNG


def test_curves_png_is_a_two_panel_image_of_the_requested_height():
    from PIL import Image

    from explain_cli.render.curves import render_curves_image
    from explain_cli.render.layout import to_png

    x, model = region_input(), RegionMean()
    curves = [deletion_curve(model, x, perfect_map(), replacement="blur"), random_deletion_curve(model, x),
              insertion_curve(model, x, perfect_map())]
    png = to_png(render_curves_image(curves, "toy", labels=["r", "1-r"], height=240))
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.height == 240 and image.width > 2 * 240
    pixels = np.asarray(image.convert("RGB"))
    assert (np.abs(pixels.astype(int) - [0, 114, 178]).sum(axis=2) < 40).sum() > 100  # target 0's curve is drawn
    with pytest.raises(ExplainError):
        render_curves_image([], "nothing")
