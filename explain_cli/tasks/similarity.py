"""The similarity task: embeddings (B, D) scored against a reference embedding or K prompt embeddings.

Scores of an embedding e::

    reference r (D,):                  s = cos(e, r)                               one target
    prompts p_1..p_K (K, D), K >= 2:   s_k = softmax_k(τ · cos(e, p_k)) over all K  K targets (zero-shot)

with cos(a, b) = a·b / (max(|a|, ε) · max(|b|, ε)), ε = 1e-12 (an all-zero embedding has cosine 0
to everything) and τ the ``temperature`` (100, CLIP's). Zero-shot is a classifier whose logits
are τ·cos: ``target`` and ``top_k`` choose among the prompts exactly as they choose classes
(:func:`explain_cli.targets.resolve_targets`), with the ``labels`` option naming the prompts.

The prompt embeddings (e.g. CLIP text) are computed elsewhere; a reference image is embedded by
the same model and preprocessing (:meth:`SimilarityTask.from_reference_image`). With
``baseline="reference"`` (:func:`reference_baseline`) a removed segment takes the reference's
pixels: segments where the images agree get exactly 0 and Σφ = cos(x, ref) − 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from explain_cli.errors import ExplainError, OptionError
from explain_cli.tasks.base import Target, TargetRequest, Task

if TYPE_CHECKING:
    import numpy as np
    import torch

EPS = 1e-12


@dataclass(frozen=True)
class SimilarityTarget(Target):
    """The similarity to the reference (``kind='reference'``) or one prompt's zero-shot probability."""

    kind: str = "reference"  # 'reference' (cos to one embedding) or 'prompt' (zero-shot probability)
    cosine: float = float("nan")  # cos(f(x), the reference or this prompt), mean over the inputs
    temperature: float | None = None  # τ of the zero-shot softmax (prompts only)
    reference: str = "vector"  # what the reference was: 'image' or 'vector' (or 'prompts')
    thumbnail: Any = field(default=None, compare=False, repr=False)  # (h, w, C) float pixels in [0, 1], for the panel

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(kind=self.kind, cosine=float(self.cosine), reference=self.reference)
        if self.temperature is not None:
            out["temperature"] = float(self.temperature)
        return out

    def caption(self) -> str:
        if self.kind == "reference":
            return f"similarity to the reference {self.reference}: cos {self.score:.3g}"
        name = self.label if self.label is not None else f"prompt {self.index}"
        return f"{name}: p {self.score:.3g} (cos {self.cosine:.3g})"

    def overlay(self) -> dict[str, Any]:
        """A reference's thumbnail (None when the reference was a vector), or the prompt's label."""
        if self.kind == "reference":
            return {"thumbnail": self.thumbnail, "caption": self.caption()}
        return {"prompt": self.label if self.label is not None else f"prompt {self.index}", "caption": self.caption()}


