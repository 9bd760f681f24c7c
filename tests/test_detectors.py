"""torchvision detectors by name: random weights, weights files, per-box probs, boxes in input pixels."""

from __future__ import annotations

import pytest
import torch

from explain_cli.core import Evaluator, Problem
from explain_cli.engines import build_params, get_engine
from explain_cli.errors import ExplainError
from explain_cli.models.detectors import DETECTORS, RANDOM_DETECTOR_NOTE, as_detector, load_detector
from explain_cli.tasks import DetectionTask, TargetRequest, reference_targets
from tests.helpers import TinyYolo

CPU = torch.device("cpu")
SIDE = 128
#: Small internal sizes keep CPU time low; ssdlite's anchors are made for its fixed 320.
SMALL = {"min_size": 64, "max_size": 64}
BUILD = {name: ({} if name.startswith("ssdlite") else dict(SMALL)) for name in DETECTORS}


def picture(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_each_detector_builds_with_random_weights_and_runs_through_the_task(name):
    model = load_detector(f"torchvision:{name}", None, CPU, 0, score_thresh=0.0, **BUILD[name])
    assert model.task == "detection" and RANDOM_DETECTOR_NOTE in model.notes and model.weights is None
    assert model.labels is not None and len(model.labels) == 91 and model.preprocess.mean is None
    x = picture()
    with torch.inference_mode():
        out = model.module(x)
    assert isinstance(out, list) and len(out) == 1 and {"boxes", "scores", "labels"} <= set(out[0])
    boxes = out[0]["boxes"]
    assert len(boxes) > 0  # score threshold 0: random heads still propose boxes
    assert float(boxes.min()) >= 0 and float(boxes.max()) <= SIDE  # clipped in the input's pixels
    if BUILD[name]:  # internal size 64 < 128: boxes beyond 64 prove they were mapped back to the input
        assert float(boxes[:, 2:].max()) > 64
    task = DetectionTask()
    evaluator = Evaluator(model.module, CPU, batch_size=3)
    request = TargetRequest(target=("auto", "20,20,90,100,person"), size=(SIDE, SIDE), labels=model.labels)
    task_all = DetectionTask(min_score=0.0)
    targets, reference = reference_targets(task_all, evaluator, x, request)
    assert targets[-1].source == "box" and targets[-1].label == "person"
    assert targets[0].source == "detection" and targets[0].score > 0
    if "probs" in out[0]:  # two-stage: the class vector carries the confidence, O_j = 1, s(t, t) = 1
        assert targets[0].weight == "none" and targets[0].score == pytest.approx(1.0, abs=1e-12)
    else:  # one-hot fallback: the detector's score is O_j
        assert targets[0].weight == "score" and targets[0].score == pytest.approx(targets[0].detector_score)
    problem = Problem(x=x[0], baseline=torch.zeros_like(x[0]), segments=_quadrants(), evaluator=evaluator,
                      reference=reference[0])
    engine = get_engine("ablation")
    result = engine.run(problem, build_params(engine, {}), torch.Generator().manual_seed(0))
    assert result.scores.shape == (len(targets), 4) and evaluator.evaluations == 1 + 1 + 4
    assert task.params()["task"] == "detection"


def _quadrants() -> torch.Tensor:
    half = torch.arange(SIDE) // (SIDE // 2)
    return (half[:, None] * 2 + half[None, :]).long()


@pytest.mark.slow
def test_faster_rcnn_probs_come_from_the_box_predictor_and_match_each_detection():
    model = load_detector("torchvision:fasterrcnn_mobilenet_v3_large_fpn", None, CPU, 1, score_thresh=0.0, **SMALL)
    with torch.inference_mode():
        out = model.module(torch.cat([picture(1), picture(2)]))
    for d in out:
        probs = d["probs"]
        assert probs.shape == (len(d["labels"]), 91)
        torch.testing.assert_close(probs.sum(dim=1), torch.ones(len(probs)), rtol=0, atol=1e-5)
        # the matched proposal's softmax gives exactly the detection's score for its label
        torch.testing.assert_close(probs[torch.arange(len(probs)), d["labels"]], d["scores"], rtol=0, atol=1e-6)
        assert bool((probs[:, 0] > 0).all())  # the background share: the confidence the cosine sees
    # a live torchvision module is wrapped the same way; anything else is left alone
    wrapped = as_detector(model.module.model)
    with torch.inference_mode():
        again = wrapped(torch.cat([picture(1), picture(2)]))
    torch.testing.assert_close(again[1]["probs"], out[1]["probs"])
    assert as_detector(len) is len


@pytest.mark.slow
def test_a_weights_file_sets_the_class_count_and_is_hashed(tmp_path):
    source = "torchvision:fasterrcnn_mobilenet_v3_large_fpn"
    import torchvision

    trained = torchvision.models.get_model("fasterrcnn_mobilenet_v3_large_fpn", weights=None, weights_backbone=None,
                                           num_classes=5)
    path = tmp_path / "five.pth"
    torch.save(trained.state_dict(), path)
    model = load_detector(source, str(path), CPU, 0, **SMALL)
    assert model.labels is None and model.sha256 and not model.notes
    assert model.module.model.roi_heads.box_predictor.cls_score.out_features == 5
    for key, value in trained.state_dict().items():
        assert torch.equal(model.module.model.state_dict()[key], value), key
    wrong = tmp_path / "wrong.pth"
    torch.save({"backbone.body.nothing.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ExplainError, match="do not fit torchvision:fasterrcnn_mobilenet_v3_large_fpn"):
        load_detector(source, str(wrong), CPU, 0, **SMALL)


def test_unknown_detector_names_suggest_the_supported_ones():
    with pytest.raises(ExplainError, match="did you mean fasterrcnn_resnet50_fpn_v2"):
        load_detector("torchvision:fasterrcnn_resnet50_fpn", None, CPU, 0)


@pytest.mark.slow
def test_a_yolo_style_raw_onnx_model_runs_through_the_yolo_decoder(tmp_path):
    pytest.importorskip("onnxruntime")
    from explain_cli.models.onnx import load_onnx
    from explain_cli.models.export import export_onnx_bytes

    eager = TinyYolo().eval()
    path = tmp_path / "yolo.onnx"
    path.write_bytes(export_onnx_bytes(eager, (2, 3, 32, 32)))
    model = load_onnx(path, CPU)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    task = DetectionTask(decoder="yolo", min_score=0.3)
    with torch.inference_mode():
        from_onnx, from_eager = task.decode(model.module(x), (32, 32)), task.decode(eager(x), (32, 32))
    torch.testing.assert_close(from_onnx.boxes, from_eager.boxes, rtol=0, atol=1e-4)
    assert from_onnx.labels.tolist() == from_eager.labels.tolist() and len(from_onnx.labels) > 0
    evaluator = Evaluator(model.module, CPU, batch_size=4)
    targets, reference = reference_targets(task, evaluator, x, TargetRequest(size=(32, 32)))
    assert targets and all(t.weight == "objectness" for t in targets)  # the top class score, as YOLO gives no other
    half = torch.arange(32) // 16
    problem = Problem(x=x[0], baseline=torch.zeros_like(x[0]), segments=(half[:, None] * 2 + half[None, :]).long(),
                      evaluator=evaluator, reference=reference[0])
    engine = get_engine("kernelshap")
    result = engine.run(problem, build_params(engine, {"samples": 16, "exact": True}), torch.Generator().manual_seed(0))
    assert result.extra["exact"]
    assert result.scores.sum(axis=1) == pytest.approx(reference[0].numpy() - result.baseline_score, abs=1e-9)
