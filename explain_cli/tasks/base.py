"""The task protocol: how a model's raw output batch becomes (B, K) target scores.

A task is the one place that knows what a model returns. It decodes and checks a raw output
batch (:meth:`Task.decode`), picks and names the default targets from f(x)
(:meth:`Task.targets`), and scores decoded batches for K targets at once (:meth:`Task.score`).
Its :meth:`Task.scorer` is the :class:`~explain_cli.core.Evaluator`'s ``head``, so the engines
still explain plain scalars and never learn what a target is. A task never opens files and
never draws: its :class:`Target`\\ s carry the numbers and names the JSON and the picture need.

The front door's sequence (see :func:`reference_targets`)::

    evaluator = Evaluator(model, device, ...)            # no head yet
    targets, reference = reference_targets(task, evaluator, x, request)
    # evaluator.head is now task.scorer(targets, size); reference is f(x) for every target
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Evaluator


@dataclass(frozen=True)
class Target:
    """One explained output: what a JSON target entry and a panel caption need.

    Subclasses add their task's fields (a box, a region, a reference) and extend
    :meth:`describe`; the base fields mean the same in every task.
    """

    label: str | None  # the name shown in captions and the JSON (None: the model has no names)
    index: int | None  # the class index explained (classification: the output column); None: none
    score: float  # the target score on f(x), i.e. the engines' reference value

    def describe(self) -> dict[str, Any]:
        """The JSON-ready entry (the engine adds baseline score, segments, ...)."""
        return {"index": self.index, "label": self.label, "score": float(self.score)}

    def caption(self) -> str:
        """A panel's caption, e.g. ``cat (3): 0.91``."""
        name = self.label if self.label is not None else (f"class {self.index}" if self.index is not None else "target")
        index = f" ({self.index})" if self.index is not None and self.label is not None else ""
        return f"{name}{index}: {self.score:.3g}"

    def overlay(self) -> dict[str, Any] | None:
        """What the renderer draws over this target's panel besides the map (None: nothing)."""
        return None


@dataclass(frozen=True)
class TargetRequest:
    """What the user asked for, in the words every task shares.

    Task-specific settings (``min_score``, ``decoder``, a region, a reference) are the task's
    constructor arguments, not fields here.
    """

    target: tuple[Any, ...] = ("auto",)  # the `target` option: auto, indices, names, boxes (detection)
    top_k: int | None = None  # at most this many default targets; None: the task's default
    labels: list[str] | None = None  # class names, if known
    labels_source: str = "labels"  # where `labels` came from: 'labels' (the option) or 'model'
    model_source: str | None = None  # the MODEL argument, for error messages about its own labels
    size: tuple[int, int] | None = None  # (H, W) of the model input
    geometry: Any = None  # preprocess.Geometry: user boxes/regions are given in original-image pixels


