"""The perturbation core shared by every engine.

sample masks (engine) -> compose perturbed inputs on the model's device (one gather)
-> evaluate the model per batch, keeping the requested targets' outputs -> estimate (engine).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from explain_cli.errors import RAISED_LINE, ExplainError, OptionError, one_line
from explain_cli.progress import NullProgress, Progress

if TYPE_CHECKING:
    import numpy as np
    import torch

OUTPUT_SPACES = ("logits", "probs")
PRECISIONS = ("fp32", "bf16", "fp16")
#: ``batch_size auto``: perturbations per forward pass by device type.
AUTO_BATCH = {"cuda": 128}
DEFAULT_BATCH = 64


def resolve_batch_size(size: "int | str", device: "torch.device") -> int:
    """The batch size on ``device``: the ``batch_size`` option as parsed (an integer, or ``"auto"``: by device)."""
    return AUTO_BATCH.get(device.type, DEFAULT_BATCH) if size == "auto" else int(size)


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

    # index_select on the flat map: the same gather as z[:, segments], a third of its time
    keep = z.to(dtype=x.dtype).index_select(1, segments.reshape(-1)).view(z.shape[0], 1, *segments.shape)
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
        head: Callable[[object], "torch.Tensor"] | None = None,
    ) -> None:
        if batch_size < 1:
            raise OptionError("batch_size", f"must be at least 1, got {batch_size}")
        if device.type == "meta":  # a module built on the meta device: shapes without values
            raise ExplainError("the model's weights are on the meta device (shapes without values); load real "
                               "weights first, e.g. model.to_empty(device='cpu') and load_state_dict(...)")
        if output not in OUTPUT_SPACES:
            raise OptionError("output", f"must be logits or probs, got {output!r}")
        if precision not in PRECISIONS:
            raise OptionError("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.warnings: list[str] = []
        if precision != "fp32" and device.type != "cuda":
            # Autocast is a CUDA speed-up; on other devices the model runs in fp32, and the JSON says so.
            self.warnings.append(f"precision {precision} applies on CUDA only; ran in fp32 on {device.type}")
            precision = "fp32"
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.output = output
        self.precision = precision
        self.head = head  # maps the raw model output to scores (B,) or (B, K); no output space applied
        # what deletion/insertion score with, where it differs from `head`: the targets' probabilities
        # when `head` gives a classifier's logits (explain_cli.tasks.Task.probability_scorer)
        self.curve_head: Callable[[object], "torch.Tensor"] | None = None
        self.progress: Progress = progress or NullProgress()
        self.evaluations = 0
        self.backoffs = 0  # times the batch was halved after running out of GPU memory
        self.forward_s = 0.0
        self.targets: "torch.Tensor | None" = None
        self.n_outputs: int | None = None  # scores per example (no head), fixed by the first batch
        self._raw_shape: tuple[int, ...] | None = None  # the model's output shape per example, likewise

    def autocast(self):
        """The autocast context of the chosen precision (none for fp32)."""
        import torch

        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def forward(self, inputs: "torch.Tensor") -> "torch.Tensor":
        """Model outputs (B, n_outputs) in the chosen output space, float64, on the device.

        Out of GPU memory, the batch is halved and retried, and later batches stay at the smaller
        size: the rows are the same (masks and coalitions are drawn up front), so the results do
        not change beyond float rounding.
        """
        import torch

        try:
            return self._forward(inputs)
        except torch.cuda.OutOfMemoryError:
            if len(inputs) == 1:
                raise ExplainError("out of GPU memory at batch size 1; use a smaller input (size) or device cpu") from None
            half = len(inputs) // 2
            self.batch_size = min(self.batch_size, half)
            self.backoffs += 1
            self._free_cache()
            return torch.cat([self.forward(inputs[:half]), self.forward(inputs[half:])])

    def _free_cache(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def peak_memory(self) -> int | None:
        """Peak bytes allocated on the CUDA device during the run (None elsewhere)."""
        import torch

        return int(torch.cuda.max_memory_allocated(self.device)) if self.device.type == "cuda" else None

    def _forward(self, inputs: "torch.Tensor") -> "torch.Tensor":
        """One forward pass of a batch (see :meth:`forward`).

        Raises
        ------
        ExplainError
            The model failed (its own message, on one line), returned something that is not one
            row of scores per example, or returned NaN/infinite scores.
        """
        import torch

        start = time.perf_counter()
        with torch.inference_mode(), self.autocast():
            raw = guarded("model", self.model, inputs)
            self._check_shape(raw, len(inputs))
            out = guarded("target callable", self.head, raw) if self.head is not None else raw
        out = self._scores(out, len(inputs))
        if self.head is None and self.output == "probs":
            out = torch.softmax(out, dim=1) if out.shape[1] > 1 else torch.sigmoid(out)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.forward_s += time.perf_counter() - start
        self.evaluations += inputs.shape[0]
        self.progress.advance(inputs.shape[0])
        return out

    def _check_shape(self, raw: object, batch: int) -> None:
        """A tensor output's shape past the batch axis is the same for every batch (a (B, B) output is not)."""
        import torch

        if not isinstance(raw, torch.Tensor) or raw.dim() < 2 or raw.shape[0] != batch:
            return  # other outputs (detections, tuples) and wrong batch sizes are judged by _scores or the task
        shape = tuple(raw.shape[1:])
        if self._raw_shape is None:
            self._raw_shape = shape
        elif shape != self._raw_shape:
            raise ExplainError(f"the model returned shape {[batch, *shape]} for a batch of {batch}, but "
                               f"{list(self._raw_shape)} per example before; its outputs must not depend on the batch "
                               "(one row of class scores per example)")

    def _scores(self, out: object, batch: int) -> "torch.Tensor":
        """(B, n) float64 scores from what the model (or target callable) returned, or a clear error."""
        import torch

        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            out = out[0]  # e.g. (logits, aux)
        if not isinstance(out, torch.Tensor):
            raise ExplainError(f"the model returned {type(out).__name__}; it must return a tensor of scores "
                               "(in Python, pass target=callable to reduce other outputs to scores)")
        if out.dim() == 0 or out.shape[0] != batch:
            raise ExplainError(f"the model returned shape {list(out.shape)} for a batch of {batch}; "
                               "it must return one row of scores per example")
        if out.dim() > 2:
            raise ExplainError(f"the model returned outputs of shape {list(out.shape)}, not (batch, classes); "
                               "explain a classifier's scores, or in Python pass target=callable reducing them to one score per row")
        out = out.detach().double().reshape(batch, -1)
        if self.n_outputs is None and self.head is None:
            self.n_outputs = out.shape[1]
            self._check_targets()
        if not bool(torch.isfinite(out).all()):
            raise ExplainError(f"the model returned NaN or infinite scores on {int((~torch.isfinite(out)).any(1).sum())} "
                               f"of {batch} inputs; check the input's scale and preprocessing")
        return out

    def select_targets(self, targets: list[int]) -> None:
        """From now on, :meth:`__call__` returns only these output columns."""
        import torch

        if any(t < 0 for t in targets):
            raise OptionError("target", f"{min(targets)} is out of range: class indices start at 0")
        self.targets = torch.as_tensor(targets, dtype=torch.long, device=self.device)
        self._check_targets()

    def _check_targets(self) -> None:
        """Every selected target within the model's outputs (once known): never an index error later."""
        if self.targets is not None and self.n_outputs is not None and len(self.targets):
            top = int(self.targets.max())
            if top >= self.n_outputs:
                raise OptionError("target", f"{top} is out of range: the model has {self.n_outputs} outputs "
                                  f"(0..{self.n_outputs - 1})")

    def __call__(self, inputs: "torch.Tensor") -> "torch.Tensor":
        """Target outputs (B, K), float64 on the device."""
        out = self.forward(inputs)
        if self.targets is not None:
            out = out.index_select(1, self.targets)
        return out

    def chunks(self, n: int) -> Iterator[tuple[int, int]]:
        """(start, stop) pairs covering ``range(n)`` in steps of the batch size (read at every step:
        it shrinks after an out-of-memory back-off)."""
        start = 0
        while start < n:
            stop = min(n, start + self.batch_size)
            yield start, stop
            start = stop


