"""The first hour with the Python API and configs (issue 24, items 9-17): no traps a new user falls into."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from explain_cli import ExplainError, Explainer, ExplainWarning, explain
from tests.conftest import make_linear


def _image(path: Path, size: tuple[int, int] = (24, 32)) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


# 9. warnings reach Python users -----------------------------------------------------------------

def test_random_weights_warn_through_warnings_once_and_stay_in_the_json():
    """Failed before: a torchvision model with random weights warned only in to_dict()['warnings']."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (e,) = explain("torchvision:resnet18", torch.rand(3, 32, 32), method="ablation", segments="grid",
                       n_segments=9, target=[0])
    mine = [w for w in caught if issubclass(w.category, ExplainWarning)]
    assert [str(w.message) for w in mine if "random weights" in str(w.message)] == [e.model["notes"][0]]
    assert mine[0].filename == __file__  # attributed to the caller's line, not the library's
    assert issubclass(ExplainWarning, UserWarning)
    assert any("random weights" in m for m in e.to_dict()["warnings"])


def test_engine_warnings_are_issued_too(linear_script, small_image):
    with pytest.warns(ExplainWarning, match="only 4 superpixels") as record:
        (e,) = explain(str(linear_script), str(small_image), method="ablation", segments="grid", n_segments=4)
    assert {str(w.message) for w in record} <= set(e.warnings)


def test_warnings_can_be_silenced_the_usual_way(linear_script, small_image):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExplainWarning)
        (e,) = explain(str(linear_script), str(small_image), method="ablation", segments="grid", n_segments=4)
    assert e.warnings  # still recorded


# 10. positions, labels and classes ---------------------------------------------------------------

@pytest.fixture(scope="module")
def two_targets(linear_script, small_image):
    (e,) = explain(str(linear_script), str(small_image), method="ablation", segments="grid", n_segments=9,
                   target=[2, 0])
    assert e.targets == [2, 0] and e.labels == ["cat", "ant"]
    return e


def test_pixel_map_zero_is_the_first_explained_target(two_targets):
    """Failed before: pixel_map(0) meant class 0 (here the second target; a KeyError when not explained)."""
    e = two_targets
    np.testing.assert_array_equal(e.pixel_map(0), e.pixel_maps()[0])
    np.testing.assert_array_equal(e.pixel_map(), e.pixel_maps()[0])
    np.testing.assert_array_equal(e.pixel_map(1), e.pixel_maps()[1])
    np.testing.assert_array_equal(e.pixel_map(-1), e.pixel_maps()[1])
    np.testing.assert_array_equal(e.pixel_map("cat"), e.pixel_maps()[0])
    np.testing.assert_array_equal(e.pixel_map(class_index=0), e.pixel_maps()[1])
    assert e.top(3, 1) == e.top(3, class_index=0) == e.top(3, "ant")


@pytest.mark.parametrize("call, words", [
    (lambda e: e.pixel_map(2), "not a position among the 2 explained targets"),
    (lambda e: e.top(3, class_index=1), "class 1 was not explained"),
    (lambda e: e.pixel_map("bee"), "'bee' was not explained"),
    (lambda e: e.pixel_map(1.0), "must be a position"),
    (lambda e: e.top(3, 1, class_index=0), "not both"),
])
def test_targets_not_explained_are_explain_errors(two_targets, call, words):
    with pytest.raises(ExplainError, match=words):
        call(two_targets)


# 11. ImageNet names for a live torchvision or timm classifier -----------------------------------

@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "squeezenet1_1"])  # a Linear head, a 1x1-conv head
def test_live_torchvision_classifier_gets_imagenet_labels(arch):
    import torchvision

    net = torchvision.models.get_model(arch, weights=None)
    explainer = Explainer(net)
    assert explainer.model.labels[281] == "tabby"
    assert explainer.model.describe()["labels_from"].startswith("imagenet (a torchvision ")
    # another head keeps no names: a fine-tuned classifier's classes are not ImageNet's
    assert Explainer(torchvision.models.get_model(arch, weights=None, num_classes=10)).model.labels is None
    assert Explainer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1000))).model.labels is None


