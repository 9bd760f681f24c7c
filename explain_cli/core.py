"""The perturbation core shared by every engine.

sample masks (engine) -> compose perturbed inputs on the model's device (one gather)
-> evaluate the model per batch, keeping the requested targets' outputs -> estimate (engine).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from explain_cli.errors import ExplainError
from explain_cli.progress import NullProgress, Progress

if TYPE_CHECKING:
    import torch

OUTPUT_SPACES = ("logits", "probs")
PRECISIONS = ("fp32", "bf16", "fp16")


def compose_segments(x: "torch.Tensor", baseline: "torch.Tensor", segments: "torch.Tensor", z: "torch.Tensor") -> "torch.Tensor":
    """Perturbed inputs ``b + (x - b) * z[:, S]`` for a batch of interpretable vectors.

    Parameters
    ----------
    x, baseline : (C, H, W) or (B, C, H, W) tensors
        Input and replacement values (per-example when 4-D, as permutation uses).
    segments : (H, W) long tensor
        Segment id of every pixel, 0..M-1.
    z : (B, M) tensor in [0, 1]
        1 keeps a segment, 0 replaces it by the baseline.

    Returns
    -------
    (B, C, H, W) tensor on the device of ``x``. One gather ``z[:, segments]``, no loop.
    """
    import torch

    keep = z.to(dtype=x.dtype)[:, segments].unsqueeze(1)
    return torch.addcmul(baseline, x - baseline, keep)  # one full-size allocation


def compose_pixels(x: "torch.Tensor", baseline: "torch.Tensor", masks: "torch.Tensor") -> "torch.Tensor":
    """Perturbed inputs ``b + (x - b) * P`` for (B, H, W) pixel masks in [0, 1]."""
    import torch

    return torch.addcmul(baseline, x - baseline, masks.to(dtype=x.dtype).unsqueeze(1))


class Evaluator:
    """Runs the model in batches on its device and keeps the outputs that matter.

    Every call counts its evaluations and the time spent in the model, so engines and
    benchmarks report exactly what the model cost. Outputs are all classes until
    :meth:`select_targets`; afterwards only the target columns, as float64.
    """

    def __init__(
        self,
        model: Callable[["torch.Tensor"], "torch.Tensor"],
        device: "torch.device",
        *,
        batch_size: int = 32,
        output: str = "probs",
        precision: str = "fp32",
        progress: Progress | None = None,
    ) -> None:
        if batch_size < 1:
            raise ExplainError(f"--batch-size must be at least 1, got {batch_size}")
        if output not in OUTPUT_SPACES:
            raise ExplainError(f"unknown --output {output!r}; choose logits or probs")
        if precision not in PRECISIONS:
            raise ExplainError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if precision != "fp32" and device.type != "cuda":
            raise ExplainError(f"--precision {precision} needs a CUDA device; on {device.type} use fp32")
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.output = output
        self.precision = precision
        self.progress: Progress = progress or NullProgress()
        self.evaluations = 0
        self.forward_s = 0.0
        self.targets: "torch.Tensor | None" = None

    def _autocast(self):
        import torch

        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def forward(self, inputs: "torch.Tensor") -> "torch.Tensor":
        """Model outputs (B, n_outputs) in the chosen output space, float64, on the device."""
        import torch

        start = time.perf_counter()
        with torch.inference_mode(), self._autocast():
            out = self.model(inputs)
        if isinstance(out, (tuple, list)):
            out = out[0]  # e.g. (logits, aux)
        if not isinstance(out, torch.Tensor):
            raise ExplainError(f"the model returned {type(out).__name__}; it must return a tensor of scores")
        out = out.double().reshape(out.shape[0], -1)
        if self.output == "probs":
            out = torch.softmax(out, dim=1) if out.shape[1] > 1 else torch.sigmoid(out)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.forward_s += time.perf_counter() - start
        self.evaluations += inputs.shape[0]
        self.progress.advance(inputs.shape[0])
        return out

    def select_targets(self, targets: list[int]) -> None:
        """From now on, :meth:`__call__` returns only these output columns."""
        import torch

        self.targets = torch.as_tensor(targets, dtype=torch.long, device=self.device)

    def __call__(self, inputs: "torch.Tensor") -> "torch.Tensor":
        """Target outputs (B, K), float64 on the device."""
        out = self.forward(inputs)
        if self.targets is not None:
            out = out.index_select(1, self.targets)
        return out

    def chunks(self, n: int) -> Iterator[tuple[int, int]]:
        """(start, stop) pairs covering ``range(n)`` in steps of the batch size."""
        for start in range(0, n, self.batch_size):
            yield start, min(n, start + self.batch_size)


@dataclass
class Problem:
    """One example to explain, on the model's device, with its segment map and targets."""

    x: "torch.Tensor"  # (C, H, W) model input; (N, C, H, W) for batch engines
    baseline: "torch.Tensor"  # (C, H, W) replacement values (unused by permutation)
    segments: "torch.Tensor"  # (H, W) long, ids 0..M-1
    evaluator: Evaluator
    reference: "torch.Tensor"  # (K,) float64 f(x) for the targets, already evaluated; (N, K) for a batch

    @property
    def n_segments(self) -> int:
        return int(self.segments.max().item()) + 1

    @property
    def n_targets(self) -> int:
        return int(self.reference.shape[-1])

    def segment_outputs(self, z: "torch.Tensor") -> "torch.Tensor":
        """Model outputs (N, K) float64 on CPU for N interpretable vectors, batch by batch.

        ``z`` may live on the CPU; each batch moves to the device only when it is composed.
        """
        import torch

        ev = self.evaluator
        n = z.shape[0]
        out = torch.empty((n, self.n_targets), dtype=torch.float64, device=ev.device)
        for start, stop in ev.chunks(n):
            batch = z[start:stop].to(ev.device, non_blocking=True)
            out[start:stop] = ev(compose_segments(self.x, self.baseline, self.segments, batch))
        return out.cpu()

    def baseline_output(self) -> "torch.Tensor":
        """f(baseline) for the targets, (K,) float64 on CPU: one evaluation."""
        return self.evaluator(self.baseline.unsqueeze(0))[0].cpu()
