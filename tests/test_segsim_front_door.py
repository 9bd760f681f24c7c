"""Segmentation and similarity through the front door: known answers via `explain()`, the sample models end to end,
and bad input as one line and exit 2 from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from explain_cli import explain
from explain_cli.errors import ExplainError, OptionError
from tests.conftest import ROOT

#: the small grids here are deliberate; the coarse-map warning is tested in test_api
pytestmark = pytest.mark.filterwarnings("ignore:only .* superpixels:explain_cli.errors.ExplainWarning")
SEGMENTER = ROOT / "sample_models" / "shapes_segmenter.pt"
EMBEDDER = ROOT / "sample_models" / "shapes_embedder.pt"
CLASSIFIER = ROOT / "sample_models" / "shapes_cnn.pt"
PROMPTS = ROOT / "sample_models" / "shapes_prompts.npy"
PROMPT_LABELS = ROOT / "sample_models" / "shapes_prompts.txt"
SEG_SCENE = ROOT / "sample_models" / "seg_eval" / "scene_01.png"
SEG_MASK = ROOT / "sample_models" / "seg_eval" / "scene_01.mask.png"
SIM_IMAGE = ROOT / "sample_models" / "sim_eval" / "cross_00.png"
SIM_OTHER = ROOT / "sample_models" / "sim_eval" / "cross_01.png"
H = W = 16
GRID = torch.arange(H * W).reshape(H, W)
M = 8
SEGMENTS = ((GRID // W) // 8) * 4 + (GRID % W) // 4  # 2 rows of 4 segments of 8x4 pixels, ids 0..7: 2^8 coalitions


class LinearSegmenter(torch.nn.Module):
    """Class maps linear in the pixels: a 1x1 convolution, after ``stride``x``stride`` average pooling."""

    def __init__(self, classes: int = 3, stride: int = 1) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.weight = torch.nn.Parameter(torch.randn(classes, 3, generator=g, dtype=torch.float64), requires_grad=False)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()  # inputs arrive as float32; the arithmetic runs in float64
        x = torch.nn.functional.avg_pool2d(x, self.stride) if self.stride > 1 else x
        return torch.einsum("kc,bchw->bkhw", self.weight, x)


def _region_mean(model: LinearSegmenter, x: torch.Tensor, c: int, region: np.ndarray) -> float:
    """The class-c mean over the region resampled to the output by the documented centre rule (computed here)."""
    out = model(x[None])[0, c].numpy()
    h, w = out.shape
    rows = [(2 * i + 1) * H // (2 * h) for i in range(h)]
    cols = [(2 * j + 1) * W // (2 * w) for j in range(w)]
    cells = region[np.ix_(rows, cols)]
    return float(out[cells].mean())


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("method", ["kernelshap", "ablation"])
def test_linear_segmenter_gives_exact_segment_contributions_to_each_region_mean(method, stride):
    model = LinearSegmenter(stride=stride)
    x = torch.rand(3, H, W, generator=torch.Generator().manual_seed(2), dtype=torch.float32)
    labels = np.zeros((H, W), np.int64)
    labels[2:9, 3:14] = 1  # two regions of a label map, both off the segment grid
    labels[10:15, 1:7] = 2
    (expl,) = explain(model, x, task="segmentation", region=labels, target=["2"], output="logits", method=method,
                      baseline="zero", segments=SEGMENTS.numpy(), samples=300 if method == "kernelshap" else None)
    assert [t.region for t in expl.details] == [1, 2] and list(expl.targets) == [2, 2]
    for k, r in enumerate((1, 2)):
        region = labels == r
        # linear: a segment's contribution is the region mean of the image holding only that segment (baseline 0)
        expected = [_region_mean(model, x * (SEGMENTS == g), 2, region) for g in range(M)]
        np.testing.assert_allclose(expl.scores[k], expected, atol=1e-9)
        assert expl.target_scores[k] == pytest.approx(_region_mean(model, x, 2, region), abs=1e-12)


def test_a_binary_region_file_is_read_at_the_input_resolution_and_carried_through_the_resize(tmp_path):
    """A 32x32 picture resized to the model's 16x16: the region, drawn on the picture, goes along."""
    model = LinearSegmenter(stride=2)
    rng = np.random.default_rng(0)
    picture = tmp_path / "pic.png"
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(picture)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 4:20] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    (expl,) = explain(model, str(picture), task="segmentation", region=str(tmp_path / "mask.png"), size="16",
                      preprocess="none", method="ablation", segments="grid", n_segments=16, output="logits")
    (target,) = expl.details
    assert target.region == 1 and target.frame == "original" and target.area == 16 * 16
    assert target.bbox == (4, 8, 20, 24) and target.output_size == (8, 8) and target.cells == 16
    doc = expl.to_json()
    assert doc["targets"][0]["region"]["bbox"] == [4, 8, 20, 24]
    assert doc["params"]["task"]["output"] == "logits" and doc["params"]["task"]["region"]["ids"] == [1]