class SimilarityTask(Task):
    """Cosine similarity to a reference, or zero-shot over prompts (module docstring).

    Parameters
    ----------
    reference : (D,) or (K, D) tensor or array
        One reference embedding, or K >= 2 prompt embeddings (zero-shot). A (1, D) array is one
        reference.
    temperature : float
        τ of the zero-shot softmax; positive and finite.
    reference_kind : {'vector', 'image'}
        What the reference came from, for the JSON and captions.
    thumbnail : (h, w, C) array in [0, 1], optional
        The reference image's pixels, for the renderer.
    image : (C, H, W) tensor, optional
        The reference image as the model sees it (after preprocessing): ``baseline="reference"``.

    Raises
    ------
    OptionError
        For a missing reference, a shape other than (D,) or (K, D), a zero or non-finite row,
        or a temperature that is not a positive number.
    """

    name = "similarity"
    options = ("reference", "temperature")

    def __init__(self, reference: Any = None, *, temperature: float = 100.0, reference_kind: str = "vector",
                 thumbnail: Any = None, image: Any = None) -> None:
        self.reference = _reference_matrix(reference)  # (K, D) float64 on the CPU
        try:
            tau = float(temperature)
        except (TypeError, ValueError):
            tau = float("nan")
        if not (math.isfinite(tau) and tau > 0):
            raise OptionError("temperature", f"must be a positive number, got {temperature!r}")
        self.temperature = tau
        self.reference_kind = reference_kind if self.n_prompts == 1 else "prompts"
        self.thumbnail = thumbnail
        self.image = image
        self._unit = self.reference / self.reference.norm(dim=1, keepdim=True)

    @property
    def n_prompts(self) -> int:
        """K: 1 for one reference embedding, K >= 2 for zero-shot prompts."""
        return int(self.reference.shape[0])

    @property
    def zero_shot(self) -> bool:
        return self.n_prompts > 1

    @property
    def output_space(self) -> str:
        return "zero-shot probs" if self.zero_shot else "cosine"

    @classmethod
    def from_reference_output(cls, raw: object, **options: Any) -> "SimilarityTask":
        """The task whose reference is the embedding in ``raw``: the model's output on one reference image.

        Raises
        ------
        ExplainError
            Unless ``raw`` holds exactly one embedding (a (1, D) tensor).
        """
        embedding = _embeddings(raw, "the reference image")
        if embedding.shape[0] != 1:
            raise ExplainError(f"the model returned {embedding.shape[0]} embeddings for one reference image; "
                               "it must return one per input")
        options.setdefault("reference_kind", "image")
        return cls(embedding[0], **options)

    @classmethod
    def from_reference_image(cls, model: Callable[["torch.Tensor"], object], x_ref: "torch.Tensor",
                             **options: Any) -> "SimilarityTask":
        """Embed the reference ``x_ref`` (C, H, W), already preprocessed like the input, with ``model``.

        One forward pass outside the Evaluator (it is not one of the explanation's evaluations).
        Pass ``thumbnail`` (the reference's pixels) in ``options`` for the panel.
        """
        import torch

        from explain_cli.core import guarded

        with torch.inference_mode():
            raw = guarded("model", model, x_ref.unsqueeze(0).clone())
        return cls.from_reference_output(raw, **options)

    def decode(self, raw: object, size: tuple[int, int]) -> "torch.Tensor":
        """(B, D) float64 embeddings.

        Raises
        ------
        ExplainError
            Unless the output is a 2-D tensor; OptionError when D differs from the reference's.
        """
        out = _embeddings(raw, "the input")
        if out.shape[1] != self.reference.shape[1]:
            what = "the prompt embeddings have" if self.zero_shot else "the reference has"
            raise OptionError("reference", f"has the wrong dimension: {what} {self.reference.shape[1]} values but "
                                           f"the model's embeddings have {out.shape[1]}; embed the reference with "
                                           "this model")
        return out

    def cosines(self, decoded: "torch.Tensor") -> "torch.Tensor":
        """(B, K) float64 cosine similarities of each embedding to each reference row."""
        unit = self._unit.to(decoded.device)
        norms = decoded.norm(dim=1, keepdim=True).clamp_min(EPS)
        return (decoded / norms) @ unit.T

    def all_scores(self, decoded: "torch.Tensor") -> "torch.Tensor":
        """(B, K) scores for every reference row: cosines, or the zero-shot softmax over the prompts."""
        import torch

        cos = self.cosines(decoded)
        return torch.softmax(self.temperature * cos, dim=1) if self.zero_shot else cos

    def targets(self, fx: "torch.Tensor", request: TargetRequest) -> list[SimilarityTarget]:
        """The reference (one target), or the prompts ``request.target`` names / the top-k, on the inputs' mean."""
        scores = self.all_scores(fx).mean(dim=0).cpu()
        cos = self.cosines(fx).mean(dim=0).cpu()
        if not self.zero_shot:
            if [str(t).strip() for t in request.target] not in ([], ["auto"]):
                raise OptionError("target", "names prompts, but the reference is one embedding: its only target is the "
                                            "similarity to it (target auto); pass K prompt embeddings for zero-shot")
            if request.top_k not in (None, 1):
                raise OptionError("top_k", "applies to zero-shot prompts; one reference embedding has one target")
            return [SimilarityTarget(label="reference", index=None, score=float(scores[0]), kind="reference",
                                     cosine=float(cos[0]), reference=self.reference_kind, thumbnail=self.thumbnail)]
        from explain_cli.targets import resolve_targets

        labels = self._prompt_labels(request)
        top_k = 1 if request.top_k is None else request.top_k
        chosen = resolve_targets(list(request.target), top_k, scores.numpy(), labels, "labels")
        return [SimilarityTarget(label=labels[k] if labels else None, index=int(k), score=float(scores[k]),
                                 kind="prompt", cosine=float(cos[k]), temperature=self.temperature,
                                 reference="prompts") for k in chosen]

    def _prompt_labels(self, request: TargetRequest) -> list[str] | None:
        """The ``labels`` option names the prompts; a model's own labels (its classes) never do."""
        if request.labels is None or request.labels_source != "labels":
            return None
        if len(request.labels) != self.n_prompts:
            raise OptionError("labels", f"gives {len(request.labels)} names but the reference has {self.n_prompts} "
                                        "prompt embeddings; give one label per row, in the same order")
        return list(request.labels)

    def score(self, decoded: "torch.Tensor", targets: Sequence[Target], size: tuple[int, int]) -> "torch.Tensor":
        import torch

        columns = torch.as_tensor([t.index or 0 for t in targets], dtype=torch.long, device=decoded.device)
        return self.all_scores(decoded).index_select(1, columns)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.name, "reference": self.reference_kind,
                               "dimensions": int(self.reference.shape[1])}
        if self.zero_shot:
            out.update(prompts=self.n_prompts, temperature=self.temperature,
                       score="softmax over the prompts of temperature * cos(embedding, prompt)")
        else:
            out["score"] = "cos(embedding, reference)"
        return out


