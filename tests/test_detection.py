"""The detection task: known answers through the core, D-RISE's similarity by hand, decoders, targets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from explain_cli.core import Evaluator, Problem
from explain_cli.engines import build_params, get_engine
from explain_cli.errors import ExplainError, OptionError
from explain_cli.tasks import DetectionTask, TargetRequest, get_task, reference_targets
from explain_cli.tasks.detection_formats import YoloSettings, decode_detections
from tests.helpers import SIZE, exact_box_contributions, grid_segments, image, make_detector

def detection_problem(model, task, *, batch_size=16, x=None, baseline=None, target=("auto",)):
    x = image() if x is None else x
    evaluator = Evaluator(model, torch.device("cpu"), batch_size=batch_size)
    targets, reference = reference_targets(task, evaluator, x[None], TargetRequest(target=target, size=SIZE))
    problem = Problem(x=x, baseline=torch.zeros_like(x) if baseline is None else baseline,
                      segments=grid_segments(), evaluator=evaluator, reference=reference[0])
    return problem, targets


def run_engine(name, problem, seed=0, **values):
    engine = get_engine(name)
    return engine.run(problem, build_params(engine, values), torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ known answers through the core


@pytest.mark.parametrize("mode, objectness", [("score", "auto"), ("objectness", "auto"), ("probs_score", "score")])
@pytest.mark.parametrize("method", ["kernelshap", "ablation"])
def test_linear_box_confidence_gives_exact_segment_contributions(mode, objectness, method):
    model = make_detector(mode)
    task = DetectionTask(objectness=objectness)
    problem, targets = detection_problem(model, task)
    values = {"samples": 300} if method == "kernelshap" else {}
    result = run_engine(method, problem, **values)
    expected = exact_box_contributions(model, problem.x, problem.baseline, problem.segments)
    assert np.abs(result.scores - expected).max() < 1e-9
    f_x = float(model.bias[0] + (model.weight[0] * problem.x).sum())
    assert targets[0].score == pytest.approx(f_x, abs=1e-12)  # IoU 1 · cos 1 · O = confidence
    # efficiency: Σφ = s(f(x)) − s(f(b))
    assert result.scores.sum() == pytest.approx(problem.reference[0].item() - result.baseline_score[0], abs=1e-9)
    assert expected[0][expected[0] == 0].size > 0 and (expected[0] > 0).sum() >= 4  # the region spans segments


def test_several_boxes_from_one_set_of_evaluations_equal_each_box_alone():
    model = make_detector("score", k=3, seed=4)
    together, targets = detection_problem(model, DetectionTask())
    assert [t.index for t in targets] == [1, 2, 3]
    all_at_once = run_engine("kernelshap", together, seed=7, samples=120)
    evaluations = together.evaluator.evaluations
    for k, target in enumerate(targets):
        alone, _ = detection_problem(model, DetectionTask(), target=(",".join(map(str, target.box)) + f",{target.index}",))
        one = run_engine("kernelshap", alone, seed=7, samples=120)
        assert alone.evaluator.evaluations == evaluations
        np.testing.assert_allclose(one.scores[0], all_at_once.scores[k], rtol=0, atol=1e-12)


# RISE sums each batch's masks in float32 (engines/rise.py), so batches group its rounding differently
@pytest.mark.parametrize("method, values, atol", [("kernelshap", {"samples": 150}, 1e-12),
                                                  ("rise", {"masks": 40, "grid": 4}, 1e-6)])
def test_results_do_not_depend_on_batch_size_and_seed_fixes_them(method, values, atol):
    model = make_detector("objectness", k=2, seed=2, shift=-20.0)  # moving boxes: a nonlinear game
    runs = {}
    for batch_size in (1, 5, 64):
        problem, _ = detection_problem(model, DetectionTask(), batch_size=batch_size)
        runs[batch_size] = run_engine(method, problem, seed=11, **values).scores
    np.testing.assert_allclose(runs[1], runs[5], rtol=0, atol=atol)
    np.testing.assert_allclose(runs[1], runs[64], rtol=0, atol=atol)
    problem, _ = detection_problem(model, DetectionTask(), batch_size=64)
    assert np.array_equal(run_engine(method, problem, seed=11, **values).scores, runs[64])
    problem, _ = detection_problem(model, DetectionTask(), batch_size=64)
    assert not np.allclose(run_engine(method, problem, seed=12, **values).scores, runs[64])


def test_reference_targets_costs_one_evaluation_and_sets_the_head():
    model = make_detector("score", k=2)
    problem, targets = detection_problem(model, DetectionTask())
    assert problem.evaluator.evaluations == 1
    again = problem.evaluator(problem.x[None])
    torch.testing.assert_close(again[0], problem.reference, rtol=0, atol=0)
    assert [t.score for t in targets] == problem.reference.tolist()


# ------------------------------------------------------------------ D-RISE's similarity by hand


def one(boxes, labels, scores=None, probs=None, objectness=None):
    d = {"boxes": torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4), "labels": torch.as_tensor(labels).long(),
         "scores": torch.as_tensor(scores if scores is not None else [0.9] * len(labels), dtype=torch.float64)}
    if probs is not None:
        d["probs"] = torch.as_tensor(probs, dtype=torch.float64)
        d["probs"] = d["probs"].reshape(1, -1) if d["probs"].dim() == 1 else d["probs"]
    if objectness is not None:
        d["objectness"] = torch.tensor(objectness, dtype=torch.float64)
    return d


def similarity(reference: dict, perturbed: list[dict], **task_options) -> torch.Tensor:
    """(B, K) box scores of the perturbed images for the reference's detections as targets."""
    task = DetectionTask(min_score=0.0, **task_options)
    targets = task.targets(task.decode([reference], SIZE), TargetRequest(size=SIZE))
    return task.scorer(targets, SIZE)(perturbed)


