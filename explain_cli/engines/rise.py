"""RISE (Petsiuk et al. 2018): saliency as the score-weighted average of random smooth masks.

Masks follow the paper: a grid G ~ Bernoulli(p1)^{s×s}, cell = ceil(H/s) (and W), bilinear
upsampling to (s+1)·cell, then an H×W window at a random shift in [0, cell). The small grids
and shifts for all N masks are drawn up front on the CPU from the seeded generator (a few
bytes per mask, so results do not depend on batch size or device); full-size masks exist
only one batch at a time on the model's device, and the saliency is accumulated there, so
memory does not grow with N:

    S(λ) = Σ_i f(b + (x − b)·M_i)·M_i(λ) / (N·p1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from explain_cli.engines import auto
from explain_cli.engines.base import Attribution, Engine
from explain_cli.params import param

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem


@dataclass(frozen=True)
class RiseParams:
    masks: int = param(4000, "Random masks N, one model evaluation each (plus f(x) and f(baseline)): the default "
                       "costs about 4× a default Kernel SHAP run, and its top 5 still moved against 40,000 masks on "
                       "2 of 3 sample images; auto: until the scores converge (see auto_tolerance; often the "
                       "max_samples cap).", minimum=1, maximum=10_000_000, allow_auto=True)
    grid: int = param(7, "Masks' coarse grid size s (s×s cells).", minimum=1, maximum=256)
    p1: float = param(0.5, "Probability that a grid cell keeps the input.", minimum=0.0, exclusive_minimum=True, maximum=1.0)
    auto_tolerance: float = auto.tolerance_param(0.02)
    max_samples: int = auto.max_samples_param()


@dataclass
class MaskPlan:
    """Everything random about N masks, small enough to hold for any N."""

    grids: "torch.Tensor"  # (N, s, s) float32 in {0, 1}
    shifts: "torch.Tensor"  # (N, 2) long, in [0, cell_h) x [0, cell_w)
    shape: tuple[int, int]  # (H, W)
    cell: tuple[int, int]  # (cell_h, cell_w)


def plan_masks(n: int, shape: tuple[int, int], grid: int, p1: float, generator: "torch.Generator") -> MaskPlan:
    import torch

    h, w = shape
    cell = (math.ceil(h / grid), math.ceil(w / grid))
    grids = (torch.rand((n, grid, grid), generator=generator) < p1).float()
    shifts = torch.stack(
        [torch.randint(0, cell[0], (n,), generator=generator), torch.randint(0, cell[1], (n,), generator=generator)], dim=1
    )
    return MaskPlan(grids=grids, shifts=shifts, shape=(h, w), cell=cell)


def interpolation_matrix(n_out: int, n_in: int) -> "torch.Tensor":
    """(n_out, n_in) weights of 1-D bilinear upsampling, as ``F.interpolate(align_corners=False)`` computes it."""
    import torch

    scale = n_in / n_out
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    frac = src - i0
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    weights[torch.arange(n_out), i0] += 1.0 - frac
    weights[torch.arange(n_out), i1] += frac
    return weights.float()


def render_masks(plan: MaskPlan, start: int, stop: int, device: "torch.device") -> "torch.Tensor":
    """Masks ``start:stop`` as (B, H, W) float32 on ``device``.

    Bilinear upsampling is separable, so each mask is ``Ry[dy:dy+H] @ G @ Rx[dx:dx+W]ᵀ``: the
    shifted crop is a gather of interpolation rows, and the whole batch two small batched
    matmuls, instead of upsampling to (s+1)·cell and cropping.
    """
    import torch

    h, w = plan.shape
    s = plan.grids.shape[1]
    ry = interpolation_matrix((s + 1) * plan.cell[0], s).to(device)
    rx = interpolation_matrix((s + 1) * plan.cell[1], s).to(device)
    shifts = plan.shifts[start:stop].to(device)
    rows = ry[shifts[:, :1] + torch.arange(h, device=device)]  # (B, H, s)
    cols = rx[shifts[:, 1:] + torch.arange(w, device=device)]  # (B, W, s)
    grids = plan.grids[start:stop].to(device)
    return (rows @ grids @ cols.transpose(1, 2)).clamp_(0.0, 1.0)


def iterate_masks(plan: MaskPlan, batch_size: int, device: "torch.device") -> Iterator["torch.Tensor"]:
    n = len(plan.grids)
    for start in range(0, n, batch_size):
        yield render_masks(plan, start, min(n, start + batch_size), device)


def run(problem: "Problem", params: RiseParams, generator: "torch.Generator") -> Attribution:
    """Fixed N, or (``masks auto``) rounds of new masks until the per-segment scores converge.

    Standard error (auto): the masks are i.i.d., so each per-segment score is a mean of i.i.d.
    terms c_i = f(x_i)·m̄_i(j)/p1, m̄_i(j) mask i's mean over segment j; its standard error is
    sd(c)/√N from running sums of c and c² (batch means with groups of one mask, which i.i.d.
    draws allow). Each round's masks are drawn after the previous round's from the same seeded
    generator, and earlier masks are kept, so a seed fixes the result.
    """
    import torch

    from explain_cli.core import compose_pixels

    ev = problem.evaluator
    h, w = problem.x.shape[-2:]
    automatic = auto.is_auto(params.masks)
    cap = max(1, params.max_samples - 2) if automatic else params.masks
    n = min(cap, 500) if automatic else params.masks
    plan = plan_masks(n, (h, w), params.grid, params.p1, generator)
    _, f_b = problem.begin("rise", cap + 2)
    if automatic:
        auto.show_round(ev.progress, "rise", n + 2, 2)
    labels_t = problem.segments.reshape(-1).to(ev.device).long()
    m = problem.n_segments
    area_t = torch.bincount(labels_t, minlength=m).double().clamp(min=1)
    k = problem.n_targets
    saliency = torch.zeros((k, h * w), dtype=torch.float64, device=ev.device)
    score_sum = torch.zeros(k, dtype=torch.float64, device=ev.device)
    c_sum = torch.zeros((k, m), dtype=torch.float64, device=ev.device)  # Σ c_i (auto)
    c_sq = torch.zeros((k, m), dtype=torch.float64, device=ev.device)  # Σ c_i²
    done = 0
    stop = auto.Stopper(params.auto_tolerance, params.max_samples) if automatic else None
    while True:
        for start, stop_ in ev.chunks(n - done):  # the batch may shrink after an out-of-memory back-off
            masks = render_masks(plan, done + start, done + stop_, ev.device)
            out = ev(compose_pixels(problem.x, problem.baseline, masks))  # (B, K) float64
            flat = masks.reshape(len(masks), -1)
            # one batch's sum in float32 (B terms), the running total in float64
            saliency += (out.T.float() @ flat).double()
            score_sum += out.sum(dim=0)
            if automatic:
                seg = torch.zeros((len(masks), m), dtype=torch.float64, device=ev.device)
                seg.index_add_(1, labels_t, flat.double())
                c = out[:, :, None] * (seg / area_t)[:, None, :] / params.p1  # (B, K, M)
                c_sum += c.sum(dim=0)
                c_sq += (c**2).sum(dim=0)
        done = n
        per_segment, pixel = _scores(saliency, n, params.p1, problem, (h, w))
        if stop is None:  # a fixed number of masks
            break
        mean = c_sum / n
        stderr = ((c_sq / n - mean**2).clamp(min=0.0) * n / max(n - 1, 1) / n).sqrt().cpu().numpy()
        if stop.update(n + 2, per_segment, stderr):
            break
        if n >= cap:
            stop.cap()
            break
        new = auto.next_size(n, cap) - n
        auto.show_round(ev.progress, "rise", auto.predicted_total(n + new + 2, stop), n + 2)
        more = plan_masks(new, (h, w), params.grid, params.p1, generator)
        plan = MaskPlan(grids=torch.cat([plan.grids, more.grids]), shifts=torch.cat([plan.shifts, more.shifts]),
                        shape=plan.shape, cell=plan.cell)
        n += new
    extra: dict[str, Any] = {"mean_masked_score": (score_sum / n).cpu().tolist()}
    if stop is not None:
        extra["auto"] = stop.record()
    return Attribution(
        scores=per_segment,
        base_value=f_b.copy(),
        baseline_score=f_b.copy(),
        pixel_maps=pixel,
        stderr=stderr if automatic else None,
        extra=extra,
    )


def _scores(saliency: "torch.Tensor", n: int, p1: float, problem: "Problem", shape: tuple[int, int]) -> tuple:
    h, w = shape
    pixel = (saliency / (n * p1)).reshape(-1, h, w).cpu().numpy()
    labels = problem.segments.cpu().numpy().ravel()
    m = problem.n_segments
    area = np.bincount(labels, minlength=m)
    per_segment = np.stack([np.bincount(labels, weights=s.ravel(), minlength=m) / np.maximum(area, 1) for s in pixel])
    return per_segment, pixel


ENGINE = Engine(
    name="rise",
    summary="score-weighted average of random smooth masks (Petsiuk et al. 2018); non-negative saliency",
    params=RiseParams,
    run=run,
    signed=False,
)
