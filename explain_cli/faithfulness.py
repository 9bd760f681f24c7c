"""The ``evaluation`` block of an explanation: faithfulness metrics run as more batches on the same core.

:mod:`explain_cli.evaluation` holds the metrics; this module decides which ones an explanation
gets from its options (``evaluate``, ``mask``, ``stability``, ``sanity``) and runs them with the
explanation's own evaluator, input, baseline and seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from explain_cli.errors import OptionError

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem
    from explain_cli.evaluation import Curve


def load_mask(path: str) -> np.ndarray:
    """An object mask from a PNG (non-zero = object) or a ``.npy`` array; a bool (H, W) array."""
    p = Path(path)
    if not p.is_file():
        raise OptionError("mask", f"file {p} does not exist (a PNG or .npy with the object's pixels non-zero)")
    if p.suffix.lower() == ".npy":
        try:
            array = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise OptionError("mask", f"file {p} is not a readable .npy array: {exc}") from None
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as img:
                array = np.asarray(img.convert("L"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise OptionError("mask", f"file {p} is not an image Pillow can read: {exc}") from None
    array = np.squeeze(np.asarray(array))
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise OptionError("mask", f"file {p} must hold a 2-D numeric mask, got shape {list(array.shape)}")
    mask = array > 0
    if not mask.any():
        raise OptionError("mask", f"file {p} marks no object pixel")
    return mask


def evaluate(problem: "Problem", scores: np.ndarray, maps: np.ndarray, pixel_maps: np.ndarray, cfg: Any,
             rerun: Callable[[int, "torch.nn.Module | None"], np.ndarray], *,
             eager_module: Any = None) -> tuple[dict[str, Any], list["Curve"]]:
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
    """
    from explain_cli import evaluation as ev

    block: dict[str, Any] = {}
    curves: list[Curve] = []
    x = problem.x
    used = problem.evaluator.evaluations
    if cfg.evaluate:
        opts = {"step": cfg.eval_step, "seed": cfg.seed}
        dele = ev.deletion_curve(problem.evaluator, x, maps, replacement=cfg.deletion, baseline=problem.baseline, **opts)
        ins = ev.insertion_curve(problem.evaluator, x, maps, **opts)
        rdel = ev.random_deletion_curve(problem.evaluator, x, replacement=cfg.deletion, baseline=problem.baseline, **opts)
        rins = ev.random_insertion_curve(problem.evaluator, x, **opts)
        curves = [dele, ins, rdel, rins]
        block.update(
            deletion=cfg.deletion, step=cfg.eval_step,
            deletion_auc=_floats(dele.auc), insertion_auc=_floats(ins.auc),
            random_deletion_auc=_floats(rdel.auc), random_insertion_auc=_floats(rins.auc),
        )
    if cfg.mask:
        mask = load_mask(cfg.mask)
        if mask.shape != pixel_maps.shape[1:]:
            raise OptionError("mask", f"is {list(mask.shape)} but the input is {list(pixel_maps.shape[1:])}; "
                              "give the object's mask at the input's resolution")
        block["pointing_hit"] = [bool(ev.pointing_hit(m, mask, cfg.tolerance)) for m in pixel_maps]
        block["energy_in_mask"] = [_number(ev.energy_in_mask(m, mask)) for m in pixel_maps]
        block["tolerance_px"] = cfg.tolerance
    if cfg.stability >= 2:
        runs = [scores] + [rerun(cfg.seed + i, None) for i in range(1, cfg.stability)]
        block["stability_top5_jaccard"] = [float(ev.topk_jaccard([run[k] for run in runs], 5))
                                           for k in range(scores.shape[0])]
        block["stability_seeds"] = cfg.stability
    if cfg.sanity:
        # the eager module: a runtime's compiled or exported copy (onnxruntime) cannot be re-initialised
        randomized = ev.randomized_copy(eager_module if eager_module is not None else problem.evaluator.model, seed=cfg.seed)
        other = rerun(cfg.seed, randomized)
        corr = [float(ev.rank_correlation(scores[k], other[k])) for k in range(scores.shape[0])]
        block["sanity_rank_correlation"] = corr
        block["sanity_passed"] = [abs(c) < SANITY_THRESHOLD for c in corr]
    if block:
        block["evaluations"] = int(problem.evaluator.evaluations - used)
    return block, curves


