"""Bad input through the real CLI: one line on stderr, exit code 2, no traceback, no files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_linear


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """A zoo of broken files, built once."""
    d = tmp_path_factory.mktemp("bad")
    files = {}

    def put(name: str, data: bytes) -> None:
        files[name] = d / name
        files[name].write_bytes(data)

    put("empty.pt", b"")
    put("notes.txt", b"this is not a model\n")
    put("empty.png", b"")
    put("text.png", b"hello, I am not a PNG")
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(d / "good.png")
    png = (d / "good.png").read_bytes()
    put("truncated.png", png[: len(png) // 2])  # valid header, image data cut off
    torch.save(make_linear(), d / "pickled_module.pt")
    files["pickled_module.pt"] = d / "pickled_module.pt"
    torch.save(make_linear().state_dict(), d / "state_dict.pt")
    files["state_dict.pt"] = d / "state_dict.pt"
    torch.save({"fc.weight": torch.zeros(10, 5), "fc.bias": torch.zeros(10)}, d / "wrong_weights.pt")
    files["wrong_weights.pt"] = d / "wrong_weights.pt"
    torch.save(torch.zeros(1, 1, 3, 16, 16), d / "rank5.pt")
    files["rank5.pt"] = d / "rank5.pt"
    torch.save(torch.rand(4, 16, 16), d / "four_channels.pt")
    files["four_channels.pt"] = d / "four_channels.pt"
    nan = torch.rand(3, 16, 16)
    nan[0, 0, 0] = float("nan")
    torch.save(nan, d / "nan.pt")
    files["nan.pt"] = d / "nan.pt"
    np.save(d / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    files["objects.npy"] = d / "objects.npy"
    np.save(d / "good.npy", np.random.default_rng(0).random((3, 16, 16)).astype(np.float32))
    files["good.npy"] = d / "good.npy"
    files["good.png"] = d / "good.png"
    put("labels2.txt", b"one\ntwo\n")
    put("a_file", b"x")
    return files


CASES = {
    "missing model": (["{tmp}/nope.pt", "{good.npy}"], "does not exist"),
    "empty model": (["{empty.pt}", "{good.npy}"], "empty"),
    "text file as model": (["{notes.txt}", "{good.npy}"], "not a TorchScript"),
    "pickled module as model": (["{pickled_module.pt}", "{good.npy}"], "pickled"),
    "state dict as model": (["{state_dict.pt}", "{good.npy}"], "state dict"),
    "unknown architecture": (["torchvision:resnet999", "{good.png}"], "unknown torchvision architecture"),
    "weights that do not fit": (["torchvision:resnet18", "{good.png}", "--weights", "{wrong_weights.pt}"], "do not fit"),
    "pickled module as weights": (["torchvision:resnet18", "{good.png}", "--weights", "{pickled_module.pt}"], "pickled"),
    "weights with a TorchScript model": (["{model}", "{good.npy}", "--weights", "{state_dict.pt}"], "torchvision:ARCH"),
    "missing input": (["{model}", "{tmp}/missing.png"], "does not exist"),
    "empty input": (["{model}", "{empty.png}"], "empty"),
    "text as image": (["{model}", "{text.png}"], "not an image"),
    "corrupt png": (["{model}", "{truncated.png}"], "damaged"),
    "wrong tensor rank": (["{model}", "{rank5.pt}"], "shape"),
    "4-channel tensor for 3-channel model": (["{model}", "{four_channels.pt}"], "model failed"),
    "nan tensor": (["{model}", "{nan.pt}"], "NaN"),
    "pickled npy": (["{model}", "{objects.npy}"], "pickle"),
    "target out of range": (["{model}", "{good.npy}", "--target", "7"], "out of range"),
    "unknown label": (["{model}", "{good.npy}", "--target", "zebra"], "not one of"),
    "label typo suggests": (["{model}", "{good.npy}", "--target", "bea"], "did you mean"),
    "samples 0": (["{model}", "{good.npy}", "--samples", "0"], "--samples"),
    "batch size 0": (["{model}", "{good.npy}", "--batch-size", "0"], "--batch-size"),
    "top-k 0": (["{model}", "{good.npy}", "--top-k", "0"], "--top-k"),
    "top-k too large": (["{model}", "{good.npy}", "--top-k", "9"], "more than"),
    "unwritable output folder": (["{model}", "{good.npy}", "--out", "{a_file}/sub"], "cannot write"),
    "output folder is a file": (["{model}", "{good.npy}", "--out", "{a_file}"], "is a file"),
    "unknown method": (["{model}", "{good.npy}", "--method", "gradcam"], "gradcam"),
    "bad baseline": (["{model}", "{good.npy}", "--baseline", "value:1,2"], "--baseline"),
    "unknown baseline": (["{model}", "{good.npy}", "--baseline", "noise"], "--baseline"),
    "bad size": (["{model}", "{good.png}", "--size", "abc"], "--size"),
    "cuda without a GPU": (["{model}", "{good.npy}", "--device", "cuda"], "CUDA"),
    "unknown segmenter parameter": (["{model}", "{good.npy}", "--seg-param", "bogus=1"], "bogus"),
    "labels count mismatch": (["{model}", "{good.npy}", "--labels", "{labels2.txt}"], "labels"),
    "mean with wrong channel count": (["{model}", "{good.npy}", "--preprocess", "none", "--mean", "0.5,0.5"], "channels"),
    "negative kernel width": (["{model}", "{good.npy}", "--kernel-width", "-1"], "--kernel-width"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, bad, cli, linear_script, tmp_path):
    args, expected = CASES[name]
    out = tmp_path / "out"
    values = {k: str(v) for k, v in bad.items()} | {"model": str(linear_script), "tmp": str(tmp_path)}
    argv = ["run", *[re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], a) for a in args]]
    if "--out" not in argv:
        argv += ["--out", str(out)]
    result = cli(*argv, "--samples", "20") if "--samples" not in argv else cli(*argv)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    message = result.stderr.strip()
    assert "\n" not in message, message
    assert "Traceback" not in message
    assert message.startswith("explain: error:"), message
    assert expected.lower() in message.lower(), message
    assert result.stdout == ""
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert written == []


def test_debug_shows_traceback(bad, cli, linear_script, tmp_path):
    from explain_cli.errors import ExplainError

    with pytest.raises(ExplainError, match="shape"):  # the real exception, not a one-line message
        cli("run", linear_script, bad["rank5.pt"], "--out", tmp_path, "--debug")


def test_missing_arguments_is_usage_error(cli):
    result = cli("run")
    assert result.exit_code == 2
    assert "\n" not in result.stderr.strip()


def test_json_is_valid_after_success(bad, cli, linear_script, tmp_path):
    result = cli("run", linear_script, bad["good.npy"], "--out", tmp_path, "--samples", "30", "--method", "lime")
    assert result.exit_code == 0, result.stderr
    doc = json.loads((tmp_path / "good.lime.json").read_text())
    assert doc["evaluations"] == 30
