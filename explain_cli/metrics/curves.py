"""Deletion and insertion curves of a saliency map, on the same batched core.

The curves (Petsiuk et al. 2018, RISE) rank the pixels of a model-resolution
map and move them a step at a time; every step image is composed with
:func:`explain_cli.core.compose_pixels` from a batch of masks and scored in batches, never one
forward at a time. Deletion can replace pixels by a baseline tensor, a blurred copy, or ROAD's
noisy linear imputation (:mod:`explain_cli.metrics.road`), which keeps deleted regions
in-distribution so that scattered deleted pixels are not rewarded for being out-of-distribution
rather than important.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Union

import numpy as np

from explain_cli.errors import ExplainError, OptionError
from explain_cli.metrics.road import ROAD_NOISE, road_impute

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Evaluator


#: Ways a deleted pixel is replaced: the given baseline tensor, a blurred copy of the input, or
#: ROAD's noisy linear imputation from the pixels still present.
REPLACEMENTS = ("road", "blur", "baseline")
#: The recommended deletion replacement. On 12 images of sample_models/eval (ablation maps,
#: benchmarks/quality_probe.py) a random pixel order scored a *better* (lower) deletion AUC than
#: the ablation map on 9/12 images with a zero baseline (mean AUC map 0.34, random 0.26) and 8/12
#: with blur (0.38 vs 0.40): scattered replaced pixels break the model faster than the object's
#: removal. With ROAD the map beat random on 12/12 (0.36 vs 0.71), and so did the mask itself.
DEFAULT_REPLACEMENT = "road"

ScoreFn = Callable[["torch.Tensor"], "torch.Tensor"]
Scorer = Union["Evaluator", ScoreFn]


@dataclass
class Curve:
    """A deletion or insertion curve for K targets.

    ``scores[k, t]`` is the probability of target k after ``fractions[t]`` of the pixels were
    moved (deleted, or inserted). ``fractions`` starts at 0 and ends at 1.
    """

    kind: str  # 'deletion' or 'insertion'
    replacement: str  # what moved pixels are replaced by: 'road', 'blur' or 'baseline'
    ranking: str  # 'map' (most important first) or 'random'
    fractions: np.ndarray  # (T,) share of pixels moved after each step, 0 .. 1
    scores: np.ndarray  # (K, T) target probabilities along the curve
    auc: np.ndarray  # (K,) trapezoid area under each curve over [0, 1]
    evaluations: int  # forward passes spent on this curve

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "replacement": self.replacement,
            "ranking": self.ranking,
            "auc": [float(v) for v in self.auc],
            "fractions": [round(float(v), 6) for v in self.fractions],
            "scores": [[round(float(v), 6) for v in row] for row in self.scores],
            "evaluations": self.evaluations,
        }



def trapezoid_auc(fractions: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Trapezoid area under ``scores`` over ``fractions``.

    Parameters
    ----------
    fractions : (T,) increasing array from 0 to 1
    scores : (T,) or (K, T) array

    Returns
    -------
    float64 array of shape ``scores.shape[:-1]`` (a 0-d array for one curve).

    Examples
    --------
    >>> float(trapezoid_auc(np.linspace(0, 1, 11), np.linspace(0, 1, 11)))
    0.5
    """
    f = np.asarray(fractions, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if f.ndim != 1 or f.shape[0] < 2 or s.shape[-1] != f.shape[0]:
        raise ExplainError(f"trapezoid_auc needs (T,) fractions with T >= 2 and (..., T) scores, got {f.shape} and {s.shape}")
    if np.any(np.diff(f) < 0):
        raise ExplainError("trapezoid_auc: fractions must be non-decreasing")
    return np.sum(np.diff(f) * (s[..., 1:] + s[..., :-1]) * 0.5, axis=-1)


def step_counts(n_pixels: int, step: float) -> np.ndarray:
    """Pixels moved after each step: 0, s, 2s, ..., n_pixels with s = round(step · n_pixels) ≥ 1.

    The last step may be smaller, as in the RISE reference code; the trapezoid uses the actual
    fractions, so an uneven last step is integrated correctly.
    """
    if not 0.0 < step <= 1.0:
        raise OptionError("step", f"must be in (0, 1] (a share of the pixels per step, e.g. 0.01), got {step}")
    per = max(1, int(round(step * n_pixels)))
    return np.unique(np.append(np.arange(0, n_pixels, per), n_pixels))


def rank_pixels(saliency: "torch.Tensor", generator: "torch.Generator") -> "torch.Tensor":
    """Pixel order, most important first, ties broken at random by ``generator``.

    Parameters
    ----------
    saliency : (H, W) tensor
    generator : torch.Generator (CPU)

    Returns
    -------
    (H·W,) long tensor of flat pixel indices.
    """
    import torch

    flat = saliency.detach().reshape(-1).to("cpu", torch.float64)
    # A random permutation first, then a stable sort: equal scores keep the random order, so a
    # segment-level map (plateaus of equal pixels) is not read row-major, which would favour
    # the top of every segment.
    perm = torch.randperm(flat.numel(), generator=generator)
    order = torch.argsort(-flat[perm], stable=True)
    return perm[order]


def probability_fn(evaluator: "Evaluator") -> ScoreFn:
    """A score function giving the evaluator's target *probabilities*, whatever its output space.

    Deletion and insertion are defined on probabilities (RISE); an evaluator set to logits is
    softmaxed here, and one with a ``curve_head`` (a task's probability scorer) scores with it.
    Forwards are counted by the evaluator as usual.
    """
    import torch

    def score(batch: "torch.Tensor") -> "torch.Tensor":
        if evaluator.curve_head is not None:
            head, evaluator.head = evaluator.head, evaluator.curve_head
            try:
                return evaluator.forward(batch)
            finally:
                evaluator.head = head
        out = evaluator.forward(batch)
        if evaluator.output == "logits":
            out = torch.softmax(out, dim=1) if out.shape[1] > 1 else torch.sigmoid(out)
        if evaluator.targets is not None:
            out = out.index_select(1, evaluator.targets)
        return out

    return score


def _scorer(model: Scorer, batch_size: int | None) -> tuple[ScoreFn, int]:
    from explain_cli.core import Evaluator

    if isinstance(model, Evaluator):
        return probability_fn(model), int(batch_size or model.batch_size)
    if not callable(model):
        raise ExplainError(f"expected an Evaluator or a score function batch -> (B, K), got {type(model).__name__}")
    size = 32 if batch_size is None else int(batch_size)
    if size < 1:
        raise OptionError("batch_size", f"must be at least 1, got {size}")
    return model, size


def _step_scores(score_fn: ScoreFn, x: "torch.Tensor", order: "torch.Tensor", counts: np.ndarray, *,
                 kind: str, replacement: str, fill: "torch.Tensor | None", road_noise: float,
                 generator: "torch.Generator", batch_size: int) -> "torch.Tensor":
    """Scores (T, K) of every step image for one pixel order; T = len(counts).

    A step's image keeps ``x`` where its mask is 1: deletion keeps the pixels ranked after the
    first ``count``, insertion keeps the first ``count`` (the rest come from ``fill``).
    """
    import torch

    from explain_cli.core import compose_pixels

    h, w = x.shape[-2:]
    position = torch.empty(h * w, dtype=torch.long)
    position[order] = torch.arange(h * w)  # rank of every pixel
    position = position.view(h, w).to(x.device)
    counts_t = torch.as_tensor(counts, dtype=torch.long, device=x.device)
    rows: list[torch.Tensor] = []
    for start in range(0, len(counts), batch_size):
        c = counts_t[start : start + batch_size].view(-1, 1, 1)
        keep = position[None] >= c if kind == "deletion" else position[None] < c  # (B, H, W)
        if replacement == "road":
            # The imputation depends on which pixels are gone, so each step has its own fill;
            # noise is drawn step by step in order, so results do not depend on batch_size.
            base = torch.stack([road_impute(x, (~k).cpu().numpy(), noise=road_noise, generator=generator)
                                for k in keep])
        else:
            base = fill
        out = score_fn(compose_pixels(x, base, keep))
        if out.dim() != 2 or out.shape[0] != keep.shape[0]:
            raise ExplainError(f"the score function must return a (B, K) tensor, got shape {tuple(out.shape)}")
        rows.append(out.detach().to("cpu", torch.float64))
    return torch.cat(rows)


def _curve(model: Scorer, x: "torch.Tensor", saliency: "torch.Tensor | np.ndarray | None", *, kind: str,
           replacement: str, baseline: "torch.Tensor | None", step: float, blur_sigma: float | None,
           road_noise: float, batch_size: int | None, seed: int, repeats: int = 1) -> Curve:
    import torch

    if x.dim() != 3:
        raise ExplainError(f"x must be one (C, H, W) model input, got shape {tuple(x.shape)}")
    if replacement not in REPLACEMENTS:
        from explain_cli.errors import suggest

        hint = suggest(str(replacement), REPLACEMENTS)
        hint = f" ({hint})" if hint else ""
        raise OptionError("replacement", f"must be one of {', '.join(REPLACEMENTS)}, got {replacement!r}{hint}")
    if not (road_noise >= 0 and math.isfinite(road_noise)):
        raise OptionError("road_noise", f"must be a finite number >= 0, got {road_noise}")
    score_fn, size = _scorer(model, batch_size)
    h, w = x.shape[-2:]
    counts = step_counts(h * w, step)
    fill = None
    if kind == "insertion" or replacement == "blur":
        from explain_cli.blur import blur  # the blur baseline's own, so "blur" means one thing

        if blur_sigma is not None and not float(blur_sigma) > 0:
            raise OptionError("blur_sigma", f"must be positive (pixels at model resolution), got {blur_sigma}")
        fill = blur(x, blur_sigma)
    elif replacement == "baseline":
        if baseline is None:
            raise OptionError("baseline", "is needed for replacement='baseline' (a (C, H, W) tensor); or use road or blur")
        fill = baseline.to(device=x.device, dtype=x.dtype).expand_as(x)
    generator = torch.Generator().manual_seed(int(seed))

    if saliency is None:  # random rankings: one set of forwards serves every target
        runs = [_step_scores(score_fn, x, torch.randperm(h * w, generator=generator), counts, kind=kind,
                             replacement=replacement, fill=fill, road_noise=road_noise, generator=generator,
                             batch_size=size) for _ in range(repeats)]
        scores = torch.stack(runs).mean(dim=0).T  # (K, T)
        evaluations = len(counts) * repeats
    else:
        maps = torch.as_tensor(np.asarray(saliency) if not isinstance(saliency, torch.Tensor) else saliency)
        maps = maps.detach().to("cpu", torch.float64)
        if maps.dim() == 2:
            maps = maps[None]
        if maps.dim() != 3 or tuple(maps.shape[1:]) != (h, w):
            raise ExplainError(
                f"saliency must be (H, W) or (K, H, W) at the model's resolution {h}x{w}, got {tuple(maps.shape)}; "
                "use the model-space map, not the one resized to the original image"
            )
        if not torch.isfinite(maps).all():
            raise ExplainError("saliency has NaN or infinite values; rank a finite model-space map")
        if maps.shape[0] == 1:  # one map ranks every target column: one set of forwards
            scores = _step_scores(score_fn, x, rank_pixels(maps[0], generator), counts, kind=kind,
                                  replacement=replacement, fill=fill, road_noise=road_noise,
                                  generator=generator, batch_size=size).T
            evaluations = len(counts)
        else:  # each target by its own ranking: K sets of forwards, column k kept from set k
            columns = []
            for k in range(maps.shape[0]):
                out = _step_scores(score_fn, x, rank_pixels(maps[k], generator), counts, kind=kind,
                                   replacement=replacement, fill=fill, road_noise=road_noise,
                                   generator=generator, batch_size=size)
                if out.shape[1] != maps.shape[0]:
                    raise ExplainError(
                        f"{maps.shape[0]} saliency maps but the score function returns {out.shape[1]} targets; "
                        "give one map per target column"
                    )
                columns.append(out[:, k])
            scores = torch.stack(columns)
            evaluations = len(counts) * maps.shape[0]
    fractions = counts / float(h * w)
    scores_np = scores.numpy()
    return Curve(kind=kind, replacement=replacement if kind == "deletion" else "blur",
                 ranking="map" if saliency is not None else "random", fractions=fractions, scores=scores_np,
                 auc=trapezoid_auc(fractions, scores_np), evaluations=evaluations)


def deletion_curve(model: Scorer, x: "torch.Tensor", saliency: "torch.Tensor | np.ndarray", *,
                   replacement: str = DEFAULT_REPLACEMENT, baseline: "torch.Tensor | None" = None,
                   step: float = 0.01, blur_sigma: float | None = None, road_noise: float = ROAD_NOISE,
                   batch_size: int | None = None, seed: int = 0) -> Curve:
    """Deletion curve: target probability as the most salient pixels are removed first.

    Lower AUC is better. Each target k is ranked by its own map, so K targets cost K·T forwards
    (T = 1 + ceil(1/step)); a single (H, W) map ranks all targets with one set of T forwards.

    Parameters
    ----------
    model : Evaluator or callable
        An :class:`~explain_cli.core.Evaluator` (its selected targets; logits are softmaxed), or
        ``score_fn(batch (B, C, H, W)) -> (B, K)`` probabilities.
    x : (C, H, W) tensor
        The model input, on the model's device.
    saliency : (K, H, W) or (H, W) tensor or array
        Map at the model's resolution, one per target column.
    replacement : {'road', 'blur', 'baseline'}
        What deleted pixels become: ROAD noisy linear imputation (default), a blurred copy of
        ``x``, or ``baseline``.
    baseline : (C, H, W) tensor, optional
        Needed for ``replacement='baseline'``.
    step : float
        Share of the pixels moved per step (0.01: 1%).
    blur_sigma : float, optional
        Blur σ in model pixels for ``replacement='blur'``; default max(H, W) / 16.
    road_noise : float
        ROAD's noise standard deviation, in model input units.
    batch_size : int, optional
        Step images per forward; default the evaluator's (32 for a plain function).
    seed : int
        Seeds the tie-breaking of equal map values and ROAD's noise.

    Returns
    -------
    Curve
        ``fractions`` (T,), ``scores`` (K, T), ``auc`` (K,).

    Raises
    ------
    ExplainError
        If the map's shape does not match the input or has non-finite values, or an option is out of range.
    """
    return _curve(model, x, saliency, kind="deletion", replacement=replacement, baseline=baseline, step=step,
                  blur_sigma=blur_sigma, road_noise=road_noise, batch_size=batch_size, seed=seed)


def insertion_curve(model: Scorer, x: "torch.Tensor", saliency: "torch.Tensor | np.ndarray", *,
                    step: float = 0.01, blur_sigma: float | None = None, batch_size: int | None = None,
                    seed: int = 0) -> Curve:
    """Insertion curve: starting from a blurred copy of ``x``, the most salient pixels of ``x`` come in first.

    Higher AUC is better. Parameters as :func:`deletion_curve`; ``blur_sigma`` sets the start image.
    """
    return _curve(model, x, saliency, kind="insertion", replacement="blur", baseline=None, step=step,
                  blur_sigma=blur_sigma, road_noise=0.0, batch_size=batch_size, seed=seed)


def random_deletion_curve(model: Scorer, x: "torch.Tensor", *, replacement: str = DEFAULT_REPLACEMENT,
                          baseline: "torch.Tensor | None" = None, step: float = 0.01,
                          blur_sigma: float | None = None, road_noise: float = ROAD_NOISE,
                          batch_size: int | None = None, seed: int = 0, repeats: int = 1) -> Curve:
    """Deletion curve of a random pixel order (seeded), averaged over ``repeats`` orders.

    The reference a map must beat. One order serves all targets: ``repeats``·T forwards.
    """
    if repeats < 1:
        raise OptionError("repeats", f"must be at least 1, got {repeats}")
    return _curve(model, x, None, kind="deletion", replacement=replacement, baseline=baseline, step=step,
                  blur_sigma=blur_sigma, road_noise=road_noise, batch_size=batch_size, seed=seed, repeats=repeats)


def random_insertion_curve(model: Scorer, x: "torch.Tensor", *, step: float = 0.01, blur_sigma: float | None = None,
                           batch_size: int | None = None, seed: int = 0, repeats: int = 1) -> Curve:
    """Insertion curve of a random pixel order (seeded), averaged over ``repeats`` orders."""
    if repeats < 1:
        raise OptionError("repeats", f"must be at least 1, got {repeats}")
    return _curve(model, x, None, kind="insertion", replacement="blur", baseline=None, step=step,
                  blur_sigma=blur_sigma, road_noise=0.0, batch_size=batch_size, seed=seed, repeats=repeats)


def deletion_auc(model: Scorer, x: "torch.Tensor", saliency: "torch.Tensor | np.ndarray", **options: Any) -> np.ndarray:
    """(K,) deletion AUCs; options as :func:`deletion_curve`. Lower is better."""
    return deletion_curve(model, x, saliency, **options).auc


def insertion_auc(model: Scorer, x: "torch.Tensor", saliency: "torch.Tensor | np.ndarray", **options: Any) -> np.ndarray:
    """(K,) insertion AUCs; options as :func:`insertion_curve`. Higher is better."""
    return insertion_curve(model, x, saliency, **options).auc


def random_deletion_auc(model: Scorer, x: "torch.Tensor", **options: Any) -> np.ndarray:
    """(K,) deletion AUCs of a random order; options as :func:`random_deletion_curve`."""
    return random_deletion_curve(model, x, **options).auc


def random_insertion_auc(model: Scorer, x: "torch.Tensor", **options: Any) -> np.ndarray:
    """(K,) insertion AUCs of a random order; options as :func:`random_insertion_curve`."""
    return random_insertion_curve(model, x, **options).auc
