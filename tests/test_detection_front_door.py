"""Detection through the front door: Python, the command line and YAML; bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch

from explain_cli import explain
from explain_cli.errors import ExplainError, OptionError
from explain_cli.options import schema
from explain_cli.tasks import TASKS
from tests.conftest import ROOT
from tests.helpers import BOX, SIZE, assert_refused, check_schema, exact_box_contributions, grid_segments, image, make_detector

# These tests use deliberately small label maps; the few-superpixels advice is not what they test.
pytestmark = pytest.mark.filterwarnings(r"ignore:only \d+ superpixels:explain_cli.errors.ExplainWarning")

DETECTOR = ROOT / "sample_models" / "shapes_detector.pt"
DETECTOR_ONNX = ROOT / "sample_models" / "shapes_detector.onnx"
SCENE = ROOT / "sample_models" / "det_eval" / "scene_00.png"
CLASSIFIER = ROOT / "sample_models" / "shapes_cnn.pt"
FAST = ["--method", "ablation", "--segments", "grid", "--n-segments", "16", "--quiet"]


def truth(name: str = "scene_00.png") -> list[dict]:
    """The ground-truth objects of one evaluation scene (box, label, id in the mask)."""
    items = json.loads((SCENE.parent / "boxes.json").read_text())["items"]
    return next(item["objects"] for item in items if item["image"] == name)


# ------------------------------------------------------------------ Python


def test_known_answer_through_explain_sums_to_the_box_score_difference():
    model = make_detector("score", k=2)
    x, segments = image().float(), grid_segments(cell=16)
    (e,) = explain(model, x, task="detection", method="kernelshap", segments=segments.numpy(), baseline="zero",
                   samples=18, exact=True, min_score=0.3)
    assert e.task == "detection" and e.output_space == "detection" and len(e.targets) == 2
    exact = exact_box_contributions(model, x.double(), torch.zeros_like(x, dtype=torch.float64), segments)
    np.testing.assert_allclose(e.scores, exact, atol=1e-9)
    doc = e.to_dict()
    for k, t in enumerate(doc["targets"]):
        assert sum(s["score"] for s in t["segments"]) == pytest.approx(t["score"] - t["baseline_score"], abs=1e-9)
        assert t["box"] == pytest.approx(model.boxes[k].tolist(), abs=1e-3) and t["source"] == "detection"
    assert doc["params"]["task"]["similarity"].startswith("max_j IoU")


def test_a_named_box_tuple_is_one_target_and_rows_address_the_maps(validator):
    model = make_detector("score", k=2)
    x = image().float()
    (e,) = explain(model, x, task="detection", method="ablation", segments="grid", n_segments=16,
                   target=(*BOX, 1))
    assert len(e.targets) == 1 and e.details[0].source == "box" and e.targets == [1]
    (both,) = explain(model, x, task="detection", method="ablation", segments="grid", n_segments=16,
                      target=["auto"], box=["14,2,30,12,2", "0,20,12,31"], min_score=0.3)
    assert [t.source for t in both.details] == ["detection", "detection", "box", "box"]
    assert both.pixel_map(3).shape == SIZE and both.top(3, target=2)[0][0] == both.top(3, target=2)[0][0]
    with pytest.raises(ExplainError, match="target 4 is not a position among the 4 explained targets"):
        both.pixel_map(4)
    doc = both.to_dict()
    assert doc["targets"][3]["index"] is None and doc["targets"][3]["source"] == "box"  # class-agnostic
    check_schema(validator, doc)
    assert both.render().size[0] > 0


def test_several_boxes_together_equal_each_box_alone_through_explain():
    model = make_detector("score", k=3)
    x = image().float()
    common = dict(task="detection", method="kernelshap", segments="grid", n_segments=16, samples=300, seed=3)
    (together,) = explain(model, x, min_score=0.3, **common)
    for k, box in enumerate(together.details):
        (alone,) = explain(model, x, target=[(*box.box, box.index)], **common)
        np.testing.assert_allclose(alone.scores[0], together.scores[k], atol=1e-12)


def test_task_options_are_refused_under_the_other_task():
    x = torch.rand(3, 16, 16)
    with pytest.raises(OptionError, match="applies to task detection, not classification"):
        explain(lambda b: b.mean(dim=(2, 3)), x, min_score=0.2)
    with pytest.raises(OptionError, match="applies to task classification or segmentation, not detection") as info:
        explain(make_detector(), image().float(), task="detection", output="logits")
    assert info.value.option == "output"
    with pytest.raises(OptionError, match="applies to task detection") as info:
        explain(lambda b: b.mean(dim=(2, 3)), x, box=["1,1,5,5"])
    with pytest.raises(OptionError, match="boxes apply to task detection"):
        explain(lambda b: b.mean(dim=(2, 3)), x, target=(1, 1, 5, 5))
    for o in schema.OPTIONS.values():  # the schema and the tasks agree on who reads what
        for task in o.tasks or ():
            assert o.name in TASKS[task].options


def test_a_classifier_is_told_to_use_task_detection_when_it_returns_detections():
    with pytest.raises(OptionError, match="use `task` detection"):
        explain(make_detector(), image().float())


def test_rise_takes_drise_defaults_for_detection_unless_set():
    model, x = make_detector("score"), image().float()
    (e,) = explain(model, x, task="detection", method="rise", masks=40)
    assert (e.params["grid"], e.params["p1"]) == (16, 0.5)
    (e,) = explain(model, x, task="detection", method="rise", masks=40, grid=4)
    assert e.params["grid"] == 4


def test_evaluate_uses_each_box_as_its_mask_and_scores_the_box():
    model, x = make_detector("score", k=2), image().float()
    (e,) = explain(model, x, task="detection", method="ablation", segments="grid", n_segments=16, min_score=0.3,
                   evaluate=True, eval_step=0.1, deletion="blur")
    block = e.evaluation
    assert block["mask"] == "box" and len(block["pointing_hit"]) == 2 and len(block["deletion_auc"]) == 2
    assert block["pointing_hit"] == [True, True]  # the linear region overlaps both boxes' grid cells
    assert all(0 <= v <= 1 for v in block["energy_in_mask"])


def test_classification_curves_stay_on_probabilities_with_logits():
    from explain_cli.core import Evaluator
    from explain_cli.metrics.curves import deletion_curve
    from tests.conftest import make_linear

    model, x = make_linear(), torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    (e,) = explain(model, x, method="ablation", segments="grid", n_segments=4, output="logits", top_k=2,
                   evaluate=True, eval_step=0.1, deletion="blur")
    old = Evaluator(model, torch.device("cpu"), batch_size=64, output="logits")
    old.select_targets(e.targets)
    curve = deletion_curve(old, x, e.segment_maps(), replacement="blur", step=0.1, seed=0)
    assert e.evaluation["deletion_auc"] == pytest.approx(list(curve.auc), abs=1e-12)


# ------------------------------------------------------------------ the command line and YAML


def test_sample_detector_end_to_end_from_the_command_line(cli, tmp_path, validator):
    r = cli("run", DETECTOR, SCENE, *FAST, "--evaluate", "--eval-step", "0.05", "--out", tmp_path)
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "scene_00.ablation.json").read_text())
    check_schema(validator, doc)
    assert doc["output_space"] == "detection" and doc["model"]["task"] == "detection"
    assert {"box", "label", "score", "detector_score", "segments"} <= set(doc["targets"][0])
    assert all(t["score"] == pytest.approx(1.0, abs=1e-9) for t in doc["targets"])  # probs given: s(t, t) = 1
    assert doc["evaluation"]["mask"] == "box" and all(doc["evaluation"]["pointing_hit"])
    objects = sorted(truth(), key=lambda o: -o["score"])  # targets come highest detector score first
    assert [t["label"] for t in doc["targets"]] == [o["label"] for o in objects]
    for t, o in zip(doc["targets"], objects):
        assert t["box_original"] == pytest.approx(o["box"], abs=2) and t["detector_score"] == pytest.approx(o["score"], abs=1e-3)


def test_onnx_sample_detector_gives_the_torchscript_detections(cli, tmp_path):
    pytest.importorskip("onnxruntime")
    for model, out in ((DETECTOR, "ts"), (DETECTOR_ONNX, "onnx")):
        r = cli("run", model, SCENE, *FAST, "--out", tmp_path / out)
        assert r.exit_code == 0, r.stderr
    ts, ox = (json.loads((tmp_path / d / "scene_00.ablation.json").read_text()) for d in ("ts", "onnx"))
    assert [t["label"] for t in ts["targets"]] == [t["label"] for t in ox["targets"]]
    for a, b in zip(ts["targets"], ox["targets"]):
        assert a["box"] == pytest.approx(b["box"], abs=1e-2)
        assert [s["score"] for s in a["segments"]] == pytest.approx([s["score"] for s in b["segments"]], abs=1e-3)


def test_yaml_task_detection_with_a_box(cli, tmp_path):
    config = tmp_path / "det.yaml"
    config.write_text(f"""