def reference_baseline(reference: "torch.Tensor", x: "torch.Tensor") -> "torch.Tensor":
    """The baseline of ``baseline="reference"``: the reference image in model-input space.

    Parameters
    ----------
    reference, x : (C, H, W) tensors
        The reference image and the input, both after the same preprocessing.

    Returns
    -------
    (C, H, W) tensor
        A copy of ``reference`` on ``x``'s device and dtype: a removed segment takes its pixels.

    Raises
    ------
    OptionError
        Naming ``baseline`` when the two differ in shape.
    """
    if tuple(reference.shape) != tuple(x.shape):
        raise OptionError("baseline", f"reference needs a reference image of the input's size after preprocessing: "
                                      f"the reference is {list(reference.shape)}, the input {list(x.shape)}; "
                                      "preprocess both with size H,W")
    return reference.detach().to(device=x.device, dtype=x.dtype).clone()


def _embeddings(raw: object, what: str) -> "torch.Tensor":
    import torch

    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], torch.Tensor):
        raw = raw[0]
    if not isinstance(raw, torch.Tensor):
        raise ExplainError(f"the model returned {type(raw).__name__} for {what}; an embedding model must return a "
                           "(batch, dimensions) tensor")
    if raw.dim() != 2:
        raise ExplainError(f"the model returned outputs of shape {list(raw.shape)} for {what}, not (batch, dimensions);"
                           " task similarity explains embeddings: flatten them in the model, or choose another task")
    return raw.detach().double()


def _reference_matrix(reference: Any) -> "torch.Tensor":
    """(K, D) float64 CPU rows from a (D,) or (K, D) tensor or array, each finite and non-zero."""
    import numpy as np
    import torch

    if reference is None:
        raise OptionError("reference", "is required for task similarity: a reference image, a (D,) embedding, or "
                                       "(K, D) prompt embeddings with labels")
    if isinstance(reference, (str, bytes)) or hasattr(reference, "__fspath__"):
        raise OptionError("reference", f"{str(reference)!r} is a path: the front door reads it (an image is embedded "
                                       "with the model, a .npy is a vector); a task takes the array")
    if isinstance(reference, torch.Tensor):
        ref = reference.detach().to("cpu", torch.float64)
    else:
        arr = np.asarray(reference)
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise OptionError("reference", f"must be an array of numbers, got dtype {arr.dtype}")
        ref = torch.as_tensor(arr.astype(np.float64))  # a copy: the caller's array stays as it was
    if ref.dim() == 1:
        ref = ref[None]
    if ref.dim() != 2 or ref.shape[1] == 0 or ref.shape[0] == 0:
        raise OptionError("reference", f"must be a (D,) embedding or (K, D) prompt embeddings, got shape "
                                       f"{list(ref.shape)}")
    if not bool(torch.isfinite(ref).all()):
        raise OptionError("reference", "holds NaN or infinite values")
    zero = (ref.norm(dim=1) == 0).nonzero().flatten().tolist()
    if zero:
        where = "is a zero vector" if ref.shape[0] == 1 else f"row {zero[0]} is a zero vector"
        raise OptionError("reference", f"{where}: its cosine similarity is undefined; check the embedding")
    return ref.clone()
