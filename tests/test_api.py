"""The Python API (`explain_cli.explain`, `Explainer`, `Explanation`) against the CLI and known answers."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explain_cli import ExplainWarning, Explanation, OptionError, explain
from explain_cli.segmentation import grid_labels
from tests.conftest import ROOT, make_linear

FAST = {"kernelshap": {"samples": 64}, "lime": {"samples": 64}}


def _x(seed: int = 5) -> torch.Tensor:
    return torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def tensor_input(tmp_path):
    x = _x()
    path = tmp_path / "x.npy"
    np.save(path, x.numpy())
    return path, x


def _doc_scores(doc: dict) -> dict[int, list[float]]:
    return {t["index"]: [s["score"] for s in t["segments"]] for t in doc["targets"]}


def _api_scores(e: Explanation) -> dict[int, list[float]]:
    return {int(t): [float(v) for v in e.scores[k]] for k, t in enumerate(e.targets)}


# 1. explain() on a live module == `explain run` on the same model as TorchScript --------------

@pytest.mark.parametrize("method", ["kernelshap", "lime"])
def test_api_live_module_equals_cli_torchscript(method, cli, tmp_path, tensor_input):
    path, x = tensor_input
    model = make_linear()
    scripted = torch.jit.script(make_linear())
    model_path = tmp_path / "lin.pt"
    meta = {"labels": ["ant", "bee", "cat"], "in_channels": 3, "preprocess": {"size": [16, 16]}}
    scripted.save(str(model_path), _extra_files={"explain_cli.json": json.dumps(meta)})
    samples = FAST[method]["samples"]
    opts = dict(method=method, seed=7, samples=samples, segments="grid", n_segments=9, output="logits",
                target=[0, 2])
    (e,) = explain(model, torch.from_numpy(np.load(path)), **opts)  # the same .npy, as a tensor
    out = tmp_path / "out"
    r = cli("run", model_path, path, "--method", method, "--seed", "7", "--samples", str(samples),
            "--segments", "grid", "--n-segments", "9", "--output", "logits", "--target", "0", "--target", "2",
            "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / f"x.{method}.json").read_text())
    assert doc["evaluations"] == e.evaluations
    api, cmd = _api_scores(e), _doc_scores(doc)
    assert sorted(api) == sorted(cmd) == [0, 2]
    for k in api:
        assert len(api[k]) == len(cmd[k]) == 9
        np.testing.assert_allclose(api[k], cmd[k], rtol=1e-6, atol=1e-9)
    # a different seed must change the numbers (so the comparison above is not vacuous for sampling methods)
    (other,) = explain(model, x, **{**opts, "seed": 8})
    assert not np.allclose(other.scores, e.scores, rtol=1e-9, atol=0)


# 2. user label maps ---------------------------------------------------------------------------

def _grid_opts():
    return dict(method="kernelshap", samples=64, seed=3, output="logits", target=[0, 1])


def test_label_map_array_equals_grid():
    model, x = make_linear(), _x()
    (grid,) = explain(model, x, segments="grid", n_segments=9, **_grid_opts())
    labels = grid_labels((16, 16), 9)
    (user,) = explain(model, x, segments=labels, **_grid_opts())
    np.testing.assert_array_equal(user.segments, grid.segments)
    np.testing.assert_allclose(user.scores, grid.scores, rtol=1e-9, atol=1e-12)
    (torch_map,) = explain(model, x, segments=torch.from_numpy(labels), **_grid_opts())
    np.testing.assert_allclose(torch_map.scores, grid.scores, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("suffix", [".npy", ".png"])
def test_label_map_file_equals_grid_through_cli(suffix, cli, linear_script, tensor_input, tmp_path):
    path, _ = tensor_input
    labels = grid_labels((16, 16), 9)
    label_file = tmp_path / f"labels{suffix}"
    if suffix == ".npy":
        np.save(label_file, labels)
    else:
        Image.fromarray(labels.astype(np.uint8), mode="L").save(label_file)
    common = ["run", linear_script, path, "--samples", "64", "--seed", "3", "--output", "logits", "--quiet",
              "--target", "0", "--target", "1"]
    a = cli(*common, "--segments", "grid", "--n-segments", "9", "--out", tmp_path / "a")
    b = cli(*common, "--segments", label_file, "--out", tmp_path / "b")
    assert a.exit_code == 0, a.stderr
    assert b.exit_code == 0, b.stderr
    da = json.loads((tmp_path / "a" / "x.kernelshap.json").read_text())
    db = json.loads((tmp_path / "b" / "x.kernelshap.json").read_text())
    assert db["segmentation"]["n_segments"] == 9
    assert [[s["area"] for s in t["segments"]] for t in da["targets"]] == \
        [[s["area"] for s in t["segments"]] for t in db["targets"]]
    for k, scores in _doc_scores(da).items():
        np.testing.assert_allclose(_doc_scores(db)[k], scores, rtol=1e-9, atol=1e-12)


def test_label_map_at_original_resolution_is_carried_through_resize(linear_script, small_image):
    # small_image is 24x32; the scripted model's metadata resizes it to 16x16
    labels = np.zeros((24, 32), np.int64)
    labels[:, 16:] = 1  # left half / right half
    with pytest.warns(ExplainWarning, match="only 2 superpixels"):
        (e,) = explain(str(linear_script), str(small_image), segments=labels, method="ablation", target=[0])
    assert e.segments.shape == (16, 16)
    assert e.scores.shape == (1, 2)
    expected = np.zeros((16, 16), np.int64)
    expected[:, 8:] = 1
    np.testing.assert_array_equal(e.segments, expected)
    assert e.pixel_map(0).shape == (24, 32)
    # and at the model's resolution it is taken as it is
    with pytest.warns(ExplainWarning, match="only 2 superpixels"):
        (m,) = explain(str(linear_script), str(small_image), segments=expected, method="ablation", target=[0])
    np.testing.assert_allclose(m.scores, e.scores, rtol=1e-9)


@pytest.mark.parametrize("labels", [
    np.zeros((2, 16, 16), np.int64),  # 3-D
    np.full((16, 16), 0.5),  # fractional floats
    np.zeros((5, 7), np.int64),  # neither the input's nor the model's shape
], ids=["3d", "fractional", "wrong-shape"])
def test_bad_label_maps_raise_option_error(labels):
    with pytest.raises(OptionError) as info:
        explain(make_linear(), _x(), segments=labels, method="ablation")
    assert info.value.option == "segments"
    assert "segments" in str(info.value)


# 3. callable target ---------------------------------------------------------------------------

def test_callable_target_equals_index():
    model, x = make_linear(), _x()
    opts = dict(method="kernelshap", samples=64, seed=1, segments="grid", n_segments=9, output="logits")
    (by_index,) = explain(model, x, target=1, **opts)
    (by_fn,) = explain(model, x, target=lambda out: out[:, 1], **opts)
    assert by_fn.scores.shape == by_index.scores.shape == (1, 9)
    np.testing.assert_allclose(by_fn.scores, by_index.scores, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(by_fn.target_scores, by_index.target_scores, rtol=1e-9)
    assert by_fn.output_space == "callable"


# 4. input forms -------------------------------------------------------------------------------

def test_input_forms(tmp_path):
    model = make_linear()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    png = tmp_path / "img.png"
    Image.fromarray(pixels).save(png)
    opts = dict(method="kernelshap", samples=64, seed=2, segments="grid", n_segments=9, output="logits",
                target=[0], preprocess="none")
    (from_u8,) = explain(model, pixels, **opts)
    (from_png,) = explain(model, png, **opts)
    (from_pil,) = explain(model, Image.fromarray(pixels), **opts)
    (from_float,) = explain(model, pixels.astype(np.float64) / 255.0, **opts)
    np.testing.assert_allclose(from_png.scores, from_u8.scores, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(from_pil.scores, from_u8.scores, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(from_float.scores, from_u8.scores, rtol=1e-5, atol=1e-6)
    chw = torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / 255.0)
    (from_chw,) = explain(model, chw, **opts)
    np.testing.assert_allclose(from_chw.scores, from_u8.scores, rtol=1e-5, atol=1e-6)
    for e in (from_u8, from_png, from_pil, from_float, from_chw):
        assert e.scores.shape == (1, 9)
    nchw = torch.stack([chw, _x(9)])
    both = explain(model, nchw, **opts)
    assert len(both) == 2
    np.testing.assert_allclose(both[0].scores, from_chw.scores, rtol=1e-6, atol=1e-9)
    assert not np.allclose(both[1].scores, both[0].scores)


# 5. the Explanation object ----------------------------------------------------------------------

class _Pooled(torch.nn.Module):
    """Accepts any size: the crop of `--preprocess imagenet` leaves part of a wide image unseen."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(4, 3 * 4 * 4, generator=g), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) @ self.w.T


