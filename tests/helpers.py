"""Helpers that several test modules share: problems and models with known answers, hand-built
files, and the checks every refusal and every JSON document must pass.

Fixtures live in ``conftest.py``, brute-force Shapley and Owen oracles in ``oracles.py``; a test
module imports helpers from here, never from another test module.
"""

from __future__ import annotations

import resource
import struct
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from explain_cli.core import Evaluator, Problem
from explain_cli.engines import build_params, get_engine

# ---------------------------------------------------------------------------------------------
# Problems on the pixel-linear model (conftest.make_linear) and a model with interactions.
# ---------------------------------------------------------------------------------------------


def make_problem(model, *, batch_size=16, n_segments=12, seed=1, output="logits", targets=(0, 1, 2),
                 dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 16, 16, generator=g, dtype=dtype)
    baseline = torch.rand(3, 16, 16, generator=g, dtype=dtype) * 0.3
    # exactly n_segments blocks of consecutive pixels (row-major)
    segments = (torch.arange(16 * 16) * n_segments // (16 * 16)).reshape(16, 16)
    ev = Evaluator(model, torch.device("cpu"), batch_size=batch_size, output=output)
    reference = ev(x[None])[0, list(targets)].cpu()
    ev.select_targets(list(targets))
    return Problem(x=x, baseline=baseline, segments=segments, evaluator=ev, reference=reference)

def exact_contributions(model, problem) -> np.ndarray:
    """Σ_{p in g} W_k(p)·(x(p) − b(p)) for every target k and segment g."""
    diff = (problem.x - problem.baseline).double()
    per_pixel = torch.einsum("chw,kchw->khw", diff, model.weight.double())
    m = problem.n_segments
    out = torch.zeros(per_pixel.shape[0], m, dtype=torch.float64)
    out.index_add_(1, problem.segments.flatten(), per_pixel.flatten(1))
    return out.numpy()


class Nonlinear(torch.nn.Module):
    """Interactions between regions: products, a max and a tanh, so Shapley ≠ anything simpler."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.flatten(2).mean(dim=1)  # (B, H*W)
        a, b, c = q[:, :64].mean(1), q[:, 64:160].mean(1), q[:, 160:].mean(1)
        out0 = torch.tanh(3 * a * b) + c * c + torch.maximum(a, c)
        out1 = a * b * c * 10 + torch.sigmoid(x[:, 0, 8:, 8:].sum((1, 2)) / 10)
        return torch.stack([out0, out1], dim=1)

def run_shap(problem, seed=0, **values):
    engine = get_engine("kernelshap")
    return engine.run(problem, build_params(engine, values), torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Detection: fixed boxes whose confidence is linear in the pixels, and a YOLO-style raw head.
# ---------------------------------------------------------------------------------------------

SIZE = (32, 32)

BOX = (4.0, 6.0, 20.0, 22.0)


def grid_segments(h: int = 32, w: int = 32, cell: int = 8) -> torch.Tensor:
    """(H, W) ids of a grid of cell x cell blocks: 16 segments on 32 x 32."""
    rows = torch.arange(h)[:, None] // cell
    cols = torch.arange(w)[None, :] // cell
    return (rows * (w // cell) + cols).long()

class LinearBoxes(torch.nn.Module):
    """Fixed boxes whose confidence is c_k + Σ_p W[k, p]·x[p], W non-zero in a region only.

    ``mode`` says where the linear confidence goes: ``score`` (no probs: O_j is the score),
    ``objectness`` (fixed probs, fixed score 0.9, the model's objectness is linear) or
    ``probs_score`` (fixed probs, linear score; explained with objectness='score').
    """

    def __init__(self, boxes, labels, weight, bias, mode="score", n_classes=4, shift=0.0):
        super().__init__()
        self.shift = shift  # boxes move right by shift·(confidence − bias): IoU becomes nonlinear
        self.boxes = torch.tensor(boxes, dtype=torch.float64)
        self.labels = torch.tensor(labels)
        self.weight = weight  # (K, 3, H, W) float64
        self.bias = bias  # (K,)
        self.mode = mode
        probs = torch.full((len(labels), n_classes), 0.05, dtype=torch.float64)
        probs[torch.arange(len(labels)), self.labels] = 0.85
        self.probs = probs

    def forward(self, x):
        conf = torch.einsum("bchw,kchw->bk", x.double(), self.weight) + self.bias
        out = []
        for row in conf:
            moved = self.boxes + self.shift * (row - self.bias)[:, None] * torch.tensor([1.0, 0.0, 1.0, 0.0])
            d = {"boxes": moved, "labels": self.labels.clone()}
            if self.mode == "score":
                d["scores"] = row
            elif self.mode == "objectness":
                d.update(scores=torch.full_like(row, 0.9), objectness=row, probs=self.probs.clone())
            else:
                d.update(scores=row, probs=self.probs.clone())
            out.append(d)
        return out

def region_weight(k: int, seed: int, region=(slice(3, 19), slice(5, 27))) -> torch.Tensor:
    """(K, 3, 32, 32) positive weights inside a region straddling several grid cells, zero elsewhere."""
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(k, 3, *SIZE, dtype=torch.float64)
    w[:, :, region[0], region[1]] = torch.rand(k, 3, 16, 22, generator=g, dtype=torch.float64) * 0.4 / (3 * 16 * 22)
    return w

def make_detector(mode="score", k=1, seed=0, shift=0.0):
    boxes = [BOX, (14.0, 2.0, 30.0, 12.0), (0.0, 20.0, 12.0, 31.0)][:k]
    return LinearBoxes(boxes, [1, 2, 3][:k], region_weight(k, seed), torch.full((k,), 0.55, dtype=torch.float64),
                       mode=mode, shift=shift)

def image(seed=1):
    return torch.rand(3, *SIZE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def exact_box_contributions(model, x, baseline, segments):
    """φ_g = Σ_{p ∈ g} W[k, p]·(x_p − b_p): the exact Shapley values of a game linear in the pixels."""
    delta = torch.einsum("chw,kchw->khw", x - baseline, model.weight)
    m = int(segments.max()) + 1
    return torch.stack([delta[:, segments == g].sum(dim=1) for g in range(m)], dim=1).numpy()


class TinyYolo(torch.nn.Module):
    """A YOLOv8-style raw head on 32 x 32 inputs: (B, 4 + 2, 16) anchors of cx, cy, w, h and two class scores."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, kernel_size=8, stride=8)
        centres = (torch.arange(4.0) * 8 + 4)
        self.register_buffer("cy", centres[:, None].expand(4, 4).reshape(-1))
        self.register_buffer("cx", centres[None, :].expand(4, 4).reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x).flatten(2)  # (B, 6, 16)
        cx, cy = self.cx + 2 * torch.tanh(f[:, 0]), self.cy + 2 * torch.tanh(f[:, 1])
        w, h = 6 + 4 * torch.sigmoid(f[:, 2]), 6 + 4 * torch.sigmoid(f[:, 3])
        return torch.cat([torch.stack([cx, cy, w, h], dim=1), torch.sigmoid(f[:, 4:])], dim=1)


# ---------------------------------------------------------------------------------------------
# Files built by hand (too large, or too odd, to commit), and what reading them costs.
# ---------------------------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

def png_bytes(width: int, height: int, *, with_data: bool = True, bit_depth: int = 8) -> bytes:
    """A grey PNG of zeros, written by hand so a 12,000 × 12,000 one costs no decoded memory."""
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0))
    if with_data:
        packer = zlib.compressobj(9)
        row = bytes(1 + width * bit_depth // 8)
        out += png_chunk(b"IDAT", b"".join(packer.compress(row) for _ in range(height)) + packer.flush())
    return out + png_chunk(b"IEND", b"")

def npy_bytes(header: str, data: bytes = b"", *, version: int = 1, pad_to: int | None = None) -> bytes:
    """A .npy file with a hand-written header (numpy pads it to a multiple of 64)."""
    size_format = "<H" if version == 1 else "<I"
    prefix = 8 + struct.calcsize(size_format)
    total = pad_to or -(-(prefix + len(header) + 1) // 64) * 64
    header = header + " " * (total - prefix - len(header) - 1) + "\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(size_format, len(header)) + header.encode() + data

def measure(call: Callable[[], object]) -> tuple[float, int, int]:
    """Seconds, tracemalloc peak and growth of the process's peak RSS (bytes) while ``call`` runs."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    start = time.perf_counter()
    try:
        call()
    finally:
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    return seconds, peak, rss_growth


# ---------------------------------------------------------------------------------------------
# Checks: a JSON document against the schema, a CLI refusal.
# ---------------------------------------------------------------------------------------------


def check_schema(validator, doc: dict) -> None:
    """Assert that ``doc`` follows the schema (conftest's ``validator``); else name its first ten problems."""
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10])


def assert_refused(result: Any, fragment: str = "", *, out: Path | None = None, code: int = 2) -> str:
    """Assert that a CLI call was refused cleanly, and return its message.

    ``result`` is a ``cli(...)`` result, or a callable that makes the call. Checks: exit ``code``;
    one line on stderr, ``explain: error: ...``, no traceback, not an internal error; ``fragment``
    in it; nothing on stdout; and, with ``out``, nothing written there (absent, or empty).
    """
    if callable(result):
        result = result()
    message = result.stderr.strip()
    assert result.exit_code == code, (result.exit_code, message)
    assert "\n" not in message, message
    assert message.startswith("explain: error:"), message
    assert "Traceback" not in message and "internal error" not in message, message
    assert fragment in message, message
    assert result.stdout == "", result.stdout
    if out is not None:
        written = sorted(out.rglob("*")) if out.exists() else []
        assert written == [], written
    return message


def write_config(folder: Path, data: Any, name: str = "config.yaml") -> Path:
    """A YAML config in ``folder``: ``data`` as given when a string (malformed YAML included), else dumped."""
    import yaml

    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def tensor_inputs(folder: Path, n: int) -> Path:
    """``folder/inputs`` holding ``n`` seeded (3, 16, 16) float32 ``.npy`` tensors ``x0.npy`` ...: tiny batch inputs."""
    inputs = folder / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(inputs / f"x{i}.npy", rng.random((3, 16, 16)).astype(np.float32))
    return inputs