P = [0.6, 0.8, 0.0]


@pytest.mark.parametrize("boxes, probs, objectness, expected", [
    ([0, 0, 10, 10], P, None, 1.0),  # the same box and class vector
    ([20, 20, 30, 30], P, None, 0.0),  # disjoint
    ([5, 0, 15, 10], P, None, 1 / 3),  # shifted by half a width: IoU 50 / 150
    ([0, 0, 10, 10], [0.8, 0.6, 0.0], None, 0.96),  # cosine of (0.6, 0.8, 0) and (0.8, 0.6, 0)
    ([0, 0, 10, 10], [0.0, 0.0, 1.0], None, 0.0),  # orthogonal class vectors
    ([5, 0, 15, 10], [0.8, 0.6, 0.0], [0.5], 0.5 * 0.96 / 3),  # IoU · cos · objectness
])
def test_drise_similarity_hand_computed(boxes, probs, objectness, expected):
    reference = one([0, 0, 10, 10], [1], probs=P, objectness=None if objectness is None else [1.0])
    perturbed = one(boxes, [1], probs=probs, objectness=objectness)
    assert similarity(reference, [perturbed]).item() == pytest.approx(expected, abs=1e-12)


def test_drise_is_the_max_over_detections_and_zero_without_any():
    reference = one([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 2], probs=[P, [0.0, 0.0, 1.0]])
    images = [
        one([[5, 0, 15, 10], [0, 0, 10, 5], [20, 20, 30, 30]], [1, 1, 2], probs=[P, P, [0, 0, 1.0]]),
        one(torch.zeros(0, 4), [], probs=torch.zeros(0, 3)),
        one([[20, 20, 30, 30]], [2], probs=[[0.0, 0.6, 0.8]]),  # the second box's place, cos 0.8 with its class
    ]
    scores = similarity(reference, images)
    expected = torch.tensor([[0.5, 1.0], [0.0, 0.0], [0.0, 0.8]], dtype=torch.float64)
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-12)


def test_drise_batch_equals_each_image_alone():
    g = torch.Generator().manual_seed(0)
    def random_image(n):
        xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 20
        wh = 2 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 10
        probs = torch.rand(n, 5, generator=g, dtype=torch.float64)
        return {"boxes": torch.cat([xy, xy + wh], 1), "labels": probs.argmax(1), "scores": probs.max(1).values,
                "probs": probs}
    reference = random_image(4)
    images = [random_image(n) for n in (3, 0, 7, 1)]
    batch = similarity(reference, images)
    alone = torch.cat([similarity(reference, [d]) for d in images])
    torch.testing.assert_close(batch, alone, rtol=0, atol=1e-15)  # one matmul or several: rounding only
    assert batch.shape == (4, 4) and bool((batch[1] == 0).all())


