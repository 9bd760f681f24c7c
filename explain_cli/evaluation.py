"""Faithfulness and plausibility metrics for a saliency map, on the same batched core.

Deletion and insertion curves (Petsiuk et al. 2018, RISE) rank the pixels of a model-resolution
map and move them a step at a time; every step image is composed with
:func:`explain_cli.core.compose_pixels` from a batch of masks and scored in batches, never one
forward at a time. Deletion can replace pixels by a baseline tensor, a blurred copy, or ROAD's
noisy linear imputation (Rong et al. 2022), which keeps deleted regions in-distribution so that
scattered deleted pixels are not rewarded for being out-of-distribution rather than important.

Localisation (pointing game, energy in mask), stability over seeds (top-k Jaccard) and the model
randomisation sanity check (Adebayo et al. 2018) need only maps, masks and score vectors.

Library functions only: the CLI wires flags and JSON. Heavy imports live inside functions.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import numpy as np

from explain_cli.errors import ExplainError, OptionError

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
#: ROAD's neighbour weights (Rong et al. 2022): 1/6 for the 4 direct, 1/12 for the 4 diagonal.
ROAD_NEIGHBOURS = (
    (-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
    (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12),
)
#: ROAD's noise standard deviation, in model input units (the paper's value on normalised input).
ROAD_NOISE = 0.01

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


# --------------------------------------------------------------------------- curves


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


def gaussian_blur(x: "torch.Tensor", sigma: float | None = None) -> "torch.Tensor":
    """A Gaussian-blurred copy of ``x`` (C, H, W); ``sigma`` defaults to max(H, W) / 16.

    The default equals the ``blur`` baseline's, so "blur" means one thing across the tool.
    """
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    h, w = x.shape[-2:]
    sigma = max(h, w) / 16.0 if sigma is None else float(sigma)
    if not sigma > 0:
        raise OptionError("blur_sigma", f"must be positive (pixels at model resolution), got {sigma}")
    size = int(2 * round(3 * sigma) + 1)
    # Reflect padding needs a kernel narrower than the image; clip to the largest odd size that fits.
    size = min(size, 2 * (min(h, w) // 2) - 1) if min(h, w) > 2 else 1
    return tv_blur(x.unsqueeze(0), [size, size], [sigma, sigma])[0].contiguous()


def road_impute(x: "torch.Tensor", deleted: np.ndarray, *, noise: float = ROAD_NOISE,
                generator: "torch.Generator | None" = None) -> "torch.Tensor":
    """ROAD's noisy linear imputation: deleted pixels become the weighted mean of their neighbours.

    Every deleted pixel ``i`` satisfies ``v_i = Σ_j w_ij v_j / Σ_j w_ij`` over its 8 neighbours
    inside the image (weights 1/6 direct, 1/12 diagonal), where a neighbour's ``v_j`` is the
    input when it is kept and the unknown when it is deleted. The sparse system is solved once
    per channel; then Gaussian noise of std ``noise`` is added to the imputed pixels only.

    Parameters
    ----------
    x : (C, H, W) tensor
        The model input (any device); not modified.
    deleted : (H, W) bool array
        True where a pixel is removed.
    noise : float
        Standard deviation of the added noise, in model input units (ROAD: 0.01).
    generator : torch.Generator, optional
        Draws the noise; required when ``noise > 0`` for reproducible results.

    Returns
    -------
    (C, H, W) tensor on the device and dtype of ``x``: ``x`` with the deleted pixels imputed.
    """
    import torch
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    c, h, w = x.shape
    deleted = np.asarray(deleted, dtype=bool)
    if deleted.shape != (h, w):
        raise ExplainError(f"road_impute: mask of shape {deleted.shape} does not match the input's {(h, w)}")
    values = x.detach().to("cpu", torch.float64).reshape(c, -1).numpy()
    out = values.copy()  # the caller's tensor is never written
    unknown = np.flatnonzero(deleted)
    n = unknown.size
    if n == 0:
        return x.clone()
    index = np.full(h * w, -1, dtype=np.int64)
    index[unknown] = np.arange(n)
    uy, ux = np.divmod(unknown, w)
    rows, cols, data = [], [], []
    diag = np.zeros(n)
    rhs = np.zeros((n, c))
    for dy, dx, weight in ROAD_NEIGHBOURS:
        ny, nx = uy + dy, ux + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        eq = np.flatnonzero(inside)
        nb = ny[eq] * w + nx[eq]
        diag[eq] += weight
        unknown_nb = index[nb] >= 0
        rows.append(eq[unknown_nb])
        cols.append(index[nb[unknown_nb]])
        data.append(np.full(int(unknown_nb.sum()), -weight))
        np.add.at(rhs, eq[~unknown_nb], weight * values[:, nb[~unknown_nb]].T)
    # A deleted region with no kept pixel around it (e.g. 100% deleted) leaves the system
    # singular; a vanishing pull towards the kept pixels' mean fixes such regions to that colour
    # and changes the others by ~1e-9.
    eps = 1e-9
    kept = ~deleted.reshape(-1)
    fallback = values[:, kept].mean(axis=1) if kept.any() else values.mean(axis=1)
    diag += eps
    rhs += eps * fallback[None, :]
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    data.append(diag)
    a = coo_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
    solved = splu(a).solve(rhs)  # (n, C)
    if noise > 0:
        solved = solved + noise * torch.randn((n, c), generator=generator, dtype=torch.float64).numpy()
    out[:, unknown] = solved.T
    return torch.from_numpy(out.reshape(c, h, w)).to(device=x.device, dtype=x.dtype)


def probability_fn(evaluator: "Evaluator") -> ScoreFn:
    """A score function giving the evaluator's target *probabilities*, whatever its output space.

    Deletion and insertion are defined on probabilities (RISE); an evaluator set to logits is
    softmaxed here. Forwards are counted by the evaluator as usual.
    """
    import torch

    def score(batch: "torch.Tensor") -> "torch.Tensor":
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
        fill = gaussian_blur(x, blur_sigma)
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


# --------------------------------------------------------------------------- localisation


def _map_and_mask(saliency: np.ndarray, mask: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(saliency, dtype=np.float64)
    k = np.asarray(mask)
    if m.ndim != 2 or m.shape != k.shape:
        raise ExplainError(
            f"{name}: map {m.shape} and mask {k.shape} must be 2-D and of one size; resample the map to the mask's "
            "resolution first (e.g. preprocess.map_to_original)"
        )
    mask_bool = k > (127 if k.dtype == np.uint8 else 0)  # 0/255 PNG masks and 0/1 or bool masks alike
    if not mask_bool.any():
        raise ExplainError(f"{name}: the mask is empty; it must mark the object with non-zero pixels")
    return m, mask_bool


def pointing_hit(saliency: np.ndarray, mask: np.ndarray, tolerance_px: float = 0.0) -> bool:
    """Pointing game: does the map's maximum lie within ``tolerance_px`` of the object?

    Both arrays share one resolution; the tolerance is in its pixels (Zhang et al. use 15 px
    at about 224 px). NaN pixels (outside the model's view) are ignored. When several pixels
    share the maximum (a segment-level map), it is a hit if any of them is within tolerance; a
    constant map points nowhere and is a miss.

    Parameters
    ----------
    saliency : (H, W) float array
    mask : (H, W) bool, 0/1 or 0/255 array
        The object.
    tolerance_px : float
        Largest allowed Euclidean distance from the maximum to the nearest object pixel.

    Examples
    --------
    >>> m = np.zeros((8, 8)); m[0, 0] = 1.0
    >>> mask = np.zeros((8, 8), bool); mask[0, 3:] = True
    >>> pointing_hit(m, mask, 2), pointing_hit(m, mask, 3)
    (False, True)
    """
    from scipy.ndimage import distance_transform_edt

    m, obj = _map_and_mask(saliency, mask, "pointing_hit")
    if tolerance_px < 0:
        raise OptionError("tolerance_px", f"must be >= 0, got {tolerance_px}")
    finite = np.isfinite(m)
    if not finite.any():
        return False
    top = np.nanmax(m)
    if top == np.nanmin(m):
        return False
    distance = distance_transform_edt(~obj)  # 0 inside the object, Euclidean distance outside
    return bool(np.any(distance[finite & (m == top)] <= tolerance_px + 1e-9))


def energy_in_mask(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive attribution that lies inside the object: Σ_mask max(s, 0) / Σ max(s, 0).

    Negative values and NaN are ignored (evidence against a class is not "energy" for it). NaN
    when the map has no positive value, so the caller can write null.
    """
    m, obj = _map_and_mask(saliency, mask, "energy_in_mask")
    positive = np.where(np.isfinite(m), np.maximum(m, 0.0), 0.0)
    total = positive.sum()
    return float(positive[obj].sum() / total) if total > 0 else float("nan")


# --------------------------------------------------------------------------- stability


def topk_jaccard(score_vectors: Sequence[np.ndarray], k: int) -> float:
    """Mean pairwise Jaccard index of the top-``k`` segment sets of several runs (e.g. seeds).

    1 means every run picks the same k segments. Ties are broken by the lower segment id.

    Parameters
    ----------
    score_vectors : sequence of (M,) arrays, at least two
    k : int, 1 <= k <= M
    """
    vectors = [np.asarray(v, dtype=np.float64).reshape(-1) for v in score_vectors]
    if len(vectors) < 2:
        raise ExplainError(f"topk_jaccard needs at least 2 score vectors (runs), got {len(vectors)}")
    m = vectors[0].size
    if any(v.size != m for v in vectors):
        raise ExplainError("topk_jaccard: every score vector must have the same number of segments")
    if not 1 <= k <= m:
        raise OptionError("k", f"must be between 1 and the number of segments {m}, got {k}")
    sets = [set(np.argsort(-v, kind="stable")[:k].tolist()) for v in vectors]
    pairs = [len(a & b) / len(a | b) for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(pairs))


# --------------------------------------------------------------------------- sanity check


@dataclass
class SanityResult:
    """Model randomisation test: maps of the real and a re-initialised model must differ."""

    correlation: float  # Spearman rank correlation of the two maps
    threshold: float  # |correlation| at or above this fails the check
    passed: bool  # True when the explanation depends on the model's weights

    def to_json(self) -> dict[str, Any]:
        return {"spearman": self.correlation, "threshold": self.threshold, "passed": self.passed}


def randomized_copy(model: "torch.nn.Module", *, seed: int = 0) -> "torch.nn.Module":
    """A copy of ``model`` with every weight re-initialised from ``seed``; the caller's model is untouched.

    Works for eager ``nn.Module`` and TorchScript modules alike, since it only walks
    ``named_parameters`` and ``named_buffers``: weights with ≥ 2 dims get He-normal values
    (std √(2 / fan_in), which keeps a ReLU network's activations from vanishing, so the copy still
    responds to its input); 1-D ``weight`` parameters (normalisation scales) become 1, other
    1-D/0-D parameters (biases, shifts) 0; normalisation running statistics are reset to mean 0,
    variance 1. Deterministic: the same seed gives the same copy on any device.
    """
    import copy

    import torch

    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, p in clone.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                values = torch.randn(p.shape, generator=generator, dtype=torch.float64) * math.sqrt(2.0 / fan_in)
            elif name.rsplit(".", 1)[-1] == "weight":
                values = torch.ones(p.shape, dtype=torch.float64)
            else:
                values = torch.zeros(p.shape, dtype=torch.float64)
            p.copy_(values.to(device=p.device, dtype=p.dtype))
        for name, b in clone.named_buffers():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_mean":
                b.zero_()
            elif leaf == "running_var":
                b.fill_(1.0)
    return clone


def rank_correlation(map_a: np.ndarray, map_b: np.ndarray, *, absolute: bool = False) -> float:
    """Spearman rank correlation of two maps of one shape (ties get average ranks; NaN pixels dropped).

    ``absolute`` compares |values|, as Adebayo et al. also report. 0.0 when either map is constant.
    """
    from scipy.stats import rankdata

    a = np.asarray(map_a, dtype=np.float64).reshape(-1)
    b = np.asarray(map_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ExplainError(f"rank_correlation: maps have {a.size} and {b.size} values; compare maps of one shape")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if absolute:
        a, b = np.abs(a), np.abs(b)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float(np.dot(ra, rb) / math.sqrt(np.dot(ra, ra) * np.dot(rb, rb)))


def sanity_check(explain: Callable[["torch.nn.Module"], np.ndarray], model: "torch.nn.Module", *, seed: int = 0,
                 threshold: float = 0.5, absolute: bool = False) -> SanityResult:
    """Model randomisation test (Adebayo et al. 2018): explain the model and a re-initialised copy.

    Parameters
    ----------
    explain : callable model -> array
        Runs the explainer on a model and returns its map (any shape, the same for both calls:
        a (H, W) map or (K, M) segment scores).
    model : nn.Module or TorchScript module
        The real model; not modified.
    seed : int
        Seeds the re-initialisation.
    threshold : float
        The check fails when |Spearman| >= threshold: the map barely depends on the weights.
    """
    real = np.asarray(explain(model))
    randomized = np.asarray(explain(randomized_copy(model, seed=seed)))
    rho = rank_correlation(real, randomized, absolute=absolute)
    return SanityResult(correlation=rho, threshold=threshold, passed=abs(rho) < threshold)
