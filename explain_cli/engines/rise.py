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
from typing import TYPE_CHECKING, Iterator

import numpy as np

from explain_cli.engines.base import Attribution, Engine
from explain_cli.params import param

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem


@dataclass(frozen=True)
class RiseParams:
    masks: int = param(4000, "Random masks N (model evaluations, plus f(x) and f(baseline)).", minimum=1, maximum=10_000_000)
    grid: int = param(7, "Masks' coarse grid size s (s×s cells).", minimum=1, maximum=256)
    p1: float = param(0.5, "Probability that a grid cell keeps the input.", minimum=0.0, exclusive_minimum=True, maximum=1.0)


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
    import torch

    from explain_cli.core import compose_pixels

    ev = problem.evaluator
    h, w = problem.x.shape[-2:]
    plan = plan_masks(params.masks, (h, w), params.grid, params.p1, generator)
    ev.progress.start(params.masks + 2, "rise")
    ev.progress.advance(1)
    f_b = problem.baseline_output().numpy()
    saliency = torch.zeros((problem.n_targets, h * w), dtype=torch.float64, device=ev.device)
    score_sum = torch.zeros(problem.n_targets, dtype=torch.float64, device=ev.device)
    for start, stop in ev.chunks(params.masks):  # the batch may shrink after an out-of-memory back-off
        masks = render_masks(plan, start, stop, ev.device)
        out = ev(compose_pixels(problem.x, problem.baseline, masks))  # (B, K) float64
        # one batch's sum in float32 (B terms), the running total in float64
        saliency += (out.T.float() @ masks.reshape(len(masks), -1)).double()
        score_sum += out.sum(dim=0)
    saliency = (saliency / (params.masks * params.p1)).reshape(-1, h, w).cpu().numpy()
    labels = problem.segments.cpu().numpy().ravel()
    m = problem.n_segments
    area = np.bincount(labels, minlength=m)
    per_segment = np.stack([np.bincount(labels, weights=s.ravel(), minlength=m) / np.maximum(area, 1) for s in saliency])
    return Attribution(
        scores=per_segment,
        base_value=f_b.copy(),
        baseline_score=f_b.copy(),
        pixel_maps=saliency,
        extra={"mean_masked_score": (score_sum / params.masks).cpu().tolist()},
    )


ENGINE = Engine(
    name="rise",
    summary="score-weighted average of random smooth masks (Petsiuk et al. 2018); non-negative saliency",
    params=RiseParams,
    run=run,
    signed=False,
)