# 12. tensors and a matplotlib axes ---------------------------------------------------------------

def test_tensors_on_request(two_targets):
    t = two_targets.tensors()
    assert isinstance(t["scores"], torch.Tensor) and t["scores"].shape == two_targets.scores.shape
    assert t["pixel_maps"].shape == (2, 24, 32) and t["pixel_maps"].dtype == torch.float32
    assert t["segments"].dtype == torch.int64 and t["stderr"] is None
    torch.testing.assert_close(t["scores"], torch.from_numpy(two_targets.scores))


class _Axes:
    """Records what plot() asks of a matplotlib axes (the test needs no matplotlib)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.figure = self

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs)) or name


def test_plot_draws_the_chosen_target_on_the_axes_given(two_targets):
    ax = _Axes()
    assert two_targets.plot(1, ax=ax) is ax
    names = [c[0] for c in ax.calls]
    assert names == ["imshow", "imshow", "set_title", "set_axis_off", "colorbar"]
    heat = ax.calls[1]
    np.testing.assert_array_equal(heat[1][0], two_targets.pixel_maps()[1])
    assert heat[2]["cmap"] == "RdBu_r" and heat[2]["vmin"] == -heat[2]["vmax"]  # signed: centred at 0
    assert "ant (0)" in ax.calls[2][1][0]


def test_plot_with_matplotlib(two_targets):
    pytest.importorskip("matplotlib", reason="matplotlib is optional (explain_cli[plot]); not installed here")
    import matplotlib

    matplotlib.use("Agg")
    ax = two_targets.plot(0)
    assert ax.get_title().startswith("ablation · cat (2)")


def test_plot_without_matplotlib_says_how_to_install(two_targets, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)  # imported by an earlier test: the import must run again
    with pytest.raises(ExplainError, match=r"pip install 'explain_cli\[plot\]'"):
        two_targets.plot(0)


# 14. random weights travel with an exported file -------------------------------------------------

def test_a_file_exported_from_random_weights_warns_when_explained(tmp_path, small_image):
    from explain_cli.models.base import LoadedModel
    from explain_cli.models.export import export_metadata

    random = LoadedModel(module=make_linear(), source="torchvision:resnet18", kind="torchvision", sha256=None,
                         weights=None, device=torch.device("cpu"))
    meta = export_metadata(random)
    assert meta["random_weights"] is True
    trained = LoadedModel(module=make_linear(), source="torchvision:resnet18", kind="torchvision", sha256="0" * 64,
                          weights="w.safetensors", device=torch.device("cpu"))
    assert "random_weights" not in export_metadata(trained)
    # a file carrying the note warns when it is explained, and says so in the JSON
    path = tmp_path / "random.pt"
    meta.update(preprocess={"size": [16, 16]}, in_channels=3)
    torch.jit.script(make_linear()).save(str(path), _extra_files={"explain_cli.json": json.dumps(meta)})
    with pytest.warns(ExplainWarning, match="exported from an architecture without trained weights"):
        (e,) = explain(str(path), str(small_image), method="ablation", segments="grid", n_segments=9)
    assert any("random_weights" in note for note in e.model["notes"])


@pytest.mark.slow
def test_export_cli_warns_and_records_random_weights(cli, tmp_path, small_image):
    out = tmp_path / "net.pt2"
    r = cli("export", "torchvision:squeezenet1_1", out, "--size", "32")
    assert r.exit_code == 0, r.stderr
    assert "explain: warning: exporting random weights" in r.stderr and "--weights" in r.stderr
    import zipfile

    with zipfile.ZipFile(out) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("explain_cli.json")]
        assert json.loads(archive.read(name))["random_weights"] is True
    r = cli("run", out, small_image, "--method", "ablation", "--segments", "grid", "--n-segments", "4",
            "--size", "32", "--out", tmp_path / "o", "--quiet")  # the size it was traced at
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "o" / "small.ablation.json").read_text())
    assert any("random_weights" in w for w in doc["warnings"])


# 15. a mask that cannot be scored fails before the first evaluation ------------------------------

class _Counting(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = make_linear()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(torch.nn.functional.interpolate(x, size=(16, 16)))


def test_wrong_sized_mask_fails_before_any_evaluation(tmp_path, small_image):
    """Failed before: the size was compared after the whole explanation (57 s on the sample model)."""
    mask = np.zeros((10, 10), np.uint8)
    mask[2:5, 2:5] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    net = _Counting()
    with pytest.raises(ExplainError, match=r"mask is \[10, 10\] but the input small.png is \[24, 32\]"):
        explain(net, str(small_image), mask=str(tmp_path / "mask.png"), method="ablation", segments="grid")
    assert net.calls == 0


def test_wrong_sized_mask_on_the_command_line(cli, tmp_path, linear_script, small_image):
    np.save(tmp_path / "mask.npy", np.ones((8, 8), bool))
    r = cli("run", linear_script, small_image, "--mask", tmp_path / "mask.npy", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "--mask is [8, 8] but the input small.png is [24, 32]" in r.stderr
    assert not (tmp_path / "o").exists()


# 16. --method on the command line replaces a config's methods ------------------------------------

def _job(tmp_path: Path, linear_script: Path, image: Path, methods: list) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"model": str(linear_script), "inputs": [str(image)], "segments": "grid",
                                    "n_segments": 9, "out": str(tmp_path / "out"), "methods": methods}))
    return path


def test_method_on_the_command_line_overrides_the_config(cli, tmp_path, linear_script, small_image):
    """Failed before: the config's ablation ran with --samples and failed with 'samples ... not ablation'."""
    job = _job(tmp_path, linear_script, small_image, ["ablation"])
    r = cli("run", "--config", job, "--method", "lime", "--samples", "30", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["small.lime.json", "small.lime.png"]
    assert json.loads((tmp_path / "out" / "small.lime.json").read_text())["params"]["samples"] == 30


def test_method_listed_in_the_config_keeps_its_entry(cli, tmp_path, linear_script, small_image):
    job = _job(tmp_path, linear_script, small_image, ["ablation", {"method": "lime", "samples": 24}])
    r = cli("run", "--config", job, "--method", "lime", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert json.loads((tmp_path / "out" / "small.lime.json").read_text())["params"]["samples"] == 24
    assert not (tmp_path / "out" / "small.ablation.json").exists()


# 17. every config problem in one pass -------------------------------------------------------------

def test_config_validation_reports_every_problem_at_once(cli, tmp_path, linear_script, small_image):
    """Failed before: 'applies to X, not Y' came only after the type errors were fixed."""
    job = _job(tmp_path, linear_script, small_image,
               [{"method": "lime", "samples": "many", "masks": 10}, {"method": "ablation", "kernel_width": 0.5}])
    data = yaml.safe_load(job.read_text())
    data["size"] = "huge"
    data["grid"] = 4
    job.write_text(yaml.safe_dump(data))
    r = cli("run", "--config", job)
    assert r.exit_code == 2
    for problem in ["jobs[0].methods[0].samples: must be an integer",
                    "jobs[0].methods[0].masks: applies to rise, not lime",
                    "jobs[0].methods[1].kernel_width: applies to lime, not ablation",
                    "jobs[0].size: must be H or H,W",
                    "jobs[0].grid: applies to rise, not lime",
                    "jobs[0].grid: applies to rise, not ablation"]:
        assert problem in r.stderr, r.stderr
    assert r.stderr.count("explain: error:") == 6


def test_command_line_options_wrong_for_the_method_are_named_as_flags(cli, tmp_path, linear_script, small_image):
    job = _job(tmp_path, linear_script, small_image, ["ablation"])
    r = cli("run", "--config", job, "--masks", "10")
    assert r.exit_code == 2 and "--masks (command line): applies to rise, not ablation" in r.stderr
