"""The segmentation task: exact answers through the core, the region's resampling, default targets, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain_cli.core import Evaluator, Problem
from explain_cli.engines import build_params, get_engine
from explain_cli.errors import ExplainError, OptionError
from explain_cli.preprocess import Geometry, Preprocess
from explain_cli.tasks import RegionTarget, SegmentationTask, TargetRequest, get_task, reference_targets
from explain_cli.tasks.regions import resample_nearest

SIZE = (32, 32)
STRIDE = 4  # the segmenter's map is 8 x 8: coarser than its input, like an FCN
LABELS = ["background", "cat", "dog", "bird"]


class LinearSegmenter(torch.nn.Module):
    """Class maps linear in the pixels: Y[c] = conv(x, W[c], stride 4) + b[c], returned as torchvision does."""

    def __init__(self, n_classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(n_classes, 3, STRIDE, STRIDE, generator=g, dtype=torch.float64)
        self.bias = torch.randn(n_classes, generator=g, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> dict:
        out = torch.nn.functional.conv2d(x.double(), self.weight, self.bias, stride=STRIDE)
        return {"out": out, "aux": out * 0}


class FixedMap(torch.nn.Module):
    """A map that ignores the input except for a small linear term: its argmax is ``classes`` (H', W')."""

    def __init__(self, classes: torch.Tensor, n_classes: int = 4) -> None:
        super().__init__()
        self.logits = torch.nn.functional.one_hot(classes, n_classes).permute(2, 0, 1).double() * 4.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tilt = x.double().mean(dim=(1, 2, 3))[:, None, None, None]
        return self.logits[None] + tilt * torch.arange(self.logits.shape[0], dtype=torch.float64)[None, :, None, None]


def grid_segments(h: int = 32, w: int = 32, cell: int = 8) -> torch.Tensor:
    return ((torch.arange(h)[:, None] // cell) * (w // cell) + torch.arange(w)[None, :] // cell).long()


def picture(seed: int = 1, size=SIZE) -> torch.Tensor:
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def rectangle(size, rows, cols, value=1) -> np.ndarray:
    mask = np.zeros(size, dtype=np.int64)
    mask[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = value
    return mask


def cells(rows, cols, size=(8, 8)) -> np.ndarray:
    return rectangle(size, rows, cols).astype(bool)


def make_problem(model, task, *, x=None, target=("auto",), geometry=None, batch_size=16, labels=LABELS):
    x = picture() if x is None else x
    evaluator = Evaluator(model, torch.device("cpu"), batch_size=batch_size)
    request = TargetRequest(target=target, labels=labels, size=SIZE, geometry=geometry)
    targets, reference = reference_targets(task, evaluator, x[None], request)
    problem = Problem(x=x, baseline=torch.zeros_like(x), segments=grid_segments(), evaluator=evaluator,
                      reference=reference[0])
    return problem, targets


def run_engine(name, problem, seed=0, **values):
    engine = get_engine(name)
    return engine.run(problem, build_params(engine, values), torch.Generator().manual_seed(seed))


def exact_contributions(model, c, grid, x, baseline, segments):
    """φ_g = Σ_{p ∈ g} ∂s/∂x_p · (x_p − b_p), with s the mean of class c's logit over the cells of ``grid``.

    Cell (i, j) of the map reads the 4 x 4 patch at (4i, 4j), so ∂s/∂x over that patch is W[c] / |R'|.
    """
    grad = torch.zeros(3, *SIZE, dtype=torch.float64)
    n = int(grid.sum())
    for i, j in zip(*np.nonzero(grid)):
        grad[:, STRIDE * i:STRIDE * (i + 1), STRIDE * j:STRIDE * (j + 1)] += model.weight[c] / n
    delta = (grad * (x - baseline)).sum(dim=0)
    m = int(segments.max()) + 1
    return np.array([float(delta[segments == g].sum()) for g in range(m)])


# ------------------------------------------------------------------ known answers through the core


# Model-frame region rows 5..17, cols 3..22. A cell is in R' when the pixel under its centre
# (4i + 2, 4j + 2) is: rows i = 1..3 (6, 10, 14), cols j = 1..5 (6 .. 22). A top-left rule (4i)
# would give rows 2..4 instead, so the known answer pins the rule down.
MODEL_REGION = rectangle(SIZE, (5, 17), (3, 22))
MODEL_CELLS = cells((1, 3), (1, 5))


@pytest.mark.parametrize("method", ["kernelshap", "ablation"])
def test_linear_segmenter_gives_exact_contributions_to_the_region_mean(method):
    model = LinearSegmenter()
    problem, targets = make_problem(model, SegmentationTask("logits", region=MODEL_REGION), target=("dog",))
    (target,) = targets
    assert (target.index, target.label, target.source, target.region) == (2, "dog", "region", 1)
    np.testing.assert_array_equal(target.grid, MODEL_CELLS)
    assert target.cells == 15 and target.output_size == (8, 8)
    logits = model(problem.x[None])["out"][0, 2]
    assert target.score == pytest.approx(float(logits[torch.from_numpy(MODEL_CELLS)].mean()), abs=1e-12)
    result = run_engine(method, problem, **({"samples": 300} if method == "kernelshap" else {}))
    expected = exact_contributions(model, 2, MODEL_CELLS, problem.x, problem.baseline, problem.segments)
    np.testing.assert_allclose(result.scores[0], expected, rtol=0, atol=1e-9)
    assert (expected == 0).sum() > 0 and (expected != 0).sum() >= 6  # R' spans several segments, not all
    assert result.scores.sum() == pytest.approx(problem.reference[0].item() - result.baseline_score[0], abs=1e-9)


def test_region_at_the_original_resolution_is_carried_through_the_resize():
    # Original 48 x 48 -> size 32 x 32 (scale 1.5): model pixel q takes original floor((q + 1/2) · 1.5).
    # Original rows 5..30 -> model rows 3..20 -> cells 1..4 (centres 6..18); cols 4..33 -> 3..22 -> cells 1..5.
    # (A top-left rule would give model rows 4..20 and cells 1..5.)
    geometry = Geometry.plan((48, 48), Preprocess("custom", size=SIZE))
    region = rectangle((48, 48), (5, 30), (4, 33))
    model = LinearSegmenter(seed=3)
    problem, (target,) = make_problem(model, SegmentationTask("logits", region=region), target=("1",),
                                      geometry=geometry)
    np.testing.assert_array_equal(target.mask, rectangle(SIZE, (3, 20), (3, 22)).astype(bool))
    np.testing.assert_array_equal(target.grid, cells((1, 4), (1, 5)))
    result = run_engine("kernelshap", problem, samples=300)
    expected = exact_contributions(model, 1, target.grid, problem.x, problem.baseline, problem.segments)
    np.testing.assert_allclose(result.scores[0], expected, rtol=0, atol=1e-9)
    # the JSON speaks in the user's frame: the region as drawn on the 48 x 48 image
    region_json = target.describe()["region"]
    from explain_cli.rle import rle_decode

    assert np.array_equal(rle_decode(region_json.pop("rle")), region.astype(bool))  # its exact shape, for compare
    assert region_json == {"source": "region", "id": 1, "area": 26 * 30, "fraction": round(26 * 30 / 48 ** 2, 6),
                           "bbox": [4, 5, 34, 31], "frame": "original", "cells": 20, "output_size": [8, 8]}
    overlay = target.overlay()
    assert overlay["frame"] == "original" and np.array_equal(overlay["region"], region.astype(bool))


def test_probs_are_the_region_mean_of_the_softmax_and_one_class_maps_use_a_sigmoid():
    model = LinearSegmenter(seed=5)
    x = picture(2)
    task = SegmentationTask(region=MODEL_REGION)
    _, (target,) = make_problem(model, task, x=x, target=("cat",))
    probs = torch.softmax(model(x[None])["out"][0], dim=0)[1]
    assert target.score == pytest.approx(float(probs[torch.from_numpy(MODEL_CELLS)].mean()), abs=1e-12)
    one = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(task.decode(one, SIZE), torch.sigmoid(one))


def test_head_scores_equal_score_and_f_x_costs_one_evaluation():
    model = LinearSegmenter(seed=2)
    region = MODEL_REGION + rectangle(SIZE, (20, 30), (20, 30), value=2)  # a label map: two regions
    problem, targets = make_problem(model, SegmentationTask(region=region), target=("auto", "bird"))
    assert [(t.region, t.index) for t in targets][-1] == (2, 3) and len({t.region for t in targets}) == 2
    assert problem.evaluator.evaluations == 1
    assert [t.score for t in targets] == problem.reference.tolist()
    batch = torch.stack([picture(s) for s in (3, 4, 5)])
    task = SegmentationTask(region=region)
    by_head = task.scorer(targets, SIZE)(model(batch))
    torch.testing.assert_close(by_head, task.score(task.decode(model(batch), SIZE), targets, SIZE), rtol=0, atol=0)
    for k, t in enumerate(targets):  # against a plain per-target loop
        probs = torch.softmax(model(batch)["out"], dim=1)[:, t.index]
        torch.testing.assert_close(by_head[:, k], probs[:, torch.from_numpy(t.grid)].mean(dim=1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 7])
def test_results_do_not_depend_on_batch_size(batch_size):
    model = LinearSegmenter(seed=4)
    runs = []
    for size in (batch_size, 64):
        problem, _ = make_problem(model, SegmentationTask(region=MODEL_REGION), batch_size=size)
        runs.append(run_engine("kernelshap", problem, seed=3, samples=80).scores)
    np.testing.assert_allclose(runs[0], runs[1], rtol=0, atol=1e-12)


# ------------------------------------------------------------------ default targets and resampling


def argmax_map() -> torch.Tensor:
    """8 x 8 map: dog on 20 cells, cat on 10, bird on 1 (1.6 %), background elsewhere."""
    m = torch.zeros(8, 8, dtype=torch.long)
    m[0:4, 0:5] = 2
    m[5:7, 1:6] = 1
    m[7, 7] = 3
    return m


@pytest.mark.parametrize("options, top_k, target, expected", [
    ({}, None, ("auto",), [2, 1]),  # by area, background and the 1.6 % bird left out
    ({}, 1, ("auto",), [2]),
    ({"min_area": 0.01}, None, ("auto",), [2, 1, 3]),
    ({}, None, ("bird",), [3]),  # a named class gets its own region, whatever its area
])
def test_default_targets_are_the_predicted_classes_by_area(options, top_k, target, expected):
    task = SegmentationTask(**options)
    fx = task.decode(FixedMap(argmax_map())(picture()[None]), SIZE)
    targets = task.targets(fx, TargetRequest(target=target, top_k=top_k, labels=LABELS, size=SIZE))
    assert [t.index for t in targets] == expected
    for t in targets:
        np.testing.assert_array_equal(t.grid, (argmax_map() == t.index).numpy())
        assert t.source == "predicted" and t.cells == int((argmax_map() == t.index).sum())
        assert t.fraction == pytest.approx(t.cells / 64) and t.frame == "model"
    dog = targets[0] if expected[0] == 2 else None
    if dog is not None:
        assert dog.bbox == (0, 0, 20, 16)  # cells 0..4 x 0..3, 4 pixels each, in model pixels
        assert dog.caption().startswith("dog over its region (31%)")


def test_without_a_background_label_every_class_counts_and_a_region_picks_its_top_class():
    task = SegmentationTask()
    fx = task.decode(FixedMap(argmax_map())(picture()[None]), SIZE)
    targets = task.targets(fx, TargetRequest(labels=["sky", "cat", "dog", "bird"], size=SIZE))
    assert [t.index for t in targets] == [0, 2, 1]  # sky covers 33 cells
    region = np.zeros(SIZE, dtype=bool)
    region[20:28, 4:24] = True  # cells rows 5..6, cols 1..5: all cat
    task = SegmentationTask(region=region)
    (target,) = task.targets(fx, TargetRequest(labels=LABELS, size=SIZE))
    assert target.index == 1 and target.cells == 10
    top2 = task.targets(fx, TargetRequest(labels=LABELS, size=SIZE, top_k=2))
    assert [t.index for t in top2][0] == 1 and len(top2) == 2


def test_predicted_regions_are_drawn_back_on_the_original_image():
    geometry = Geometry.plan((64, 64), Preprocess("custom", size=SIZE))
    task = SegmentationTask()
    fx = task.decode(FixedMap(argmax_map())(picture()[None]), SIZE)
    dog = task.targets(fx, TargetRequest(labels=LABELS, size=SIZE, geometry=geometry))[0]
    assert dog.frame == "original" and dog.mask_original.shape == (64, 64)
    assert dog.bbox == (0, 0, 40, 32) and dog.area == 20 * 8 * 8


def test_nearest_resampling_takes_the_pixel_under_each_cell_centre():
    mask = np.zeros((8, 8), dtype=bool)
    mask[2, 6] = True  # the centre pixel of cell (0, 1) at stride 4 ...
    np.testing.assert_array_equal(np.argwhere(resample_nearest(mask, (2, 2))), [[0, 1]])
    mask[0, 4] = True  # ... while its top-left pixel alone would not be enough
    mask[2, 6] = False
    assert not resample_nearest(mask, (2, 2)).any()
    up = resample_nearest(np.eye(2, dtype=bool), (4, 6))  # upsampling: each pixel reads the cell it lies in
    np.testing.assert_array_equal(up, np.kron(np.eye(2), np.ones((2, 3))).astype(bool))


# ------------------------------------------------------------------ bad input: one line each


@pytest.mark.parametrize("region, match", [
    (np.zeros(SIZE), "region is empty"),
    (np.full(SIZE, 0.5), "fractional"),
    (-np.ones(SIZE), "negative ids"),
    (np.ones((2, 3, 4)), "2-D mask"),
    ("mask.png", "is a path: the front door reads the file"),
])
def test_malformed_regions_are_refused_when_the_task_is_built(region, match):
    with pytest.raises(OptionError, match=match) as info:
        SegmentationTask(region=region)
    assert "\n" not in str(info.value) and info.value.option == "region"


@pytest.mark.parametrize("region, geometry, match", [
    (np.ones((30, 32)), None, "is 30x32 \\(height x width\\) but the model input is 32x32"),
    (np.ones((32, 32)), Geometry.plan((48, 40), Preprocess("c", size=SIZE)), "but the input image is 48x40"),
    (rectangle((64, 64), (0, 63), (0, 3)), Geometry.plan((64, 64), Preprocess("c", resize=32, crop=(32, 24))),
     "outside the part of the image the model sees"),
    (rectangle(SIZE, (0, 1), (0, 1)), None, "covers no cell of the model's 8x8 output map"),
])
def test_regions_that_do_not_fit_the_input_or_the_map_are_clear_errors(region, geometry, match):
    task = SegmentationTask(region=region)
    fx = task.decode(LinearSegmenter()(picture()[None]), SIZE)
    with pytest.raises(OptionError, match=match) as info:
        task.targets(fx, TargetRequest(size=SIZE, geometry=geometry))
    assert "\n" not in str(info.value)


def test_bad_outputs_options_and_targets_are_one_line_errors():
    task = SegmentationTask()
    for raw, match in ((torch.zeros(2, 3), "not \\(batch, classes, height, width\\)"),
                       ({"aux": torch.zeros(1, 3, 4, 4), "x": torch.zeros(1)}, "dict with keys \\['aux', 'x'\\]"),
                       ([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}],
                        "use task detection"),
                       ([torch.zeros(1, 3)], "not \\(batch, classes, height, width\\)")):
        with pytest.raises(ExplainError, match=match):
            task.decode(raw, SIZE)
    one = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    for raw in ({"logits": one, "hidden": one * 0}, {"map": one}, (one, one * 0)):
        torch.testing.assert_close(task.decode(raw, SIZE), torch.softmax(one, dim=1), rtol=0, atol=0)
    with pytest.raises(OptionError, match="min_area must be a fraction"):
        SegmentationTask(min_area=0)
    with pytest.raises(OptionError, match="applies to task segmentation, not classification"):
        get_task("classification", region=MODEL_REGION)
    fx = task.decode(FixedMap(argmax_map())(picture()[None]), SIZE)
    with pytest.raises(OptionError, match="min_area is 0.5 but the largest class, dog \\(2\\), covers 0.312"):
        SegmentationTask(min_area=0.5).targets(fx, TargetRequest(labels=LABELS, size=SIZE))
    six = task.decode(FixedMap(argmax_map(), n_classes=6)(picture()[None]), SIZE)
    with pytest.raises(ExplainError, match="class 5 is predicted nowhere"):
        task.targets(six, TargetRequest(target=("5",), size=SIZE))
    with pytest.raises(OptionError, match="out of range"):
        task.targets(fx, TargetRequest(target=("9",), size=SIZE))
    with pytest.raises(OptionError, match="labels gives 3 names but the model's map has 4 classes"):
        task.targets(fx, TargetRequest(labels=LABELS[:3], size=SIZE))
    evaluator = Evaluator(LinearSegmenter(), torch.device("cpu"))
    with pytest.raises(ExplainError, match="one image at a time"):
        reference_targets(task, evaluator, torch.stack([picture(), picture(2)]), TargetRequest(size=SIZE))


def test_registry_and_params():
    task = get_task("segmentation", output="logits", region=MODEL_REGION, min_area=0.1)
    assert isinstance(task, SegmentationTask) and task.output_space == "logits"
    params = task.params()
    assert params["region"] == {"shape": [32, 32], "ids": [1]} and "nearest" in params["resampling"]
    assert RegionTarget(label=None, index=0, score=0.0).overlay()["region"] is None
