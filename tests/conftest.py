"""Shared fixtures: tiny models with known answers, and an in-process CLI runner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_MODEL = ROOT / "sample_models" / "shapes_cnn.pt"
SAMPLE_IMAGES = sorted((ROOT / "sample_models" / "images").glob("*.png"))


class PixelLinear(torch.nn.Module):
    """f_k(x) = Σ_p W[k, p]·x[p] + c_k: linear in its input pixels, so every answer is known."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)  # (K, C, H, W)
        self.bias = torch.nn.Parameter(bias, requires_grad=False)  # (K,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,kchw->bk", x, self.weight) + self.bias


def make_linear(k: int = 3, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> PixelLinear:
    g = torch.Generator().manual_seed(seed)
    return PixelLinear(torch.randn(k, c, h, w, generator=g, dtype=torch.float64).float(), torch.randn(k, generator=g))


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """Run `explain ARGS` in-process through the real entry point (usage-error handling included)."""
    from explain_cli.cli.app import main

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture(scope="session")
def linear_script(tmp_path_factory) -> Path:
    """A TorchScript pixel-linear model on 3x16x16 inputs with embedded labels, no preprocessing."""
    path = tmp_path_factory.mktemp("models") / "linear.pt"
    scripted = torch.jit.script(make_linear())
    meta = {"labels": ["ant", "bee", "cat"], "in_channels": 3, "preprocess": {"size": [16, 16]}}
    scripted.save(str(path), _extra_files={"explain_cli.json": json.dumps(meta)})
    return path


@pytest.fixture(scope="session")
def small_image(tmp_path_factory) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("images") / "small.png"
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Runtime verdicts and ONNX exports go to a cache of the test session's own, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def validator():
    """A JSON Schema validator for schema/explanation.schema.json (see helpers.check_schema)."""
    import jsonschema

    schema = json.loads((ROOT / "schema" / "explanation.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)