class Task(ABC):
    """Turns raw model outputs into target scores; see the module docstring."""

    name: ClassVar[str]
    #: Options only this task reads (declared with `tasks` in the schema, which refuses them under another task).
    options: ClassVar[tuple[str, ...]] = ()
    #: Engine parameter defaults that differ for this task, e.g. ``{"rise": {"grid": 16}}``.
    engine_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    #: True when targets belong to one image (boxes, regions): batch engines (permutation) are refused.
    per_image: ClassVar[bool] = False

    @property
    def output_space(self) -> str:
        """What the JSON's ``output_space`` records for this task's scores."""
        return self.name

    @abstractmethod
    def decode(self, raw: object, size: tuple[int, int]) -> Any:
        """The validated canonical form of one raw output batch (its ``len`` is the batch size).

        Raises
        ------
        ExplainError
            One line naming what is wrong with the output and, where there is one, the fix.
        """

    def join(self, decoded: Sequence[Any]) -> Any:
        """Decoded chunks of one batch as one (f(x) may be evaluated in several chunks)."""
        import torch

        return decoded[0] if len(decoded) == 1 else torch.cat(list(decoded))

    def check_output(self, raw: object, batch: int, size: tuple[int, int]) -> None:
        """Raise a one-line ExplainError unless ``raw`` is a valid output for ``batch`` inputs."""
        from explain_cli.errors import ExplainError

        n = len(self.decode(raw, size))
        if n != batch:
            raise ExplainError(f"the model returned outputs for {n} inputs given a batch of {batch}; "
                               "it must return one output per input")

    @abstractmethod
    def targets(self, fx: Any, request: TargetRequest) -> Sequence[Target]:
        """The targets to explain, chosen from f(x)'s decoded output (all inputs) and ``request``.

        Raises
        ------
        ExplainError
            For a target that does not exist, or no default target (the message says why).
        """

    @abstractmethod
    def score(self, decoded: Any, targets: Sequence[Target], size: tuple[int, int]) -> "torch.Tensor":
        """(B, K) float64 scores of a decoded batch for every target: one vectorised step."""

    def scorer(self, targets: Sequence[Target], size: tuple[int, int]) -> Callable[[object], "torch.Tensor"]:
        """The Evaluator's ``head``: a raw output batch -> (B, K) float64 target scores."""
        targets = tuple(targets)

        def head(raw: object) -> "torch.Tensor":
            return self.score(self.decode(raw, size), targets, size)

        head.__name__ = f"{self.name}_scores"
        return head

    def probability_scorer(self, targets: Sequence[Target], size: tuple[int, int]) -> Callable[[object], "torch.Tensor"]:
        """The head deletion and insertion score with: the targets' scores as probabilities (default: :meth:`scorer`)."""
        return self.scorer(targets, size)

    @classmethod
    def from_options(cls, options: Any) -> "Task":
        """The task built from the typed target options (:class:`explain_cli.options.groups.TargetOptions`)."""
        return cls()

    def params(self) -> dict[str, Any]:
        """The task's settings and score definition, for the JSON's ``params`` (JSON-ready)."""
        return {"task": self.name}


def reference_targets(task: Task, evaluator: "Evaluator", x: "torch.Tensor",
                      request: TargetRequest) -> tuple[list[Target], "torch.Tensor"]:
    """Evaluate f(x) once, choose the targets, and make the evaluator score them from now on.

    f(x) runs through ``evaluator`` (counted, timed, chunked and out-of-memory safe like every
    later batch) with a head that keeps each chunk's decoded output; the reference scores come
    from those same outputs, so no second forward pass is spent.

    Parameters
    ----------
    task : Task
    evaluator : Evaluator
        Built without a head; on return its ``head`` is ``task.scorer(targets, size)``.
    x : (N, C, H, W) tensor on the evaluator's device
        The input(s) to explain (N = 1 except for batch engines).
    request : TargetRequest
        ``size`` is filled from ``x`` when missing.

    Returns
    -------
    targets : list of Target (K)
    reference : (N, K) float64 tensor on the CPU
        f(x) for every target: ``reference[0]`` is the ``Problem.reference`` of a one-input run.
    """
    import dataclasses

    import torch

    from explain_cli.errors import ExplainError

    size = (int(x.shape[-2]), int(x.shape[-1]))
    if request.size is None:
        request = dataclasses.replace(request, size=size)
    if task.per_image and len(x) > 1:
        raise ExplainError(f"task {task.name} explains one image at a time (its targets belong to that image); "
                           f"got {len(x)} inputs in one run")
    chunks: list[Any] = []

    def keep(raw: object) -> "torch.Tensor":
        decoded = task.decode(raw, size)
        chunks.append(decoded)
        return torch.zeros((len(decoded), 1), dtype=torch.float64)

    evaluator.head = keep
    for start, stop in evaluator.chunks(len(x)):
        evaluator(x[start:stop].clone())  # the model gets a copy: one that writes into its input must not change x
    fx = task.join(chunks)
    if len(fx) != len(x):
        raise ExplainError(f"the model returned outputs for {len(fx)} inputs given {len(x)}; "
                           "it must return one output per input")
    targets = list(task.targets(fx, request))
    evaluator.head = task.scorer(targets, size)
    reference = task.score(fx, targets, size).detach().to("cpu", torch.float64)
    return targets, reference