defaults:
  out: {tmp_path / 'out'}
jobs:
  - model: {DETECTOR}
    inputs: [{SCENE}]
    task: detection
    segments: grid
    n_segments: 16
    methods:
      - {{method: ablation, box: ["10,10,60,60,circle"], min_score: 0.9}}
""")
    r = cli("batch", config, "--quiet")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "out" / "scene_00.ablation.json").read_text())
    assert [t["source"] for t in doc["targets"]] == ["box"] and doc["targets"][0]["label"] == "circle"
    assert doc["targets"][0]["box_original"] == [10, 10, 60, 60]


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written


class BadDetector(torch.nn.Module):
    """A TorchScript detector whose output is broken in one way (``mode``)."""

    def __init__(self, mode: int) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
        out: List[Dict[str, torch.Tensor]] = []
        for i in range(x.shape[0]):
            boxes = torch.tensor([[4.0, 4.0, 20.0, 20.0]]) + x[i].mean() * 0
            d = {"boxes": boxes, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
            if self.mode == 1:
                d["boxes"] = boxes * float("nan")
            elif self.mode == 2:
                d["boxes"] = boxes + 100.0
            elif self.mode == 3:
                d["scores"] = torch.tensor([0.9, 0.8])
            elif self.mode == 4:
                d = {"boxes": boxes, "scores": torch.tensor([0.9])}
            out.append(d)
        return out


@pytest.fixture(scope="module")
def bad_detectors(tmp_path_factory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("bad")
    meta = json.dumps({"task": "detection", "preprocess": {"size": [32, 32]}})
    paths = {}
    for mode in range(1, 5):
        paths[mode] = folder / f"bad{mode}.pt"
        torch.jit.script(BadDetector(mode)).save(str(paths[mode]), _extra_files={"explain_cli.json": meta})
    return paths


BAD = {
    "task detection on a classifier": (lambda d: [CLASSIFIER, ROOT / "sample_models/images/circle.png",
                                                  "--task", "detection"], "use --task classification"),
    "a classifier's option on a detector": (lambda d: [DETECTOR, SCENE, "--output", "probs"],
                                            "--output applies to task classification or segmentation, not detection"),
    "NaN boxes": (lambda d: [d[1], SCENE], "boxes has NaN"),
    "boxes outside the image": (lambda d: [d[2], SCENE], "lies entirely outside the 32x32 input"),
    "ragged": (lambda d: [d[3], SCENE], "scores has shape [2] but boxes has 1 rows"),
    "missing keys": (lambda d: [d[4], SCENE], "has no labels"),
    "box outside the image": (lambda d: [DETECTOR, SCENE, "--box", "10,10,500,50"], "lies outside the 128x128"),
    "box reversed": (lambda d: [DETECTOR, SCENE, "--box", "50,10,10,50"], "x2 < x1"),
    "nothing above min_score": (lambda d: [DETECTOR, SCENE, "--min-score", "0.999"],
                                "highest detection score is 0.9"),
    "min_score on a classifier": (lambda d: [CLASSIFIER, ROOT / "sample_models/images/circle.png",
                                             "--min-score", "0.3"], "applies to task detection"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_detection_input_is_one_line_exit_2_and_writes_nothing(case, cli, bad_detectors, tmp_path):
    args, message = BAD[case]
    out = tmp_path / "out"
    r = cli("run", *args(bad_detectors), "--method", "ablation", "--out", out)
    assert_refused(r, message)
    assert not out.exists()


def test_model_files_declare_a_task_in_their_metadata(tmp_path):
    from explain_cli.models import load_model
    from explain_cli.models.base import MODEL_TASKS, validate_metadata

    assert MODEL_TASKS == tuple(TASKS)
    assert load_model(str(DETECTOR), device="cpu").task == "detection"
    assert load_model(str(CLASSIFIER), device="cpu").task == "classification"
    with pytest.raises(ExplainError, match="task: must be one of classification, detection"):
        validate_metadata({"task": "detector"}, "model m.pt")


# ------------------------------------------------------------------ pictures, report and compare


def test_each_box_panel_draws_its_box_and_caption():
    from PIL import Image

    from explain_cli.render.panels import BOX_COLOUR

    model, x = make_detector("score", k=2), image().float()
    (e,) = explain(model, x, task="detection", method="ablation", segments="grid", n_segments=16, min_score=0.3)
    picture = np.asarray(e.render(boundaries=False))
    assert (np.abs(picture.astype(int) - BOX_COLOUR).sum(axis=2) == 0).sum() > 100  # the boxes' green lines
    from explain_cli.render.captions import box_caption

    first = e.to_dict()["targets"][0]  # no probs: O_j is the detector's score, so the box score equals it
    d = first["detector_score"]
    assert box_caption(0, first) == f"box 0: class {first['index']} · detector {d:.2f} · box score {d:.3g}"
    assert isinstance(e.render(), Image.Image)


def test_report_and_compare_show_detection_runs(cli, tmp_path):
    for method in ("ablation", "kernelshap"):
        r = cli("run", DETECTOR, SCENE, "--method", method, "--segments", "grid", "--n-segments", "16",
                *(["--samples", "64"] if method == "kernelshap" else []), "--save-map", "--quiet", "--out", tmp_path)
        assert r.exit_code == 0, r.stderr
    r = cli("compare", tmp_path)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "compare.png").is_file()
    r = cli("report", tmp_path)
    assert r.exit_code == 0, r.stderr
    html = (tmp_path / "report.html").read_text()
    assert "box 0: circle · detector 0.98" in html and "(box 2,27,40,65)" in html
    # the task's settings are one fact of the run, not repeated in every method's parameters
    assert "<dt>Task</dt>" in html and "min_score=0.5" in html and "class_agnostic_box" not in html


def test_the_shipped_detection_config_plans(cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    r = cli("batch", "configs/detection.yaml", "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert "named-box/scene_03.kernelshap.json" in r.stdout + r.stderr and "nothing written" in r.stderr


def test_a_callable_detector_sees_the_photo_as_it_is_at_most_800_on_its_short_side():
    """What a torchvision-style callable expects: [0, 1] pixels, no crop, no normalisation."""
    from PIL import Image

    seen = []

    def detector(batch: torch.Tensor) -> list[dict]:
        seen.append(tuple(batch.shape[-2:]))
        h, w = batch.shape[-2:]
        box = torch.tensor([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]])
        return [{"boxes": box, "scores": img[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean().reshape(1).clamp(0, 1),
                 "labels": torch.tensor([1])} for img in batch]

    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(100, 256, (60, 90, 3), dtype=np.uint8))
    (e,) = explain(detector, small, task="detection", method="ablation", segments="grid", n_segments=4)
    assert seen[0] == (60, 90) and e.preprocess["name"] == "detection" and e.preprocess["mean"] is None
    assert e.to_dict()["targets"][0]["box_original"] == pytest.approx([22.5, 15, 67.5, 45], abs=1e-3)
    seen.clear()
    large = Image.fromarray(rng.integers(100, 256, (900, 1200, 3), dtype=np.uint8))
    (e,) = explain(detector, large, task="detection", method="ablation", segments="grid", n_segments=4)
    assert seen[0] == (800, 1066) and e.to_dict()["targets"][0]["box_original"] == pytest.approx(
        [300, 225, 900, 675], abs=1)


def test_an_image_without_detections_may_give_boxes_of_shape_0():
    from explain_cli.tasks.detection_formats import decode_detections

    empty = {"boxes": torch.zeros(0), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    full = {"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([2])}
    det = decode_detections([empty, full], (8, 8))
    assert det.n_images == 2 and det.image.tolist() == [1]
