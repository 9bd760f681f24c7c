"""Classification on the task interface: a target is one output column, as softmax or logit.

The numbers are those the Evaluator computes without a head (float64, then softmax over the
columns, or a sigmoid for a single output), and the targets are those
:func:`explain_cli.targets.resolve_targets` picks, so a run through this task and a run
through the Evaluator's own output space give identical scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from explain_cli.errors import ExplainError, OptionError
from explain_cli.tasks.base import Target, TargetRequest, Task

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ClassTarget(Target):
    """One class of a classifier; ``index`` is its output column."""


class ClassificationTask(Task):
    """Scores are output columns of a (B, n_outputs) tensor, in the ``output`` space.

    Parameters
    ----------
    output : {'probs', 'logits'}
        ``probs``: softmax over the outputs (a sigmoid when there is one output); ``logits``:
        the raw columns.
    """

    name = "classification"
    options = ("output",)

    def __init__(self, output: str = "probs") -> None:
        if output not in ("probs", "logits"):
            raise OptionError("output", f"must be logits or probs, got {output!r}")
        self.output = output

    @property
    def output_space(self) -> str:
        return self.output

    def decode(self, raw: object, size: tuple[int, int]) -> "torch.Tensor":
        """(B, n_outputs) float64 scores in the output space.

        Raises
        ------
        ExplainError
            For detections (the message names ``task detection``), non-tensors, or a shape
            that is not one row of scores per input.
        """
        import torch

        from explain_cli.tasks.detection_formats import looks_like_detections

        if looks_like_detections(raw):
            raise OptionError("task", "is classification, but the model returned detections (boxes, scores, labels); "
                                      "use `task` detection")
        if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], torch.Tensor):
            raw = raw[0]  # e.g. (logits, aux)
        if not isinstance(raw, torch.Tensor):
            raise ExplainError(f"the model returned {type(raw).__name__}; a classifier must return a tensor of scores "
                               "(in Python, pass target=callable to reduce other outputs to scores)")
        if raw.dim() == 0:
            raise ExplainError("the model returned shape [] (a single number); it must return one row of scores per example")
        if raw.dim() > 2:
            raise ExplainError(f"the model returned outputs of shape {list(raw.shape)}, not (batch, classes); "
                               "explain a classifier's scores, or choose the task that matches the model "
                               "(detection, segmentation, similarity)")
        return _space(raw.detach().double().reshape(raw.shape[0], -1), self.output)

    def targets(self, fx: "torch.Tensor", request: TargetRequest) -> list[ClassTarget]:
        """The classes ``request.target`` names, or the top-k of f(x) averaged over the inputs."""
        from explain_cli.targets import resolve_targets
        from explain_cli.tasks.boxes import is_box

        boxes = [t for t in request.target if is_box(t)]
        if boxes:
            raise OptionError("target", f"{boxes[0]!r} is a box; boxes apply to task detection "
                                        "(in Python, pass several class indices as a list)")

        mean = fx.mean(dim=0).cpu().numpy()
        top_k = 1 if request.top_k is None else request.top_k
        chosen = resolve_targets(list(request.target), top_k, mean, request.labels, request.labels_source,
                                 model_source=request.model_source)
        labels = request.labels
        return [ClassTarget(label=labels[i] if labels else None, index=int(i), score=float(mean[i])) for i in chosen]

    def score(self, decoded: "torch.Tensor", targets: Sequence[Target], size: tuple[int, int]) -> "torch.Tensor":
        import torch

        columns = torch.as_tensor([t.index for t in targets], dtype=torch.long, device=decoded.device)
        return decoded.index_select(1, columns)

    def probability_scorer(self, targets: Sequence[Target], size: tuple[int, int]):
        """Softmax over every output, then the targets' columns, whatever ``output`` is (deletion and insertion)."""
        import torch

        columns = [t.index for t in targets]

        def head(raw: object) -> "torch.Tensor":
            scores = self.decode(raw, size) if self.output == "probs" else _space(self.decode(raw, size), "probs")
            return scores.index_select(1, torch.as_tensor(columns, dtype=torch.long, device=scores.device))

        head.__name__ = "classification_probabilities"
        return head

    @classmethod
    def from_options(cls, options: Any) -> "ClassificationTask":
        return cls(output=options.output)

    def params(self) -> dict[str, Any]:
        return {"task": self.name, "output": self.output}


def _space(out: "torch.Tensor", output: str) -> "torch.Tensor":
    """(B, n) float64 scores in ``output`` space; NaN or infinite scores are a one-line error."""
    import torch

    if not bool(torch.isfinite(out).all()):
        raise ExplainError(f"the model returned NaN or infinite scores on {int((~torch.isfinite(out)).any(1).sum())} "
                           f"of {out.shape[0]} inputs; check the input's scale and preprocessing")
    if output == "probs":
        out = torch.softmax(out, dim=1) if out.shape[1] > 1 else torch.sigmoid(out)
    return out