def test_without_probs_the_class_must_match_and_the_score_weighs():
    reference = one([0, 0, 10, 10], [1], scores=[0.8])
    same = one([0, 0, 10, 10], [1], scores=[0.4])
    other = one([0, 0, 10, 10], [2], scores=[0.9])
    assert similarity(reference, [same, other]).tolist() == [[pytest.approx(0.4)], [0.0]]
    assert similarity(reference, [same], objectness="none").item() == 1.0  # D-RISE's O_j = 1, literally


def test_class_agnostic_box_counts_any_detection_by_overlap_and_confidence():
    task = DetectionTask()
    fx = task.decode([one([0, 0, 10, 10], [1], probs=[P])], SIZE)
    (target,) = task.targets(fx, TargetRequest(target=((0, 0, 10, 20),), size=SIZE))
    assert target.index is None and target.weight == "score" and target.score == pytest.approx(0.5 * 0.9)
    perturbed = one([[0, 10, 10, 20]], [2], scores=[0.6], probs=[[0.0, 0.0, 1.0]])
    assert task.scorer([target], SIZE)([perturbed]).item() == pytest.approx(0.5 * 0.6)


# ------------------------------------------------------------------ decoders


def test_scripted_tuple_and_padded_dict_decode_like_the_list():
    images = [one([[1, 2, 11, 12], [3, 3, 9, 9]], [1, 2], scores=[0.9, 0.7]), one([[0, 0, 5, 5]], [3], scores=[0.5])]
    plain = decode_detections(images, SIZE)
    scripted = decode_detections(({}, images), SIZE)
    padded = {"boxes": torch.zeros(2, 3, 4), "scores": torch.zeros(2, 3), "labels": torch.zeros(2, 3)}
    for i, d in enumerate(images):
        n = len(d["labels"])
        padded["boxes"][i, :n], padded["scores"][i, :n], padded["labels"][i, :n] = d["boxes"], d["scores"], d["labels"]
    counted = {**padded, "num_detections": torch.tensor([2, 1])}
    for other in (scripted, decode_detections(padded, SIZE), decode_detections(counted, SIZE, "padded")):
        for key in ("boxes", "scores", "labels", "image"):
            torch.testing.assert_close(getattr(other, key), getattr(plain, key), rtol=0, atol=1e-6)
    assert plain.n_images == 2 and plain.image.tolist() == [0, 0, 1]


def yolo_raw():
    """(1, 4 + 2, 5) anchors: two overlapping class-0 boxes, one class-1 box on them, one weak, one apart."""
    anchors = torch.tensor([
        # cx, cy, w, h, class 0, class 1
        [10.0, 10.0, 8.0, 8.0, 0.9, 0.1],
        [10.5, 10.0, 8.0, 8.0, 0.8, 0.1],  # suppressed by the first (same class, IoU ~0.88)
        [10.0, 10.5, 8.0, 8.0, 0.1, 0.7],  # kept: another class
        [25.0, 25.0, 4.0, 4.0, 0.02, 0.03],  # below conf
        [25.0, 5.0, 6.0, 4.0, 0.3, 0.6],
        *[[16.0, 16.0, 4.0, 4.0, 0.0, 0.0]] * 3,  # empty anchors: A = 8 > 4 + C, as in real exports
    ])
    return anchors.T[None]


def test_yolo_decoder_thresholds_and_class_aware_nms():
    det = decode_detections(yolo_raw(), SIZE, "yolo", YoloSettings(conf=0.05, iou=0.5))
    assert det.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert det.labels.tolist() == [0, 1, 1]
    torch.testing.assert_close(det.boxes[0], torch.tensor([6.0, 6.0, 14.0, 14.0], dtype=torch.float64))
    torch.testing.assert_close(det.probs[2], torch.tensor([0.3, 0.6], dtype=torch.float64), rtol=0, atol=1e-7)
    torch.testing.assert_close(det.objectness, det.scores)
    transposed = decode_detections(yolo_raw().transpose(1, 2), SIZE, "yolo", YoloSettings(conf=0.05, iou=0.5))
    torch.testing.assert_close(transposed.boxes, det.boxes)
    lone = yolo_raw()
    lone[:, 4:, 1:] = 0  # a second image where only the first anchor is confident
    two = decode_detections(torch.cat([lone, yolo_raw()]), SIZE, "yolo", YoloSettings(conf=0.05, iou=0.5, max_det=2))
    assert two.n_images == 2 and two.image.tolist() == [0, 1, 1]  # NMS per image; at most 2 per image
    assert two.scores.tolist() == pytest.approx([0.9, 0.9, 0.7])


