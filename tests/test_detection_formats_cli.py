"""Every detector format end to end from the command line: torchvision by name, .pt2, a YOLO-style ONNX."""

from __future__ import annotations

import functools
import json
import sys

import numpy as np
import pytest
import torch

from explain_cli.models.detectors import DETECTORS
from tests.conftest import ROOT
from tests.helpers import TinyYolo, assert_refused

#: the small grids here are deliberate; the coarse-map warning is tested in test_api
pytestmark = pytest.mark.filterwarnings("ignore:only .* superpixels:explain_cli.errors.ExplainWarning")
DETECTOR = ROOT / "sample_models" / "shapes_detector.pt"
SCENE = ROOT / "sample_models" / "det_eval" / "scene_00.png"
FAST = ["--method", "ablation", "--segments", "grid", "--n-segments", "4", "--quiet"]


@pytest.fixture(scope="module")
def noise_image(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_torchvision_detectors_by_name_with_random_weights(name, cli, noise_image, tmp_path, monkeypatch):
    import explain_cli.models.detectors as detectors

    # small internal sizes keep CPU time low (ssdlite's anchors are made for its fixed 320)
    small = {} if name.startswith("ssdlite") else {"min_size": 64, "max_size": 96}
    monkeypatch.setattr(detectors, "load_detector", functools.partial(detectors.load_detector, score_thresh=0.0,
                                                                      **small))
    r = cli("run", f"torchvision:{name}", noise_image, *FAST, "--min-score", "0", "--top-k", "2", "--target", "auto",
            "--box", "5,5,40,30,person", "--out", tmp_path)
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "noise.ablation.json").read_text())
    assert doc["model"]["task"] == "detection" and any("random weights" in n for n in doc["model"]["notes"])
    assert [t["source"] for t in doc["targets"]] == ["detection", "detection", "box"]
    assert doc["targets"][2]["label"] == "person" and doc["targets"][2]["box_original"] == [5, 5, 40, 30]
    for t in doc["targets"][:2]:  # boxes in the input image's pixels, whatever the detector resized to
        x1, y1, x2, y2 = t["box_original"]
        assert 0 <= x1 <= x2 <= 64 and 0 <= y1 <= y2 <= 48


@pytest.mark.slow
def test_a_pt2_export_of_the_sample_detector(cli, tmp_path):
    """torch.export cannot export the list-of-dicts detector with a dynamic batch (a Python loop over
    the images); its padded form, one dict of (B, K, ...) tensors, exports and runs."""
    sys.path.insert(0, str(ROOT / "sample_models"))
    try:
        import train_detector as td
    finally:
        sys.path.remove(str(ROOT / "sample_models"))

    scripted = torch.jit.load(str(DETECTOR))
    net = td.CenterNetTiny()
    net.load_state_dict({k.removeprefix("net."): v for k, v in scripted.state_dict().items()})

    class Padded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = td.PaddedDetector(net.eval())

        def forward(self, x: torch.Tensor) -> dict:
            boxes, scores, labels, probs = self.inner(x)
            return {"boxes": boxes, "scores": scores, "labels": labels, "probs": probs}

    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(Padded().eval(), (torch.rand(2, 3, 128, 128),), dynamic_shapes=({0: batch},))
    meta = {"explain_cli.json": ""}
    torch.jit.load(str(DETECTOR), _extra_files=meta)  # the sample's task, labels and preprocessing
    path = tmp_path / "detector.pt2"
    torch.export.save(program, str(path), extra_files={k: v.decode() for k, v in meta.items()})
    for model, out in ((path, "pt2"), (DETECTOR, "ts")):
        r = cli("run", model, SCENE, *FAST, "--out", tmp_path / out)
        assert r.exit_code == 0, r.stderr
    pt2, ts = (json.loads((tmp_path / d / "scene_00.ablation.json").read_text()) for d in ("pt2", "ts"))
    assert pt2["model"]["kind"] == "pt2" and pt2["model"]["task"] == "detection"
    for a, b in zip(pt2["targets"], ts["targets"], strict=True):
        assert a["label"] == b["label"] and a["box"] == pytest.approx(b["box"], abs=1e-3)
        assert [s["score"] for s in a["segments"]] == pytest.approx([s["score"] for s in b["segments"]], abs=1e-6)


@pytest.mark.slow
def test_a_yolo_style_raw_onnx_model_with_decoder_yolo(cli, tmp_path):
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from explain_cli.models.export import export_onnx_bytes

    path = tmp_path / "yolo.onnx"
    path.write_bytes(export_onnx_bytes(TinyYolo().eval(), (2, 3, 32, 32)))
    picture = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(picture)
    r = cli("run", path, picture, *FAST, "--size", "32", "--out", tmp_path / "raw")
    assert_refused(r, "choose the task that matches the model")
    r = cli("run", path, picture, *FAST, "--size", "32", "--task", "detection", "--decoder", "yolo", "--min-score", "0.3",
            "--out", tmp_path / "out")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "out" / "p.ablation.json").read_text())
    assert doc["targets"] and all(t["objectness"] == "objectness" for t in doc["targets"])
    assert doc["params"]["task"]["yolo"] == {"conf": 0.05, "iou": 0.7, "max_det": 300}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:only 4 superpixels:explain_cli.errors.ExplainWarning")  # a 64-px random image; the map is not the point
def test_a_live_torchvision_detector_through_explain_is_wrapped_and_given_back_as_it_was():
    import torchvision

    from explain_cli import explain

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=5, min_size=64, max_size=96, box_score_thresh=0.0)
    model.train()
    x = torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(1))
    (e,) = explain(model, x, method="ablation", segments="grid", n_segments=4, min_score=0.0, top_k=2, sanity=True)
    assert model.training  # eval for the call, then given back
    assert e.model["kind"] == "module" and e.model["task"] == "detection" and len(e.targets) == 2
    assert all(t.class_vector is not None and t.weight == "none" for t in e.details)  # the box predictor's probs
    assert all(t.score == pytest.approx(1.0, abs=1e-9) for t in e.details)
    assert len(e.evaluation["sanity_rank_correlation"]) == 2