@pytest.fixture(scope="module")
def cropped() -> Explanation:
    """Two targets, classes [1, 0] (class 0 second), on a wide image that the imagenet preset crops."""
    wide = np.random.default_rng(1).integers(0, 256, (40, 80, 3), dtype=np.uint8)
    (e,) = explain(_Pooled(), wide, method="kernelshap", samples=64, segments="grid", n_segments=16,
                   preprocess="imagenet", top_k=2, output="logits")
    assert e.targets == [1, 0]  # the case where a row number and a class index disagree
    return e


def test_explanation_scores_and_top_by_class(cropped):
    e = cropped
    assert e.scores.shape == (2, e.segmentation.n_segments) == (2, 16)
    for k, index in enumerate(e.targets):
        top = e.top(3, class_index=index)
        assert top == e.top(3, k) == e.top(3, target=k)  # a position is the row; class_index names the class
        assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
        order = np.argsort(-e.scores[k], kind="stable")[:3]
        assert [g for g, _ in top] == [int(g) for g in order]
        assert [s for _, s in top] == pytest.approx([float(e.scores[k, g]) for g in order])


def test_top_default_is_the_first_explained_target(cropped):
    e = cropped
    top = e.top(3)
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert [g for g, _ in top] == [int(g) for g in np.argsort(-e.scores[0], kind="stable")[:3]]