def test_auto_decoder_refuses_raw_tensors_and_classification_refuses_detections():
    with pytest.raises(ExplainError, match="`decoder` yolo"):
        decode_detections(yolo_raw(), SIZE)
    with pytest.raises(ExplainError, match="`task` classification"):
        decode_detections(torch.zeros(2, 10), SIZE)
    with pytest.raises(OptionError, match="use `task` detection") as info:
        get_task("classification").decode([one([0, 0, 4, 4], [1])], SIZE)
    assert info.value.option == "task"
    with pytest.raises(OptionError, match="did you mean yolo"):
        DetectionTask(decoder="yolov")


def bad(**changes):
    d = one([[1, 1, 9, 9], [2, 2, 6, 6]], [1, 2], probs=[P, P])
    d.update(changes)
    return [d]


@pytest.mark.parametrize("raw, message", [
    (bad(boxes=torch.tensor([[1.0, 1, 9, 9], [float("nan"), 2, 6, 6]])), "boxes has NaN"),
    ([{"boxes": torch.zeros(1, 4), "scores": torch.ones(1)}], "has no labels"),
    (bad(scores=torch.tensor([0.9])), "scores has shape \\[1\\] but boxes has 2 rows"),
    (bad(boxes=torch.tensor([[1.0, 1, 9, 9], [6, 2, 2, 6]])), "x2 < x1"),
    (bad(boxes=torch.tensor([[1.0, 1, 9, 9], [40, 2, 50, 6]])), "entirely outside the 32x32"),
    (bad(scores=torch.tensor([0.9, -0.2])), "negative"),
    (bad(labels=torch.tensor([1.5, 2.0])), "integers"),
    (bad() + [one([0, 0, 4, 4], [1])], "image 1 has no probs but image 0 has"),
    (bad() + [one([[0, 0, 4, 4], [1, 1, 2, float("inf")]], [1, 1], probs=[P, P])], "image 1: boxes has NaN or inf"),
    ([torch.zeros(2, 4)], "not detections"),
    ({"boxes": torch.zeros(2, 3, 4), "scores": torch.zeros(2, 2), "labels": torch.zeros(2, 3)}, "padded scores"),
])
def test_malformed_outputs_are_one_line_errors(raw, message):
    with pytest.raises(ExplainError, match=message) as info:
        DetectionTask().decode(raw, SIZE)
    assert "\n" not in str(info.value)


def test_a_malformed_perturbed_batch_stops_the_run_with_the_tasks_message():
    model = make_detector("score")
    problem, _ = detection_problem(model, DetectionTask())
    model.boxes[0, 0] = float("nan")
    with pytest.raises(ExplainError, match="boxes has NaN"):
        problem.segment_outputs(torch.ones(2, 16))


# ------------------------------------------------------------------ targets


def fx_of(*rows):
    """f(x) detections from (box, label, score) rows."""
    task = DetectionTask()
    return task, task.decode([one([r[0] for r in rows], [r[1] for r in rows], scores=[r[2] for r in rows])], SIZE)


def test_default_targets_are_detections_above_min_score_highest_first_capped_by_top_k():
    task, fx = fx_of(([0, 0, 8, 8], 1, 0.6), ([8, 8, 16, 16], 2, 0.95), ([1, 1, 3, 3], 1, 0.3), ([2, 2, 9, 9], 3, 0.7))
    targets = task.targets(fx, TargetRequest(size=SIZE, labels=["bg", "cat", "dog", "cow"]))
    assert [t.detector_score for t in targets] == pytest.approx([0.95, 0.7, 0.6])
    assert [t.label for t in targets] == ["dog", "cow", "cat"]
    assert [t.detection for t in targets] == [1, 3, 0]
    assert len(task.targets(fx, TargetRequest(size=SIZE, top_k=2))) == 2
    cats = task.targets(fx, TargetRequest(target=("cat",), size=SIZE, labels=["bg", "cat", "dog", "cow"]))
    assert [t.detection for t in cats] == [0]
    described = targets[0].describe()
    assert described["box"] == [8.0, 8.0, 16.0, 16.0] and described["index"] == 2 and described["source"] == "detection"
    assert json.loads(json.dumps(described)) == described
    assert targets[0].caption() == "dog: box score 0.95, detector 0.95"


