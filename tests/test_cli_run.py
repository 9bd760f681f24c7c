"""End to end through the CLI: known answers, reproducibility, targets, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from explain_cli.segmentation import grid_labels
from tests.conftest import SAMPLE_IMAGES, SAMPLE_MODEL, make_linear


@pytest.fixture
def tensor_input(tmp_path):
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(5))
    path = tmp_path / "x.npy"
    np.save(path, x.numpy())
    return path, x


def numbers(doc: dict) -> list:
    return [(t["index"], t["score"], [s["score"] for s in t["segments"]]) for t in doc["targets"]]


def test_linear_model_known_answer_through_cli(cli, linear_script, tensor_input, tmp_path):
    path, x = tensor_input
    out = tmp_path / "out"
    result = cli("run", "--method", "lime", linear_script, path, "--out", out, "--output", "logits", "--alpha", "1e-9", "--baseline", "zero",
                 "--segments", "grid", "--n-segments", "9", "--target", "0", "--target", "2", "--samples", "200")
    assert result.exit_code == 0, result.stderr
    doc = json.loads((out / "x.lime.json").read_text())
    model = make_linear()
    seg = torch.from_numpy(grid_labels((16, 16), 9))
    per_pixel = torch.einsum("chw,kchw->khw", x.double(), model.weight.double())  # baseline zero
    for t in doc["targets"]:
        k = t["index"]
        expected = torch.zeros(9, dtype=torch.float64).index_add_(0, seg.flatten(), per_pixel[k].flatten()).numpy()
        got = np.array([s["score"] for s in t["segments"]])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
        assert t["r2"] == pytest.approx(1.0, abs=1e-6)
        assert t["intercept"] == pytest.approx(t["baseline_score"], rel=1e-4, abs=1e-4)
        assert t["baseline_score"] == pytest.approx(float(model.bias[k]), rel=1e-5)
        assert t["label"] == ["ant", "bee", "cat"][k]
    assert [t["index"] for t in doc["targets"]] == [0, 2]
    assert doc["evaluations"] == 200
    for key in ("schema_version", "tool_version", "method", "params", "seed", "model", "input",
                "segmentation", "output_space", "timing"):
        assert key in doc
    assert len(doc["model"]["sha256"]) == 64 and len(doc["input"]["sha256"]) == 64
    assert doc["segmentation"]["n_segments"] == 9
    assert set(doc["timing"]) >= {"total_s", "forward_s"}


def test_same_seed_same_json_numbers_top_k_costs_one(cli, tmp_path):
    image = SAMPLE_IMAGES[0]
    args = ["run", SAMPLE_MODEL, image, "--samples", "60", "--quiet", "--method", "lime"]
    a = cli(*args, "--out", tmp_path / "a", "--seed", "3", "--top-k", "3")
    b = cli(*args, "--out", tmp_path / "b", "--seed", "3", "--top-k", "3")
    c = cli(*args, "--out", tmp_path / "c", "--seed", "4", "--top-k", "1")
    assert a.exit_code == b.exit_code == c.exit_code == 0, a.stderr + c.stderr
    name = f"{image.stem}.lime.json"
    da, db, dc = (json.loads((tmp_path / d / name).read_text()) for d in "abc")
    assert numbers(da) == numbers(db)
    assert len(da["targets"]) == 3 and len(dc["targets"]) == 1
    assert da["evaluations"] == dc["evaluations"] == 60
    assert da["targets"][0]["index"] == dc["targets"][0]["index"]
    assert numbers(da)[0][2] != numbers(dc)[0][2]  # another seed draws other samples


def test_png_is_at_original_resolution_and_paths_on_stdout(cli, tmp_path):
    image = next(p for p in SAMPLE_IMAGES if "cross" in p.name)  # 320x240, the model sees 64x64
    result = cli("run", "--method", "lime", SAMPLE_MODEL, image, "--out", tmp_path, "--samples", "40", "--save-map", "--top-k", "2")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [l.rsplit(".", 1)[-1] for l in lines] == ["png", "json", "npy"]
    with Image.open(lines[0]) as png, Image.open(image) as original:
        w0, h0 = original.size
        png.load()
    assert png.width >= 2 * w0 and png.height > h0  # two panels plus title, captions and colour bar
    heat = np.load(lines[2], allow_pickle=False)
    assert heat.shape == (2, h0, w0) and np.isfinite(heat).all()
    assert not list(tmp_path.glob(".*.tmp"))
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(lines[1]).st_mode) == 0o666 & ~mask  # not mkstemp's private 0600


def test_sample_model_knows_its_shapes():
    """The shipped model is accurate enough for a meaningful demo (recorded when it was trained)."""
    from explain_cli.models import load_model

    from explain_cli import explain

    model = load_model(str(SAMPLE_MODEL), device="cpu")
    assert model.labels == ["circle", "square", "triangle", "cross"]
    for image in SAMPLE_IMAGES:  # each file is named after the shapes it shows
        shapes = set(image.stem.split("_"))
        (e,) = explain(model, image, method="ablation", top_k=len(shapes), n_segments=16)
        assert set(e.labels) == shapes, (image.name, e.labels)


@pytest.mark.parametrize("layout", ["chw", "hwc", "1chw"])
def test_tensor_layouts_give_the_same_answer(cli, linear_script, tensor_input, tmp_path, layout):
    path, x = tensor_input
    arr = {"chw": x, "hwc": x.permute(1, 2, 0), "1chw": x[None]}[layout]
    torch.save(arr.clone(), tmp_path / f"{layout}.pt")
    a = cli("run", "--method", "lime", linear_script, path, "--out", tmp_path / "ref", "--samples", "30")
    b = cli("run", "--method", "lime", linear_script, tmp_path / f"{layout}.pt", "--out", tmp_path / "o", "--samples", "30")
    assert a.exit_code == b.exit_code == 0, b.stderr
    ref = json.loads((tmp_path / "ref" / "x.lime.json").read_text())
    got = json.loads((tmp_path / "o" / f"{layout}.lime.json").read_text())
    assert numbers(ref) == numbers(got)


def test_segment_command_and_info(cli, tmp_path, monkeypatch):
    result = cli("segment", SAMPLE_IMAGES[0], "--out", tmp_path, "--n-segments", "30")
    assert result.exit_code == 0, result.stderr
    assert "segments" in result.stderr
    with Image.open(result.stdout.strip()) as png, Image.open(SAMPLE_IMAGES[0]) as original:
        assert png.size[0] >= original.size[0] and png.size[1] > original.size[1]  # the image plus a title
    count = int(result.stderr.split(".png: ")[1].split(" segments")[0])
    assert 15 <= count <= 45  # slic asked for about 30
    info = cli("info", "--json")
    assert info.exit_code == 0
    doc = json.loads(info.stdout)
    assert "lime" in doc["methods"] and "slic" in doc["segmenters"]
    monkeypatch.setenv("COLUMNS", "200")  # one line per row
    table = cli("info", "--models")
    assert table.exit_code == 0
    assert "pip install 'explain_cli[onnx]'" in table.stdout  # brackets are text, not rich markup


def test_random_torchvision_model_on_image(cli, tmp_path, small_image):
    result = cli("run", "--method", "lime", "torchvision:resnet18", small_image, "--out", tmp_path, "--samples", "8",
                 "--batch-size", "8", "--n-segments", "10", "--quiet")
    assert result.exit_code == 0, result.stderr
    doc = json.loads((tmp_path / "small.lime.json").read_text())
    assert doc["model"]["weights"] is None
    assert doc["preprocessing"]["crop"] == [224, 224]
    assert doc["targets"][0]["label"]  # ImageNet class names come from torchvision's metadata
