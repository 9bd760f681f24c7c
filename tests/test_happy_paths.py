"""Happy paths the error corpus does not cover: every baseline, --set, and every segmenter."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import yaml

from explain_cli import ExplainWarning, explain
from explain_cli.baselines import make_baseline
from explain_cli.options.parse import parse_baseline
from explain_cli.preprocess import PRESETS
from tests.conftest import SAMPLE_IMAGES, SAMPLE_MODEL, make_linear
from tests.helpers import assert_refused


@pytest.mark.parametrize("spec", ["zero", "mean", "blur", "value:255,0,0"])
def test_every_baseline_is_used_and_efficiency_holds(spec):
    """f(baseline) equals the model on the baseline the spec describes, and Σφ = f(x) − f(b)."""
    model = make_linear(k=2, h=16, w=16)
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    (e,) = explain(model, x, method="kernelshap", baseline=spec, samples=200, output="logits", segments="grid",
                   n_segments=9, preprocess="none")
    b = make_baseline(parse_baseline(spec), x, PRESETS["none"], input_kind="tensor")
    expected = model(b[None])[0, e.targets[0]].item()
    assert e.attribution.baseline_score[0] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert e.scores[0].sum() == pytest.approx(e.target_scores[0] - expected, abs=1e-6)
    if spec == "value:255,0,0":
        assert torch.allclose(b[0], torch.full((16, 16), 255.0)) and float(b[1:].abs().max()) == 0.0  # raw units for tensors
    if spec == "mean":
        assert torch.allclose(b.mean(dim=(1, 2)), x.mean(dim=(1, 2)), atol=1e-6)


@pytest.mark.parametrize("algorithm", ["slic", "quickshift", "felzenszwalb", "watershed", "grid"])
def test_every_segmenter_explains_the_sample_image(algorithm):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExplainWarning)  # quickshift and felzenszwalb cut few segments here
        (e,) = explain(str(SAMPLE_MODEL), SAMPLE_IMAGES[0], method="ablation", segments=algorithm)
    assert all("superpixels; the map will be coarse" in str(w.message) for w in caught)
    m = e.segmentation.n_segments
    assert e.segmentation.algorithm == algorithm and m >= 2
    assert set(np.unique(e.segments)) == set(range(m))  # contiguous ids
    assert e.scores.shape == (1, m) and e.evaluations == m + 2


def test_set_overrides_every_job(cli, tmp_path, linear_script):
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).random((3, 16, 16)).astype(np.float32))
    config = {"defaults": {"seed": 0, "out": str(tmp_path / "out")},
              "jobs": [{"model": str(linear_script), "inputs": [str(x)], "methods": [{"method": "lime", "samples": 50}]}]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("batch", path, "--set", "samples=40", "--set", "seed=7", "--quiet")
    assert result.exit_code == 0, result.stderr
    doc = json.loads((tmp_path / "out" / "x.lime.json").read_text())
    assert doc["evaluations"] == 40 and doc["seed"] == 7  # the command line beats the method entry
    refused = cli("batch", path, "--set", "method=rise")
    assert_refused(refused, "methods are chosen per job")


def test_evaluate_command_reproduces_the_in_run_evaluation(cli, tmp_path):
    """`explain evaluate` on a saved JSON + map gives the numbers `explain run --evaluate` gave."""
    from tests.conftest import ROOT

    image = ROOT / "sample_models" / "eval" / "circle_00.png"
    mask = ROOT / "sample_models" / "eval" / "circle_00.mask.png"
    base = ["run", SAMPLE_MODEL, image, "--method", "ablation", "--save-map", "-q"]
    assert cli(*base, "--evaluate", "--mask", mask, "--eval-step", "0.05", "--out", tmp_path / "a").exit_code == 0
    assert cli(*base, "--out", tmp_path / "b").exit_code == 0  # no evaluation yet
    saved = tmp_path / "b" / "circle_00.ablation.json"
    result = cli("evaluate", saved, "--mask", mask, "--eval-step", "0.05")
    assert result.exit_code == 0, result.stderr
    want = json.loads((tmp_path / "a" / "circle_00.ablation.json").read_text())["evaluation"]
    got = json.loads(saved.read_text())["evaluation"]
    for key in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc", "energy_in_mask"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)
    assert got["pointing_hit"] == want["pointing_hit"]
    assert (tmp_path / "b" / "circle_00.ablation.curves.png").is_file()