def test_png_numbers_each_panels_own_top_segments(cropped, monkeypatch):
    import explain_cli.render.figures as figures

    seen = {}
    real = figures.render_image

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(figures, "render_image", spy)
    cropped._repr_png_()
    for k in range(len(cropped.targets)):
        expected = [int(g) for g in np.argsort(-cropped.scores[k], kind="stable")[:len(seen["top_segments"][k])]]
        assert seen["top_segments"][k] == expected, f"panel {k} (class {cropped.targets[k]}) numbers another row"


def test_pixel_map_nan_only_outside_crop(cropped):
    e = cropped
    pm = e.pixel_map(0)
    assert pm.shape == (40, 80)
    assert e.pixel_maps().shape == (2, 40, 80)
    # the imagenet preset crops the centre square: NaN exactly outside the window the model saw
    top_, left, h, w = e.geometry.box
    assert left > 10 and left + w < 70  # the crop leaves columns out on both sides
    t, l, b, r = e.geometry.pixel_box()
    assert abs(t - top_) <= 1 and abs(l - left) <= 1 and abs(b - (top_ + h)) <= 1 and abs(r - (left + w)) <= 1
    window = np.zeros(pm.shape, bool)
    window[t:b, l:r] = True
    np.testing.assert_array_equal(np.isnan(pm), ~window)
    np.testing.assert_array_equal(e.pixel_map(1), e.pixel_maps()[1])
    np.testing.assert_array_equal(e.pixel_map(class_index=e.targets[1]), e.pixel_maps()[1])


def test_save_to_dict_render_match_cli(cli, linear_script, small_image, tmp_path):
    opts = dict(method="lime", samples=64, seed=4, segments="grid", n_segments=9, top_k=2)
    with pytest.warns(ExplainWarning, match="every LIME coefficient is ~0"):  # saturated softmax: in the JSON too
        (e,) = explain(str(linear_script), str(small_image), **opts)
    written = e.save(tmp_path / "api")
    r = cli("run", linear_script, small_image, "--method", "lime", "--samples", "64", "--seed", "4",
            "--segments", "grid", "--n-segments", "9", "--top-k", "2", "--out", tmp_path / "cli", "--quiet")
    assert r.exit_code == 0, r.stderr
    api_files = sorted(p.name for p in (tmp_path / "api").iterdir())
    cli_files = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert api_files == cli_files == ["small.lime.json", "small.lime.png"]
    assert sorted(p.name for p in written) == api_files
    assert [Path(line).name for line in r.stdout.split()] == [p.name for p in written]
    api_doc = json.loads((tmp_path / "api" / "small.lime.json").read_text())
    cli_doc = json.loads((tmp_path / "cli" / "small.lime.json").read_text())
    assert api_doc == e.to_dict()
    for doc in (api_doc, cli_doc):
        doc.pop("timing")
    assert api_doc["input"]["sha256"] == cli_doc["input"]["sha256"]
    assert api_doc["targets"] == cli_doc["targets"]
    assert api_doc == cli_doc
    with Image.open(tmp_path / "api" / "small.lime.png") as png:
        png_size = png.size
    picture = e.render()
    assert isinstance(picture, Image.Image)
    assert picture.size == png_size
    raw = e._repr_png_()
    assert isinstance(raw, bytes) and raw.startswith(b"\x89PNG\r\n\x1a\n")


