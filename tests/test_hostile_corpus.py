"""Hostile corpus (issue: hostile-input campaign): models, options, configs, targets and outputs.

tests/test_hostile_inputs.py covers bad *input files* (bombs, headers, file-system oddities).
This file covers everything else a hostile or careless user can hand `explain run`:

* every refusal is exit code 2 (or the stated code), ONE line on stderr starting
  ``explain: error:`` with the expected fragment, nothing on stdout, and nothing written;
* option refusals answer in well under 2 s (measured per case), model refusals in a few;
* models that write into their input change nothing; under-determined fits, long runs and
  huge --top-k say so; same seed ⇒ byte-identical numbers; batch size changes every score by at
  most ``BATCH_BOUND`` (relative); a SIGKILL at a random moment never leaves a partial output.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

import explain_cli
from tests.conftest import ROOT, make_linear
from tests.helpers import assert_refused

#: Max |score(batch a) − score(batch b)| / max(1, max |score|) over batch sizes 1, 7, 64, every method.
BATCH_BOUND = 1e-6
#: An option refusal (no model loaded) must answer within this many seconds.
OPTION_BUDGET_S = 2.0
#: A refusal that loads (or runs) a tiny model must answer within this many seconds.
MODEL_BUDGET_S = 5.0


# ---------------------------------------------------------------------------------------------
# Hostile models (TorchScript files with an explain_cli.json) and images.
# ---------------------------------------------------------------------------------------------

class _NaN(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 3), float("nan"))


class _Overflow(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1)[:, :3] + 1.0) * 1e30 * 1e30  # float32 overflows to inf


class _ZeroD(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum()


class _ThreeD(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)


class _WrongBatch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0] + 1, 3)


class _Raises(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 0:
            raise RuntimeError("weights not calibrated for this sensor\nsee the model card")
        return x


class _Strings(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> str:
        return "cat"


GOOD_META = {"labels": ["ant", "bee", "cat"], "in_channels": 3, "preprocess": {"size": [16, 16]}}
PLAIN_META = {"in_channels": 3, "preprocess": {"size": [16, 16]}}

MODELS: dict[str, tuple[Callable[[], torch.nn.Module], object]] = {
    "nan": (_NaN, PLAIN_META),
    "overflow": (_Overflow, PLAIN_META),
    "zerod": (_ZeroD, PLAIN_META),
    "threed": (_ThreeD, PLAIN_META),
    "wrongbatch": (_WrongBatch, PLAIN_META),
    "raises": (_Raises, PLAIN_META),
    "strings": (_Strings, PLAIN_META),
    "labels5": (make_linear, {**PLAIN_META, "labels": 5}),
    "labels_str": (make_linear, {**PLAIN_META, "labels": "ant,bee,cat"}),
    "labels_null": (make_linear, {**PLAIN_META, "labels": [None, "bee", "cat"]}),
    "labels_short": (make_linear, {**PLAIN_META, "labels": ["ant"]}),
    "size0": (make_linear, {"in_channels": 3, "preprocess": {"size": [0, 16]}}),
    "size_neg": (make_linear, {"in_channels": 3, "preprocess": {"size": -16}}),
    "std0": (make_linear, {"in_channels": 3, "preprocess": {"size": [16, 16], "mean": [0, 0, 0], "std": [0, 1, 1]}}),
    "std_str": (make_linear, {"in_channels": 3, "preprocess": {"size": [16, 16], "std": "one"}}),
    "channels_str": (make_linear, {"in_channels": "three"}),
    "meta_list": (make_linear, [1, 2, 3]),
    "meta_bad_json": (make_linear, "{not json"),
    "good": (make_linear, GOOD_META),
}


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("zoo")
    paths = {}
    for name, (build, meta) in MODELS.items():
        path = folder / f"{name}.pt"
        text = meta if isinstance(meta, str) else json.dumps(meta)
        torch.jit.script(build()).save(str(path), _extra_files={"explain_cli.json": text})
        paths[name] = path
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / f"{name}.png")
        paths[name] = folder / f"{name}.png"
    (folder / "sub").mkdir()
    paths["labels2"] = folder / "two.txt"
    paths["labels2"].write_text("ant\nbee\n")
    paths["labels_json"] = folder / "bad.json"
    paths["labels_json"].write_text('["ant", 2, "cat"]')
    paths["config_dir"] = folder
    return paths


def _timed(cli, *args):
    start = time.perf_counter()
    result = cli(*args)
    return result, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Options: ranges, finiteness, forms. Every numeric option is checked before anything loads.
# ---------------------------------------------------------------------------------------------

OPTION_CASES: dict[str, tuple[list[str], str]] = {
    "kernelshap samples 10^12": (["--samples", "1000000000000"], "at most 10,000,000"),
    "lime samples 10^12": (["-m", "lime", "--samples", "1000000000000"], "at most"),
    "samples 0": (["--samples", "0"], "at least"),
    "samples nan": (["--samples", "nan"], "integer"),
    "rise masks 10^10": (["-m", "rise", "--masks", "10000000000"], "--masks must be at most"),
    "rise grid 10^5": (["-m", "rise", "--grid", "100000"], "--grid must be at most 256"),
    "rise grid 0": (["-m", "rise", "--grid", "0"], "--grid must be at least"),
    "rise p1 0": (["-m", "rise", "--p1", "0"], "--p1"),
    "rise p1 nan": (["-m", "rise", "--p1", "nan"], "finite"),
    "permutation repeats 10^9": (["-m", "permutation", "--repeats", "1000000000"], "--repeats must be at most"),
    "size 100000": (["--size", "100000"], "at most 4096"),
    "size 6000": (["--size", "6000"], "at most 4096"),
    "size 0": (["--size", "0"], "positive integers"),
    "size -5,5": (["--size", "-5,5"], "--size"),
    "size words": (["--size", "big"], "--size"),
    "seed negative": (["--seed", "-1"], "at least 0"),
    "seed 10^20": (["--seed", "99999999999999999999"], "at most"),
    "top-k 0": (["--top-k", "0"], "--top-k must be at least 1"),
    "top-k 10^9": (["--top-k", "1000000000"], "--top-k must be at most"),
    "n-segments 10^8": (["--n-segments", "100000000"], "at most 100,000"),
    "kernel-width inf": (["-m", "lime", "--kernel-width", "inf"], "finite"),
    "kernel-width 0": (["-m", "lime", "--kernel-width", "0"], "--kernel-width"),
    "alpha nan": (["-m", "lime", "--alpha", "nan"], "finite"),
    "alpha 1e300": (["-m", "lime", "--alpha", "1e300"], "at most"),
    "opacity nan": (["--opacity", "nan"], "finite"),
    "opacity 2": (["--opacity", "2"], "at most 1"),
    "eval-step nan": (["--eval-step", "nan"], "finite"),
    "eval-step 0": (["--eval-step", "0"], "--eval-step"),
    "tolerance inf": (["--tolerance", "inf"], "finite"),
    "stability 10^6": (["--stability", "1000000"], "at most 100"),
    "max-pixels 0": (["--max-pixels", "0"], "at least"),
    "batch-size 0": (["--batch-size", "0"], "between 1 and 65536"),
    "batch-size 10^9": (["--batch-size", "1000000000"], "between 1 and 65536"),
    "batch-size words": (["--batch-size", "lots"], "positive integer or auto"),
    "compactness -1": (["--compactness", "-1"], "at least 0"),
    "compactness nan": (["--compactness", "nan"], "finite"),
    "felzenszwalb scale negative": (["--segments", "felzenszwalb", "--seg-param", "scale=-5"], "scale"),
    "felzenszwalb sigma nan": (["--segments", "felzenszwalb", "--seg-param", "sigma=nan"], "finite"),
    "felzenszwalb min_size negative": (["--segments", "felzenszwalb", "--seg-param", "min_size=-1"], "min_size"),
    "quickshift max_dist negative": (["--segments", "quickshift", "--seg-param", "max_dist=-3"], "max_dist"),
    "seg-param unknown key": (["--segments", "slic", "--seg-param", "bogus=1"], "bogus"),
    "baseline value 300": (["--baseline", "value:300,0,0"], "0..255"),
    "baseline value nan": (["--baseline", "value:nan,0,0"], "finite"),
    "baseline value words": (["--baseline", "value:red"], "--baseline"),
    "baseline unknown": (["--baseline", "purple"], "--baseline"),
    "mean nan": (["--mean", "nan"], "finite"),
    "std 0": (["--std", "0"], "positive"),
    "std inf": (["--std", "inf"], "--std"),
    "method unknown": (["-m", "shapley"], "--method"),
    "option of another method": (["-m", "lime", "--masks", "50"], "applies to rise"),
    "precision unknown": (["--precision", "fp8"], "--precision"),
    "device nonsense": (["--device", "toaster"], "--device"),
    "name with a folder": (["-m", "permutation", "--name", "../x"], "plain file name"),
    "name absolute": (["-m", "permutation", "--name", "/etc/passwd"], "plain file name"),
    "name dot-dot": (["-m", "permutation", "--name", ".."], "plain file name"),
    "name with newline": (["-m", "permutation", "--name", "a\nb"], "plain file name"),
    "scale fixed reversed": (["--scale", "fixed:1,0"], "--scale"),
}


@pytest.mark.parametrize("name", list(OPTION_CASES))
def test_option_refusals_are_fast_one_line_and_write_nothing(name, cli, zoo, tmp_path):
    args, fragment = OPTION_CASES[name]
    out = tmp_path / "out"
    result, seconds = _timed(cli, "run", zoo["good"], zoo["a"], zoo["b"], "--out", out, *args)
    assert_refused(result, fragment, out=out)
    assert seconds < OPTION_BUDGET_S, f"{name}: {seconds:.2f} s"


# ---------------------------------------------------------------------------------------------
# Models: outputs, failures, embedded metadata.
# ---------------------------------------------------------------------------------------------

MODEL_CASES: dict[str, str] = {
    "nan": "NaN or infinite scores",
    "overflow": "NaN or infinite scores",
    "zerod": "shape []",
    "threed": "not (batch, classes)",
    "wrongbatch": "one row of scores per example",
    "raises": "RuntimeError: weights not calibrated for this sensor see the model card",
    "strings": "must return a tensor",
    "labels5": "labels.pt: explain_cli.json: labels: must be a non-empty list of strings, got 5",
    "labels_str": "explain_cli.json: labels:",
    "labels_null": "explain_cli.json: labels:",
    "labels_short": "labels_short.pt: explain_cli.json: labels: 1 names but the model has 3 outputs",
    "size0": "explain_cli.json: preprocess.size:",
    "size_neg": "explain_cli.json: preprocess.size:",
    "std0": "explain_cli.json: preprocess.std: must be positive",
    "std_str": "explain_cli.json: preprocess.std:",
    "channels_str": "explain_cli.json: in_channels:",
    "meta_list": "must be a JSON object",
    "meta_bad_json": "not valid JSON",
}


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_hostile_model_is_refused_in_one_line(name, cli, zoo, tmp_path):
    out = tmp_path / "out"
    result, seconds = _timed(cli, "run", zoo[name], zoo["a"], "--out", out, "--samples", "20")
    fragment = MODEL_CASES[name]
    if name.startswith("labels") and name != "labels_short":
        fragment = fragment.replace("labels.pt", f"{name}.pt")
    assert_refused(result, fragment, out=out)
    assert "--labels gives" not in result.stderr  # the user gave no --labels: blame the model file
    assert seconds < MODEL_BUDGET_S, f"{name}: {seconds:.2f} s"


def test_model_error_keeps_its_own_words_in_python(zoo):
    with pytest.raises(explain_cli.ExplainError, match="weights not calibrated for this sensor see the model card"):
        explain_cli.explain(torch.jit.load(str(zoo["raises"])), [torch.rand(3, 16, 16)], samples=20)


# ---------------------------------------------------------------------------------------------
# Targets and labels.
# ---------------------------------------------------------------------------------------------

TARGET_CASES: dict[str, tuple[Callable[[dict], list], str]] = {
    "index out of range": (lambda z: ["--target", "7"], "out of range: the model has 3 outputs"),
    "negative index": (lambda z: ["--target", "-1"], "out of range"),
    "unknown label": (lambda z: ["--target", "dog"], "not one of the model's 3 labels"),
    "top-k beyond the outputs": (lambda z: ["--top-k", "1000"], "more than the model's 3 outputs"),
    "top-k with explicit targets": (lambda z: ["--target", "1", "--top-k", "2"], "applies to target auto"),
    "labels file with too few names": (lambda z: ["--labels", z["labels2"]], "fix the labels option"),
    "labels file missing": (lambda z: ["--labels", z["config_dir"] / "none.txt"], "does not exist"),
    "labels JSON with a number": (lambda z: ["--labels", z["labels_json"]], "list of strings"),
}


@pytest.mark.parametrize("name", list(TARGET_CASES))
def test_target_refusals(name, cli, zoo, tmp_path):
    make, fragment = TARGET_CASES[name]
    out = tmp_path / "out"
    result, seconds = _timed(cli, "run", zoo["good"], zoo["a"], "--out", out, "--samples", "20", *make(zoo))
    assert_refused(result, fragment, out=out)
    assert seconds < MODEL_BUDGET_S


# ---------------------------------------------------------------------------------------------
# Configs: every error names the file and the key path.
# ---------------------------------------------------------------------------------------------

def _job(zoo: dict, **extra) -> str:
    lines = ["jobs:", "  - name: j", f"    model: {zoo['good']}", f"    inputs: [{zoo['a']}]",
             f"    out: {zoo['config_dir'] / 'config-out'}"]
    return "\n".join(lines + [f"    {k}: {v}" for k, v in extra.items()]) + "\n"


CONFIG_CASES: dict[str, tuple[Callable[[dict], str], str]] = {
    "negative samples": (lambda z: _job(z, methods="[lime]", samples=-5), "jobs[0].samples: must be at least 3"),
    "nan in a method entry": (lambda z: _job(z, methods="[{method: lime, samples: .nan}]"), "jobs[0].methods[0]"),
    "inf opacity": (lambda z: _job(z, methods="[lime]", opacity=".inf"), "jobs[0].opacity: must be a finite number"),
    "unknown key": (lambda z: _job(z, methods="[lime]", bogus=1), "jobs[0].bogus: unknown key"),
    "unknown method": (lambda z: _job(z, methods="[nosuch]"), "jobs[0].methods[0].method: must be one of"),
    "defaults seed": (lambda z: "defaults:\n  seed: -1\n" + _job(z, methods="[lime]"), "defaults.seed: must be at least 0"),
    "huge size": (lambda z: _job(z, methods="[lime]", size=99999), "jobs[0].size: must be at most 4096"),
    "jobs not a list": (lambda z: "jobs: 5\n", "jobs: expected a non-empty list"),
    "alias bomb": (lambda z: "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "jobs: *i\n", "alias"),
}


@pytest.mark.parametrize("name", list(CONFIG_CASES))
def test_config_errors_name_file_and_key_path(name, cli, zoo, tmp_path):
    make, fragment = CONFIG_CASES[name]
    path = tmp_path / f"{name.replace(' ', '_')}.yaml"
    path.write_text(make(zoo))
    out = zoo["config_dir"] / "config-out"
    for args in (["run", "--config", path], ["batch", path, "--dry-run"]):
        result, seconds = _timed(cli, *args)
        assert_refused(result, fragment, out=out)
        assert str(path) in result.stderr
        assert seconds < OPTION_BUDGET_S, f"{name}: {seconds:.2f} s"


@pytest.mark.parametrize("value", ["method=lime", "method=", "method"])
def test_batch_set_method_is_refused(value, cli, zoo, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(_job(zoo, methods="[lime]"))
    result = cli("batch", path, "--set", value)
    assert_refused(result, "--set", out=zoo["config_dir"] / "config-out")


# ---------------------------------------------------------------------------------------------
# Outputs and combinations of inputs.
# ---------------------------------------------------------------------------------------------

def test_output_folder_is_a_file(cli, zoo, tmp_path):
    (tmp_path / "file").write_text("x")
    result = cli("run", zoo["good"], zoo["a"], "--out", tmp_path / "file", "--samples", "20")
    assert_refused(result, "is a file", out=tmp_path / "nothing")
    assert (tmp_path / "file").read_text() == "x"


def test_output_folder_through_a_file(cli, zoo, tmp_path):
    (tmp_path / "file").write_text("x")
    result = cli("run", zoo["good"], zoo["a"], "--out", tmp_path / "file" / "deeper", "--samples", "20")
    assert_refused(result, "not a folder", out=tmp_path / "nothing")


def test_folder_where_an_output_file_goes(cli, zoo, tmp_path):
    out = tmp_path / "out"
    (out / "a.kernelshap.json").mkdir(parents=True)
    result = cli("run", zoo["good"], zoo["a"], "--out", out, "--samples", "20")
    assert_refused(result, "a.kernelshap.json")
    assert sorted(p.name for p in out.iterdir()) == ["a.kernelshap.json"]  # nothing else written


@pytest.mark.parametrize("second", ["same", "dotdot"])
def test_same_stem_inputs_are_refused(second, cli, zoo, tmp_path):
    other = zoo["a"] if second == "same" else zoo["config_dir"] / "sub" / ".." / "a.png"
    out = tmp_path / "out"
    result = cli("run", zoo["good"], zoo["a"], other, "--out", out, "--samples", "20")
    if second == "same":  # the very same path twice: explained once
        assert result.exit_code == 0, result.stderr
        return
    assert_refused(result, "share the name 'a'", out=out)


def test_permutation_over_the_same_file_twice(cli, zoo, tmp_path):
    out = tmp_path / "out"
    result = cli("run", zoo["good"], zoo["a"], zoo["a"], "-m", "permutation", "--out", out)
    assert_refused(result, "distinct inputs", out=out)


def test_failing_run_leaves_no_empty_output_folder(cli, zoo, tmp_path):
    out = tmp_path / "deep" / "out"
    result = cli("run", zoo["nan"], zoo["a"], "--out", out, "--samples", "20")
    assert_refused(result)
    assert not out.exists() and not (tmp_path / "deep").exists()


@pytest.mark.parametrize("algorithm, knob, advice", [
    ("felzenszwalb", "scale=100000", "lower seg_param scale or min_size"),
    ("quickshift", "max_dist=1000", "lower seg_param max_dist or kernel_size"),
])
def test_one_segment_gives_the_algorithms_own_advice(algorithm, knob, advice, cli, zoo, tmp_path):
    out = tmp_path / "out"
    result = cli("run", zoo["good"], zoo["a"], "--out", out, "--segments", algorithm, "--seg-param", knob)
    assert_refused(result, advice, out=out)
    assert "--n-segments" not in result.stderr  # felzenszwalb and quickshift have no n_segments


def test_exact_mode_rule_is_readable(cli, zoo, tmp_path):
    result = cli("run", zoo["good"], zoo["a"], "--out", tmp_path / "o", "--exact", "--n-segments", "200")
    assert_refused(result)
    assert len(result.stderr) < 300, result.stderr


# ---------------------------------------------------------------------------------------------
# Models that write into their input (item 6): nothing we reuse is ever handed to the model.
# ---------------------------------------------------------------------------------------------

class _Pure(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = make_linear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class _Vandal(_Pure):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        x.zero_()
        return y


@pytest.mark.parametrize("method, extra", [
    ("kernelshap", {"evaluate": True, "stability": 2, "sanity": True, "eval_step": 0.1}),
    ("lime", {"samples": 100}), ("rise", {"masks": 64}), ("ablation", {}), ("partition", {"samples": 60}),
    ("permutation", {"repeats": 2}),
])
def test_model_writing_into_its_input_changes_nothing(method, extra):
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.rand(3, 16, 16, generator=gen), torch.rand(3, 16, 16, generator=gen)]
    if method != "permutation":
        inputs = inputs[:1]
    # eager: two models are compared bit for bit, so neither may get another runtime's rounding
    kw = dict(method=method, n_segments=8, seed=0, top_k=2, runtime="eager", **extra)
    a = explain_cli.explain(_Pure(), inputs, **kw)[0]
    b = explain_cli.explain(_Vandal(), inputs, **kw)[0]
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.to_json()["targets"] == b.to_json()["targets"]
    assert a.evaluation == b.evaluation


def test_runtime_probes_give_the_model_copies():
    from explain_cli.models import select_runtime

    x = torch.rand(3, 16, 16)
    loaded = explain_cli.api.as_model(_Vandal())
    reference = _Pure()(x[None])
    for runtime in ("eager", "auto"):
        chosen = select_runtime(loaded, x.clone(), runtime)
        torch.testing.assert_close(chosen.module(x[None].clone()), reference, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Fits the budget cannot determine (item 7), long runs (item 24), huge --top-k.
# ---------------------------------------------------------------------------------------------

def test_kernelshap_under_determined_warns_in_json_and_stderr(cli, zoo, tmp_path):
    out = tmp_path / "out"
    result = cli("run", zoo["good"], zoo["a"], "--out", out, "--samples", "5", "--segments", "grid", "--n-segments", "16")
    assert result.exit_code == 0, result.stderr
    doc = json.loads((out / "a.kernelshap.json").read_text())
    assert any("cannot determine" in w and "standard errors are unknown" in w for w in doc["warnings"]), doc["warnings"]
    assert all(s["stderr"] is None for s in doc["targets"][0]["segments"])  # honest: unknown, not 0
    assert "cannot determine" in result.stderr
    assert "constrained" in doc["extra"]["r2_definition"]


def test_kernelshap_with_enough_samples_does_not_warn(zoo):
    (e,) = explain_cli.explain(zoo["good"], [zoo["a"]], samples=200, segments="grid", n_segments=16)
    assert not any("cannot determine" in w for w in e.warnings), e.warnings


def test_lime_under_determined_warns(zoo):
    with pytest.warns(explain_cli.ExplainWarning) as record:  # and, on a saturated softmax, every coefficient ~0
        (e,) = explain_cli.explain(zoo["good"], [torch.rand(3, 16, 16)], method="lime", samples=64, segments="grid",
                                   n_segments=256)
    assert any("64 LIME samples for 256 segments cannot determine" in str(w.message) for w in record)
    assert e.segmentation.n_segments == 256
    assert any("64 LIME samples for 256 segments cannot determine" in w for w in e.warnings), e.warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", explain_cli.ExplainWarning)  # a saturated softmax may zero every coefficient
        (ok,) = explain_cli.explain(zoo["good"], [torch.rand(3, 16, 16)], method="lime", samples=400,
                                    segments="grid", n_segments=16)
    assert not any("cannot determine" in w for w in ok.warnings)
    assert "free intercept" in ok.to_json()["extra"]["r2_definition"]


def test_kernelshap_negative_r2_is_explained(monkeypatch):
    from explain_cli.engines.kernelshap import engine

    monkeypatch.setattr(engine, "weighted_r2", lambda *args: np.array([-0.4]))
    with pytest.warns(explain_cli.ExplainWarning) as record:  # and: only 4 superpixels
        (e,) = explain_cli.explain(make_linear(k=1), torch.rand(3, 16, 16), samples=200, segments="grid",
                                   n_segments=4, preprocess="none")
    assert any("r2 = -0.4 < 0" in str(w.message) for w in record)
    assert any("r2 = -0.4 < 0" in w and "r2_definition" in w for w in e.warnings), e.warnings


def test_long_run_estimate_is_information_after_the_second_batch_and_not_in_the_json(zoo, monkeypatch):
    from explain_cli import announce

    monkeypatch.setattr(announce, "LONG_RUN_S", 0.0)
    heard: list[str] = []
    evaluations_at_estimate = []

    class Spy(_Pure):
        calls = 0

        def forward(self, x):
            Spy.calls += len(x)
            return super().forward(x)

    def on_info(message: str) -> None:
        heard.append(message)
        evaluations_at_estimate.append(Spy.calls)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", explain_cli.ExplainWarning)  # a saturated softmax may zero every coefficient
        (e,) = explain_cli.explain(Spy(), [torch.rand(3, 16, 16)], method="lime", samples=300, batch_size=64,
                                   runtime="eager", on_info=on_info)
    long = [m for m in heard if "this run will take about" in m]
    assert len(long) == 1 and "300 model evaluations" in long[0] and "on eager" in long[0], heard
    # f(x) and the first two full batches of 64: the estimate is the second's batched throughput
    # (the first pays one-time allocations, explain_cli.announce), early in a 300-evaluation run
    assert evaluations_at_estimate[heard.index(long[0])] <= 1 + 2 * 64
    assert not any("take about" in w for w in e.warnings) and e.evaluations == 300
    assert "GPU" not in long[0] or torch.cuda.is_available()


def test_short_run_is_not_announced(zoo):
    heard: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", explain_cli.ExplainWarning)  # heard through on_warning, the point here
        explain_cli.explain(zoo["good"], [zoo["a"]], samples=50, on_warning=heard.append, on_info=heard.append)
    assert not any("take about" in m for m in heard)


def test_random_torchvision_weights_warn_early_and_in_json():
    heard: list[str] = []
    with pytest.warns(explain_cli.ExplainWarning, match="random weights"):
        explainer = explain_cli.Explainer("torchvision:resnet18", on_warning=heard.append, method="ablation",
                                          segments="grid", n_segments=4)
    assert any("random weights" in m for m in heard)
    assert any("random weights" in n for n in explainer.model.notes)


def test_huge_top_k_draws_sixteen_panels_fast(tmp_path):
    from explain_cli.result import MAX_PANELS

    model = make_linear(k=200)
    start = time.perf_counter()
    with pytest.warns(explain_cli.ExplainWarning, match=f"first {MAX_PANELS} of the 200 targets"):
        (e,) = explain_cli.explain(model, [torch.rand(3, 16, 16)], method="ablation", top_k=200, segments="grid",
                                   n_segments=9)
    files = e.save(tmp_path)
    seconds = time.perf_counter() - start
    assert len(e.to_json()["targets"]) == 200
    assert any(f"first {MAX_PANELS} of the 200 targets" in w for w in e.warnings)
    assert seconds < 30, seconds
    assert all(p.exists() for p in files)


def test_label_with_a_newline_does_not_break_the_caption(tmp_path):
    model = make_linear()
    labels = tmp_path / "l.json"
    labels.write_text(json.dumps(["a\nb", "c\rd", "e\x00f"]))
    (e,) = explain_cli.explain(model, [torch.rand(3, 16, 16)], method="ablation", labels=str(labels), top_k=3,
                               segments="grid", n_segments=9)
    assert e.render().size[0] > 0


# ---------------------------------------------------------------------------------------------
# Determinism (item 23): same seed ⇒ identical numbers; batch size ⇒ within BATCH_BOUND.
# ---------------------------------------------------------------------------------------------

METHODS = {"kernelshap": {"samples": 200}, "lime": {"samples": 200}, "rise": {"masks": 150},
           "ablation": {}, "partition": {"samples": 80}, "permutation": {"repeats": 2}}


def _numbers(e) -> str:
    doc = e.to_json()
    return json.dumps({k: doc[k] for k in ("targets", "evaluations")} | {"extra": doc.get("extra")}, sort_keys=True)


def _inputs(method: str) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return [torch.rand(3, 16, 16, generator=gen) for _ in range(3 if method == "permutation" else 1)]


@pytest.mark.parametrize("method", list(METHODS))
def test_same_seed_gives_byte_identical_numbers(method):
    kw = dict(method=method, n_segments=12, seed=3, top_k=2, **METHODS[method])
    first = _numbers(explain_cli.explain(make_linear(), _inputs(method), **kw)[0])
    second = _numbers(explain_cli.explain(make_linear(), _inputs(method), **kw)[0])
    assert first == second


@pytest.mark.parametrize("method", list(METHODS))
def test_batch_size_changes_scores_by_at_most_the_stated_bound(method):
    kw = dict(method=method, n_segments=12, seed=3, top_k=2, **METHODS[method])
    runs = {b: explain_cli.explain(make_linear(), _inputs(method), batch_size=b, **kw)[0] for b in (1, 7, 64)}
    ref = runs[64].scores
    scale = max(1.0, float(np.abs(ref).max()))
    for b, e in runs.items():
        assert e.evaluations == runs[64].evaluations
        delta = float(np.abs(e.scores - ref).max()) / scale
        assert delta <= BATCH_BOUND, (method, b, delta)


# ---------------------------------------------------------------------------------------------
# SIGKILL at a random moment (item 18): only complete outputs, and a rerun completes.
# ---------------------------------------------------------------------------------------------

def _complete_outputs_only(out: Path) -> None:
    from explain_cli.fileio import TEMP_SUFFIX

    for path in out.iterdir() if out.exists() else []:
        if path.name.endswith(TEMP_SUFFIX):
            continue  # a killed writer's temp file, hidden, swept by the next run
        if path.suffix == ".json":
            json.loads(path.read_text())  # complete JSON
            assert path.with_suffix(".png").exists(), "the JSON is written last"
        elif path.suffix == ".png":
            with Image.open(path) as img:
                img.load()  # complete PNG
        else:
            raise AssertionError(f"unexpected file {path}")


@pytest.mark.slow
def test_sigkill_at_a_random_moment_never_leaves_a_partial_output(zoo, tmp_path):
    out = tmp_path / "out"
    images = [zoo["a"], zoo["b"], zoo["c"]]
    command = [sys.executable, "-m", "explain_cli", "run", str(zoo["good"]), *map(str, images),
               "--out", str(out), "--samples", "100", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(0)
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, timeout=120)
    full_run = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    for path in out.iterdir():
        path.unlink()
    for _ in range(20):
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, full_run))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        _complete_outputs_only(out)
    proc = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _complete_outputs_only(out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{s}.kernelshap.{x}" for s in "abc" for x in ("json", "png")), names