def test_no_detection_above_min_score_names_the_highest_score():
    task, fx = fx_of(([0, 0, 8, 8], 1, 0.42), ([8, 8, 16, 16], 2, 0.3))
    with pytest.raises(OptionError, match="highest detection score is 0.42") as info:
        task.targets(fx, TargetRequest(size=SIZE))
    assert info.value.option == "min_score"
    empty = task.decode([one(torch.zeros(0, 4), [])], SIZE)
    with pytest.raises(ExplainError, match="found no object.*box"):
        task.targets(empty, TargetRequest(size=SIZE))


def test_a_missed_object_can_be_named_and_scores_zero_on_the_input():
    task, fx = fx_of(([0, 0, 8, 8], 1, 0.9))
    (target,) = task.targets(fx, TargetRequest(target=("20,20,30,30,dog",), size=SIZE, labels=["bg", "cat", "dog"]))
    assert (target.index, target.label, target.score, target.detector_score) == (2, "dog", 0.0, None)


@pytest.mark.parametrize("box, message", [
    ("10,10,5,20", "x2 < x1"), ("0,0,40,10", "outside the 32x32"), ("3,3,3,9", "no area"),
    ("1,2,3", "X1,Y1,X2,Y2"), ("1,2,3,4,ferret", "did you mean"), ("1,2,x,4", "X1,Y1,X2,Y2"),
])
def test_bad_boxes_are_option_errors(box, message):
    task, fx = fx_of(([0, 0, 8, 8], 1, 0.9))
    with pytest.raises(OptionError, match=message) as info:
        task.targets(fx, TargetRequest(target=(box,), size=SIZE, labels=["bg", "cat", "ferret-like"]))
    assert info.value.option == "box"


def test_boxes_in_original_pixels_go_through_resize_and_crop():
    from explain_cli.preprocess import Geometry, Preprocess
    from explain_cli.tasks.boxes import box_to_model, box_to_original

    geometry = Geometry.plan((100, 200), Preprocess("t", resize=50, crop=(40, 40)))  # 50x100, crop at left 30
    assert box_to_model((70, 10, 110, 50), geometry) == pytest.approx((5, 0, 25, 20))
    assert box_to_original((5, 0, 25, 20), geometry) == pytest.approx((70, 10, 110, 50))
    with pytest.raises(OptionError, match="crops it away"):
        box_to_model((0, 0, 40, 40), geometry)
    task, fx = fx_of(([5, 0, 25, 20], 1, 0.9))
    (target,) = task.targets(fx, TargetRequest(target=("70,10,110,50",), size=(40, 40), geometry=geometry))
    assert target.box == pytest.approx((5, 0, 25, 20)) and target.score == pytest.approx(0.9)
    assert target.box_original == pytest.approx((70, 10, 110, 50))
    assert target.describe()["box_original"] == pytest.approx([70, 10, 110, 50])
    assert target.overlay()["box"] == target.box_original


def test_box_mask_covers_the_pixels_whose_centres_are_inside():
    from explain_cli.tasks.boxes import box_mask

    mask = box_mask((1.0, 2.0, 4.0, 3.0), (5, 6))
    assert mask.sum() == 3 and mask[2, 1:4].all() and not mask[2, 4] and not mask[3].any()


def test_task_registry_and_options():
    assert get_task("detection", min_score=0.3).min_score == 0.3
    with pytest.raises(OptionError, match="did you mean detection"):
        get_task("detect1on")
    with pytest.raises(OptionError, match="applies to task detection, not classification"):
        get_task("classification", min_score=0.3)
    params = DetectionTask().params()
    assert "IoU" in params["similarity"] and set(params["fallbacks"]) >= {"probs", "objectness"}
    assert DetectionTask.engine_defaults["rise"]["grid"] == 16 and math.isclose(DetectionTask().min_score, 0.5)


def test_zero_area_detections_overlap_nothing_and_are_never_targets():
    task, fx = fx_of(([4, 4, 4, 9], 1, 0.99), ([0, 0, 8, 8], 1, 0.6))
    (target,) = task.targets(fx, TargetRequest(size=SIZE))
    assert target.detection == 1
    flat = one([[4, 4, 4, 9], [4, 4, 4, 9]], [1, 1])
    assert task.scorer([target], SIZE)([flat]).item() == 0.0
    from explain_cli.tasks.drise import box_scores, make_references

    refs = make_references(torch.tensor([[4.0, 4, 4, 9]]), torch.tensor([1]), None, ["none"])
    assert box_scores(refs, task.decode([flat], SIZE)).item() == 0.0  # 0/0 IoU of two flat boxes is 0, not NaN
