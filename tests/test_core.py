"""The perturbation core: composition by one gather, batching, output spaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain_cli.core import Evaluator, compose_pixels, compose_segments
from explain_cli.errors import ExplainError


def test_compose_segments_matches_per_pixel_definition():
    g = torch.Generator().manual_seed(0)
    x, b = torch.rand(2, 4, 5, generator=g), torch.rand(2, 4, 5, generator=g)
    seg = torch.tensor([[0, 0, 1, 1, 2]] * 4)
    z = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    out = compose_segments(x, b, seg, z)
    assert out.shape == (3, 2, 4, 5)
    for i in range(3):
        for r in range(4):
            for c in range(5):
                keep = z[i, seg[r, c]] == 1
                torch.testing.assert_close(out[i, :, r, c], x[:, r, c] if keep else b[:, r, c])


def test_compose_segments_with_per_example_baselines():
    x = torch.zeros(2, 1, 2, 2)
    b = torch.stack([torch.full((1, 2, 2), 5.0), torch.full((1, 2, 2), 7.0)])
    seg = torch.tensor([[0, 1], [0, 1]])
    out = compose_segments(x, b, seg, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert out[0, 0].tolist() == [[0.0, 5.0], [0.0, 5.0]]
    assert out[1, 0].tolist() == [[7.0, 0.0], [7.0, 0.0]]


def test_compose_pixels_soft_masks():
    x, b = torch.ones(1, 2, 2), torch.zeros(1, 2, 2)
    out = compose_pixels(x, b, torch.tensor([[[0.25, 1.0], [0.0, 0.5]]]))
    assert out[0, 0].tolist() == [[0.25, 1.0], [0.0, 0.5]]


def test_evaluator_counts_and_selects_targets():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    ev = Evaluator(model, torch.device("cpu"), batch_size=2, output="logits")
    full = ev(torch.rand(5, 1, 2, 2))
    assert full.shape == (5, 3) and ev.evaluations == 5
    ev.select_targets([2, 0])
    assert ev(torch.rand(3, 1, 2, 2)).shape == (3, 2)
    assert ev.evaluations == 8


def test_probs_are_softmax():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(2, 1, 2, 2)
    probs = Evaluator(model, torch.device("cpu"), output="probs")(x)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"output": "odds"}, {"precision": "fp64"}])
def test_evaluator_rejects_bad_settings(kwargs):
    with pytest.raises(ExplainError):
        Evaluator(lambda x: x, torch.device("cpu"), **kwargs)


def test_autocast_precision_off_cuda_falls_back_to_fp32_with_a_warning():
    ev = Evaluator(torch.nn.Flatten(), torch.device("cpu"), precision="bf16")
    assert ev.precision == "fp32" and "fp32" in ev.warnings[0]


class _OutOfMemory(torch.nn.Module):
    """Raises CUDA's out-of-memory error for batches above ``limit`` rows (testable on CPU)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.inner = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


@pytest.mark.parametrize("method", ["kernelshap", "rise", "lime"])
def test_out_of_memory_halves_the_batch_and_keeps_the_results(method):
    from explain_cli import explain

    torch.manual_seed(0)
    model = _OutOfMemory(limit=10**9)
    x = torch.rand(3, 8, 8)
    opts = dict(method=method, n_segments=6, seed=1, output="logits", preprocess="none",
                **({"masks": 100} if method == "rise" else {"samples": 100}))
    (ref,) = explain(model, x, batch_size=64, **opts)
    model.limit = 13
    (small,) = explain(model, x, batch_size=64, **opts)
    assert small.batch_size <= 13 and small.memory["batch_backoffs"] >= 1 and small.evaluations == ref.evaluations
    np.testing.assert_allclose(small.scores, ref.scores, rtol=1e-5, atol=1e-7)
    model.limit = 0
    with pytest.raises(ExplainError, match="out of GPU memory at batch size 1"):
        explain(model, x, batch_size=4, **opts)