class LinearEmbedder(torch.nn.Module):
    """An embedding linear in the segment means: e = A · (per-segment, per-channel means of x)."""

    def __init__(self, dims: int = 8) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.a = torch.nn.Parameter(torch.randn(dims, M * 3, generator=g, dtype=torch.float64), requires_grad=False)
        self.onehot = torch.nn.functional.one_hot(SEGMENTS.flatten(), M).double() / 32.0  # (H*W, M)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = torch.einsum("bcp,pm->bmc", x.flatten(2).double(), self.onehot).flatten(1)
        return means @ self.a.T


def test_a_reference_image_is_embedded_once_for_all_inputs():
    """Three inputs against one reference image: the reference costs one forward pass, not one per input."""
    model, seen = LinearEmbedder(), []
    model.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    xs = torch.rand(3, 3, H, W, generator=torch.Generator().manual_seed(6))
    ref = torch.rand(3, H, W, generator=torch.Generator().manual_seed(7))
    out = explain(model, xs, task="similarity", reference=ref, baseline="reference", method="ablation",
                  segments=SEGMENTS.numpy())
    assert len(out) == 3
    assert sum(seen) == 1 + sum(e.evaluations for e in out)  # one batch of one: the reference, once


@pytest.mark.parametrize("method", ["kernelshap", "ablation"])
def test_reference_baseline_gives_exactly_zero_where_the_images_agree(method):
    x = torch.rand(3, H, W, generator=torch.Generator().manual_seed(4))
    ref = x.clone()
    ref[:, :4, 8:12] = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(5))  # segment 2
    model = LinearEmbedder()
    (expl,) = explain(model, x, task="similarity", reference=ref, baseline="reference", method=method,
                      segments=SEGMENTS.numpy(), samples=300 if method == "kernelshap" else None)
    e, e_ref = model(x[None])[0], model(ref[None])[0]
    cos = float(e @ e_ref / (e.norm() * e_ref.norm()))
    phi = expl.scores[0]
    others = np.delete(phi, 2)
    # ablation: the composed images are bit for bit x, so exactly 0; kernelshap's least squares leaves rounding only
    assert np.abs(others).max() <= (0.0 if method == "ablation" else 1e-9)
    if method == "kernelshap":
        assert phi.sum() == pytest.approx(cos - 1.0, abs=1e-12)
        assert expl.attribution.baseline_score[0] == pytest.approx(1.0, abs=1e-12)
    assert expl.target_scores[0] == pytest.approx(cos, abs=1e-12)
    assert expl.to_json()["targets"][0]["kind"] == "reference" and expl.baseline == "reference"