#: |Spearman| between the real model's map and a weight-randomised model's map below which the check passes.
SANITY_THRESHOLD = 0.5


def _floats(values: np.ndarray) -> list[float | None]:
    return [_number(v) for v in np.asarray(values, dtype=float)]


def _number(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def evaluate_saved(json_path: Path, *, model: Any = None, options: dict[str, Any] | None = None) -> tuple[dict, list[Path]]:
    """Evaluate an explanation already written: its JSON plus the ``--save-map`` ``.npy`` next to it.

    The input, preprocessing, baseline, output space and targets come from the JSON; the model
    from ``model`` (default: the JSON's ``model.source``). The ``evaluation`` block is written
    back into the JSON (atomically) and the curves PNG beside it. Returns the block and the files.
    """
    import json

    import torch

    from explain_cli.api import as_model, settings
    from explain_cli.baselines import make_baseline
    from explain_cli.core import Evaluator, Problem, resolve_batch_size
    from explain_cli.errors import ExplainError
    from explain_cli.fileio import atomic_write_bytes
    from explain_cli.inputs import load_input
    from explain_cli.preprocess import Preprocess, apply_preprocess

    json_path = Path(json_path)
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
        method, targets = doc["method"], [t["index"] for t in doc["targets"]]
        spec = Preprocess.from_dict(doc["preprocessing"], name=doc["preprocessing"].get("name", "custom"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExplainError(f"{json_path} is not an explanation JSON written by explain run: {exc}") from None
    if doc.get("inputs"):
        raise ExplainError(f"{json_path}: {method} explains a batch; evaluate explains one input at a time")
    npy = json_path.with_suffix(".npy")
    if not npy.is_file():
        raise ExplainError(f"{npy} is missing; rerun `explain run` with --save-map to keep the maps")
    full = np.load(npy, allow_pickle=False)  # (K, H0, W0) at the input's resolution, NaN outside the crop
    cfg = settings({"method": method, "seed": doc["seed"], **(options or {}), "evaluate": True})
    loaded = as_model(model or doc["model"]["source"], weights=_weights(doc), device=cfg.device, seed=doc["seed"])
    item = load_input(doc["input"]["path"], channels=loaded.in_channels or 3, max_pixels=cfg.max_pixels)
    prepared = apply_preprocess(item.pixels, spec)
    # the maps go through the input's resize and crop (no normalisation), back to the model's view
    geometry_only = Preprocess("map", resize=spec.resize, size=spec.size, crop=spec.crop)
    maps = apply_preprocess(torch.from_numpy(np.nan_to_num(full).astype(np.float32)), geometry_only).x.numpy()
    device = loaded.device
    evaluator = Evaluator(loaded.module, device, batch_size=resolve_batch_size(cfg.batch_size, device),
                          output=doc["output_space"] if doc["output_space"] in ("logits", "probs") else "probs")
    evaluator.select_targets(targets)
    x = prepared.x.to(device)
    baseline = make_baseline(doc.get("baseline") or "zero", prepared.x, spec, input_kind=item.kind).to(device)
    problem = Problem(x=x, baseline=baseline, segments=torch.zeros(x.shape[1:], dtype=torch.long, device=device),
                      evaluator=evaluator, reference=evaluator(x[None].clone())[0].cpu())

    def no_rerun(seed: int, module: Any) -> np.ndarray:
        raise OptionError("stability", "and sanity need the engine: use explain run --stability/--sanity")

    scores = np.array([[s["score"] for s in t["segments"]] for t in doc["targets"]])
    block, curves = evaluate(problem, scores, maps, full, cfg, no_rerun)
    doc["evaluation"] = block
    atomic_write_bytes(json_path, json.dumps(doc, indent=2, allow_nan=False).encode() + b"\n")
    from explain_cli.render.captions import curve_labels, curves_title
    from explain_cli.render.curves import render_curves_image
    from explain_cli.render.layout import to_png

    curves_path = json_path.with_suffix(".curves.png")
    names = curve_labels([t.get("label") for t in doc["targets"]], [t["index"] for t in doc["targets"]])
    figure = render_curves_image(curves, curves_title(method, json_path.stem), labels=names)
    atomic_write_bytes(curves_path, to_png(figure))
    return block, [json_path, curves_path]


def _weights(doc: dict) -> str | None:
    weights = doc["model"].get("weights")
    return "DEFAULT" if isinstance(weights, str) and weights.startswith("DEFAULT") else weights
