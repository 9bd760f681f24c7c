"""The metrics a run asks for, run as more batches on the same core (the JSON's ``evaluation`` block).

The options ``evaluate``, ``mask``, ``stability`` and ``sanity`` pick the metrics; they run with
the explanation's own evaluator, input, baseline and seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from explain_cli.errors import OptionError
from explain_cli.metrics.curves import (deletion_curve, insertion_curve, random_deletion_curve, random_insertion_curve,
                                       step_counts)
from explain_cli.metrics.localisation import energy_in_mask, load_mask, pointing_hit
from explain_cli.metrics.sanity import SANITY_THRESHOLD, randomized_copy, rank_correlation
from explain_cli.metrics.stability import topk_jaccard

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem
    from explain_cli.metrics.curves import Curve


def run_metrics(problem: "Problem", scores: np.ndarray, maps: np.ndarray, pixel_maps: np.ndarray, cfg: Any,
                rerun: Callable[[int, "torch.nn.Module | None"], np.ndarray], *,
                eager_module: Any = None, masks: list[np.ndarray] | None = None,
                task: str | None = None) -> tuple[dict[str, Any], list["Curve"]]:
    """The evaluation block for one explanation, and its curves (for the curves PNG).

    Parameters
    ----------
    problem
        The explained problem (its evaluator keeps counting evaluations).
    scores : (K, M)
        The explanation's segment scores (for stability and the sanity check).
    maps : (K, H, W)
        The maps at the model's resolution.
    pixel_maps : (K, H0, W0)
        The maps at the input's resolution (NaN outside the model's view), for the mask metrics.
    cfg
        The settings: ``evaluate``, ``deletion``, ``eval_step``, ``mask``, ``tolerance``, ``stability``, ``sanity``, ``seed``.
    rerun
        ``rerun(seed, module)`` explains again with another seed, or on another module (the
        randomised copy), and returns (K, M) scores.
    masks : K (H0, W0) bool arrays, optional
        Each target's own object (a detection's box): with ``evaluate``, pointing and energy
        are measured in them unless ``mask`` names a file, which then serves every target.
    task : str, optional
        The task: ``segmentation`` masks are the targets' regions (the JSON says ``mask: region``).
    """
    block: dict[str, Any] = {}
    curves: list[Curve] = []
    x = problem.x
    used = problem.evaluator.evaluations
    if cfg.evaluate:
        steps = len(step_counts(x.shape[-2] * x.shape[-1], cfg.eval_step))
        # Its own phase of the progress: two curves per map (one map serves every target) and two random ones.
        problem.evaluator.progress.start(2 * steps * maps.shape[0] + 2 * steps, "evaluate")
        opts = {"step": cfg.eval_step, "seed": cfg.seed}
        dele = deletion_curve(problem.evaluator, x, maps, replacement=cfg.deletion, baseline=problem.baseline, **opts)
        ins = insertion_curve(problem.evaluator, x, maps, **opts)
        rdel = random_deletion_curve(problem.evaluator, x, replacement=cfg.deletion, baseline=problem.baseline, **opts)
        rins = random_insertion_curve(problem.evaluator, x, **opts)
        curves = [dele, ins, rdel, rins]
        block.update(
            deletion=cfg.deletion, step=cfg.eval_step,
            deletion_auc=_floats(dele.auc), insertion_auc=_floats(ins.auc),
            random_deletion_auc=_floats(rdel.auc), random_insertion_auc=_floats(rins.auc),
        )
    if cfg.mask or (cfg.evaluate and masks is not None):
        if cfg.mask:
            mask = load_mask(cfg.mask)
            if mask.shape != pixel_maps.shape[1:]:
                raise OptionError("mask", f"is {list(mask.shape)} but the input is {list(pixel_maps.shape[1:])}; "
                                  "give the object's mask at the input's resolution")
            objects = [mask] * len(pixel_maps)
        else:
            objects = list(masks or [])
            block["mask"] = "region" if task == "segmentation" else "box"  # each target's own box or region
        block["pointing_hit"] = [bool(pointing_hit(m, o, cfg.tolerance)) for m, o in zip(pixel_maps, objects)]
        block["energy_in_mask"] = [_number(energy_in_mask(m, o)) for m, o in zip(pixel_maps, objects)]
        block["tolerance_px"] = cfg.tolerance
    if cfg.stability >= 2:
        runs = [scores] + [rerun(cfg.seed + i, None) for i in range(1, cfg.stability)]
        block["stability_top5_jaccard"] = [float(topk_jaccard([run[k] for run in runs], 5))
                                           for k in range(scores.shape[0])]
        block["stability_seeds"] = cfg.stability
    if cfg.sanity:
        # the eager module: a runtime's compiled or exported copy (onnxruntime) cannot be re-initialised
        randomized = randomized_copy(eager_module if eager_module is not None else problem.evaluator.model, seed=cfg.seed)
        other = rerun(cfg.seed, randomized)
        corr = [float(rank_correlation(scores[k], other[k])) for k in range(scores.shape[0])]
        block["sanity_rank_correlation"] = corr
        block["sanity_passed"] = [abs(c) < SANITY_THRESHOLD for c in corr]
    if block:
        block["evaluations"] = int(problem.evaluator.evaluations - used)
    return block, curves


def _floats(values: np.ndarray) -> list[float | None]:
    return [_number(v) for v in np.asarray(values, dtype=float)]


def _number(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