def test_zero_shot_equals_classification_on_tau_times_cosine():
    model = LinearEmbedder()
    prompts = torch.randn(4, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    tau = 7.0

    def classifier(x: torch.Tensor) -> torch.Tensor:
        e = model(x)
        return tau * (e / e.norm(dim=1, keepdim=True)) @ (prompts / prompts.norm(dim=1, keepdim=True)).T

    x = torch.rand(3, H, W, generator=torch.Generator().manual_seed(7))
    common = dict(method="kernelshap", samples=400, segments=SEGMENTS.numpy(), baseline="blur", top_k=2, seed=3)
    (zero_shot,) = explain(model, x, task="similarity", reference=prompts.numpy(), temperature=tau, **common)
    (classes,) = explain(classifier, x, task="classification", output="probs", **common)
    assert list(zero_shot.targets) == list(classes.targets)
    np.testing.assert_allclose(zero_shot.target_scores, classes.target_scores, atol=1e-6)
    np.testing.assert_allclose(zero_shot.scores, classes.scores, atol=1e-6)
    assert zero_shot.to_json()["params"]["task"]["temperature"] == tau


def test_segmentation_evaluation_scores_the_region_and_a_mask_overrides_it(tmp_path):
    fast = dict(method="kernelshap", samples=120, n_segments=30, eval_step=0.1, deletion="baseline")
    (expl,) = explain(str(SEGMENTER), str(SEG_SCENE), region=str(SEG_MASK), evaluate=True, **fast)
    block = expl.evaluation
    assert block["mask"] == "region" and len(block["pointing_hit"]) == 1 and "deletion_auc" in block
    assert expl.details[0].label == "circle" and expl.output_space == "probs"
    other = np.zeros((128, 128), np.uint8)
    other[:10, :10] = 255
    Image.fromarray(other).save(tmp_path / "corner.png")
    (again,) = explain(str(SEGMENTER), str(SEG_SCENE), region=str(SEG_MASK), evaluate=True,
                       mask=str(tmp_path / "corner.png"), **fast)
    assert "mask" not in again.evaluation and again.evaluation["energy_in_mask"][0] < block["energy_in_mask"][0]


def test_sample_models_end_to_end_json_and_pictures(cli, tmp_path):
    out = tmp_path / "out"
    r = cli("run", SEGMENTER, SEG_SCENE, "-m", "ablation", "--n-segments", "20", "--out", out, "-q")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "scene_01.ablation.json").read_text())
    assert doc["output_space"] == "probs" and doc["targets"][0]["region"]["source"] == "predicted"
    r = cli("run", EMBEDDER, SIM_IMAGE, "-m", "ablation", "--n-segments", "20", "--out", out, "-q",
            "--reference", PROMPTS, "--labels", PROMPT_LABELS, "-k", "2")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "cross_00.ablation.json").read_text())
    assert [t["label"] for t in doc["targets"]][0] == "cross" and doc["output_space"] == "zero-shot probs"
    r = cli("run", EMBEDDER, SIM_IMAGE, "-m", "ablation", "--n-segments", "20", "--out", out / "ref", "-q",
            "--reference", SIM_OTHER, "--baseline", "reference")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "ref" / "cross_00.ablation.json").read_text())
    assert doc["targets"][0]["reference"] == "image" and doc["targets"][0]["baseline_score"] == pytest.approx(1.0)
    with Image.open(out / "ref" / "cross_00.ablation.png") as png:  # the reference's panel beside the map
        assert png.width > png.height



def test_the_json_carries_the_region_exactly_and_compare_outlines_it(cli, tmp_path):
    from explain_cli.render.montage import region_shape
    from explain_cli.rle import rle_decode

    out = tmp_path / "out"
    r = cli("run", SEGMENTER, SEG_SCENE, "-m", "ablation", "--n-segments", "20", "--region", SEG_MASK, "--save-map",
            "--out", out, "-q")
    assert r.exit_code == 0, r.stderr
    region = json.loads((out / "scene_01.ablation.json").read_text())["targets"][0]["region"]
    expected = np.asarray(Image.open(SEG_MASK)) == 1  # the file's first object (id 1), at the image's pixels
    assert region["frame"] == "original" and (rle_decode(region["rle"]) == expected).all()
    assert isinstance(region_shape(region), np.ndarray)  # compare draws the outline, not the bounding box
    assert region_shape(dict(region, rle={"size": [2, 2], "counts": [1]})) == region["bbox"]  # damaged: the box
    r = cli("compare", out)
    assert r.exit_code == 0, r.stderr