# 6. progress ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["kernelshap", "ablation"])
def test_progress_callback(method):
    calls: list[tuple[int, int, str]] = []
    (e,) = explain(make_linear(), _x(), method=method, segments="grid", n_segments=9,
                   progress=lambda done, total, text: calls.append((done, total, text)), **FAST.get(method, {}))
    assert calls, "the callback was never called"
    dones = [d for d, _, _ in calls]
    assert dones == sorted(dones), calls
    for done, total, text in calls:
        assert total == e.evaluations, calls
        assert 0 <= done <= total, calls
        assert isinstance(text, str) and text
    assert calls[-1][0] == e.evaluations


def test_progress_true_writes_to_stderr(capsys):
    explain(make_linear(), _x(), method="ablation", segments="grid", n_segments=9, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.search(r"\d+/\d+", captured.err)
    assert "ablation" in captured.err


# 7. training mode -----------------------------------------------------------------------------

def test_training_module_is_explained_in_eval_mode_and_given_back():
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), make_linear())
    model.train()
    opts = dict(method="kernelshap", samples=64, seed=0, segments="grid", n_segments=9, output="logits", target=[0])
    (a,) = explain(model, _x(), **opts)
    assert model.training and model[0].training
    (b,) = explain(model, _x(), **opts)
    assert model.training
    np.testing.assert_array_equal(a.scores, b.scores)
    (plain,) = explain(make_linear(), _x(), **opts)  # dropout off: the bare linear model's numbers
    np.testing.assert_allclose(a.scores, plain.scores, rtol=1e-6, atol=1e-9)


# 8. bad keywords ------------------------------------------------------------------------------

def test_misspelt_keyword_suggests():
    with pytest.raises(OptionError, match="samples") as info:
        explain(make_linear(), _x(), samplez=10)
    assert info.value.option == "samplez"


def test_option_of_another_method():
    with pytest.raises(OptionError) as info:
        explain(make_linear(), _x(), method="lime", masks=10)
    assert info.value.option == "masks"
    assert "rise" in str(info.value)


@pytest.mark.parametrize("option,value,model", [
    ("device", "toaster", "module"), ("device", "cuda:99", "module"),
    ("weights", "w.pth", "module"), ("weights", "w.pth", "file"),
    ("kernel_width", 0.0, "module"), ("kernel_width", -1.0, "module"),
])
def test_python_errors_name_the_option_not_a_flag(option, value, model, linear_script):
    """explain() callers read option names (``kernel_width``), never CLI flags (``--kernel-width``)."""
    kwargs = {option: value, **({"method": "lime"} if option == "kernel_width" else {})}
    with pytest.raises(OptionError) as info:
        explain(make_linear() if model == "module" else linear_script, _x(), **kwargs)
    assert info.value.option == option and str(info.value).startswith(option), str(info.value)
    assert "--" not in str(info.value), str(info.value)


def test_render_takes_drawing_options_and_refuses_a_misspelt_one(cropped):
    e = cropped
    assert e.render(opacity=0.3, scale="panel").size == e.render().size
    with pytest.raises(OptionError, match="did you mean 'opacity'") as info:
        e.render(opacty=0.3)
    assert info.value.option == "opacty"
    with pytest.raises(OptionError, match="at most 1"):
        e.render(opacity=2)
    with pytest.raises(OptionError, match="not a drawing option"):
        e.render(samples=10)


# 9. the README's Python example runs ----------------------------------------------------------

def _readme_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Python API\s*$", text, flags=re.M)
    assert match, 'README.md has no "## Python API" heading'
    block = re.search(r"^```python\n(.*?)^```", text[match.end():], flags=re.M | re.S)
    assert block, 'no ```python block under "## Python API" in README.md'
    return block.group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    code = _readme_python_example()
    # run where the example's relative paths (sample_models/...) resolve, but anything it writes lands in tmp
    (tmp_path / "sample_models").symlink_to(ROOT / "sample_models", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, "README.md:Python API", "exec"), namespace)