def guarded(what: str, fn: Callable, arg: object) -> object:
    """Call the user's model or target callable; its failure becomes one line with its own message.

    Running out of GPU memory passes through: :meth:`Evaluator.forward` backs off and retries.
    """
    import torch

    try:
        return fn(arg)
    except (ExplainError, MemoryError, KeyboardInterrupt, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:
        first = one_line(str(exc))
        shape = list(arg.shape) if hasattr(arg, "shape") else type(arg).__name__
        said = first[:300] if first and RAISED_LINE.match(first) else (
            type(exc).__name__ + (": " + first[:300] if first else ""))  # TorchScript's line names the real type
        raise ExplainError(f"the {what} failed on a batch of shape {shape}: {said}") from None


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

    def begin(self, engine: str, total: int, *, baseline: bool = True) -> "tuple[np.ndarray, np.ndarray]":
        """Start an engine's run: progress over ``total`` evaluations, with f(x) already counted.

        Returns (f(x), f(baseline)) for the targets as float64 arrays on the CPU: f(x) is
        ``reference`` ((K,), or (N, K) for a batch); f(baseline) (K,) costs one evaluation, or
        is NaN with ``baseline=False`` (engines that sample the baseline among their coalitions
        or take replacement values from other inputs).
        """
        import numpy as np

        progress = self.evaluator.progress
        progress.start(total, engine)
        progress.advance(self.reference.shape[0] if self.reference.dim() == 2 else 1)  # f(x), evaluated before
        f_x = self.reference.cpu().double().numpy()
        f_b = self.baseline_output().numpy() if baseline else np.full(self.n_targets, np.nan)
        return f_x, f_b

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
        """f(baseline) for the targets, (K,) float64 on CPU: one evaluation.

        The model gets a copy: a model that writes into its input must not change our baseline.
        """
        return self.evaluator(self.baseline.unsqueeze(0).clone())[0].cpu()