def _png(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return path


def _npy(path, array):
    np.save(path, np.asarray(array), allow_pickle=False)
    return path


BAD = {
    "region of the wrong size": (lambda d: [SEGMENTER, SEG_SCENE, "--region", _png(d / "r.png", np.ones((10, 12)))],
                                 "--region is 10x12"),
    "empty region": (lambda d: [SEGMENTER, SEG_SCENE, "--region", _png(d / "r.png", np.zeros((128, 128)))],
                     "--region is empty"),
    "reference of the wrong dimension": (lambda d: [EMBEDDER, SIM_IMAGE, "--reference", _npy(d / "r.npy", np.ones(5))],
                                         "--reference has the wrong dimension"),
    "zero reference": (lambda d: [EMBEDDER, SIM_IMAGE, "--reference", _npy(d / "r.npy", np.zeros(32))],
                       "--reference is a zero vector"),
    "3-D reference array": (lambda d: [EMBEDDER, SIM_IMAGE, "--reference", _npy(d / "r.npy", np.ones((2, 2, 2)))],
                            "give a (D,) embedding"),
    "prompts and labels of different lengths": (
        lambda d: [EMBEDDER, SIM_IMAGE, "--reference", PROMPTS, "--labels", _txt(d / "l.txt", "a\nb\nc\n")],
        "--labels gives 3 names but the reference has 4"),
    "segmentation output not 4-D": (lambda d: [EMBEDDER, SIM_IMAGE, "--task", "segmentation"],
                                    "not (batch, classes, height, width)"),
    "similarity output not 2-D": (lambda d: [SEGMENTER, SEG_SCENE, "--task", "similarity", "--reference", PROMPTS],
                                  "not (batch, dimensions)"),
    "region with another task": (lambda d: [CLASSIFIER, SIM_IMAGE, "--region", SEG_MASK],
                                 "--region applies to task segmentation, not classification"),
    "reference with segmentation": (lambda d: [SEGMENTER, SEG_SCENE, "--reference", PROMPTS],
                                    "--reference applies to task similarity, not segmentation"),
    "temperature with classification": (lambda d: [CLASSIFIER, SIM_IMAGE, "--temperature", "10"],
                                        "--temperature applies to task similarity"),
    "min area with similarity": (lambda d: [EMBEDDER, SIM_IMAGE, "--reference", PROMPTS, "--min-area", "0.1"],
                                 "--min-area applies to task segmentation"),
    "baseline reference with segmentation": (lambda d: [SEGMENTER, SEG_SCENE, "--baseline", "reference"],
                                             "--baseline reference applies to task similarity"),
    "baseline reference with an embedding": (
        lambda d: [EMBEDDER, SIM_IMAGE, "--reference", PROMPTS, "--baseline", "reference"],
        "--baseline reference needs a reference image"),
    "baseline reference of another size": (
        lambda d: [EMBEDDER, SIM_IMAGE, "--reference", _png(d / "big.png", np.zeros((64, 64, 3))), "--baseline",
                   "reference", "--preprocess", "none"],
        "--baseline reference needs a reference image of the input's size"),
    "missing reference": (lambda d: [EMBEDDER, SIM_IMAGE], "--reference is required"),
}


def _txt(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, cli, tmp_path):
    args, message = BAD[case]
    out = tmp_path / "out"
    r = cli("run", *args(tmp_path), "--method", "ablation", "--n-segments", "9", "--out", out)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not out.exists()


def test_python_errors_name_the_option():
    x = torch.rand(3, H, W)
    with pytest.raises(OptionError, match="region applies to task segmentation"):
        explain(LinearEmbedder(), x, task="similarity", reference=np.ones(8), region=np.ones((H, W)))
    with pytest.raises(ExplainError, match="batch of 2 images"):
        explain(LinearEmbedder(), x, task="similarity", reference=torch.rand(2, 3, H, W))
    (expl,) = explain(LinearEmbedder(), x, task="similarity", reference=Image.new("RGB", (W, H), (9, 99, 199)),
                      method="ablation", segments=SEGMENTS.numpy(), preprocess="none")
    assert expl.details[0].reference == "image" and expl.details[0].thumbnail.shape == (H, W, 3)


@pytest.mark.parametrize("config", ["configs/segmentation.yaml", "configs/similarity.yaml"])
def test_the_shipped_configs_plan(config, cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    r = cli("batch", config, "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert "nothing written" in r.stderr and ".kernelshap.png" in r.stdout
