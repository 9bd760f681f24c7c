"""Explanations already written: ``explain evaluate`` adds faithfulness metrics to a saved run.

The saved JSON gives the method, seed, targets, preprocessing, baseline and output space; the
``--save-map`` ``.npy`` beside it gives the maps. The evaluator and problem are rebuilt with the
front door's own wiring (:func:`explain_cli.api.make_evaluator`, :func:`explain_cli.api.make_problem`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from explain_cli.errors import ExplainError, OptionError
from explain_cli.result import load_explanation


def evaluate_saved(json_path: Path, *, model: Any = None, options: dict[str, Any] | None = None) -> tuple[dict, list[Path]]:
    """Evaluate an explanation already written: its JSON plus the ``save_map`` ``.npy`` next to it.

    The input, preprocessing, baseline, output space and targets come from the JSON; the model
    from ``model`` (default: the JSON's ``model.source``). The ``evaluation`` block is written
    back into the JSON (atomically) and the curves PNG beside it. Returns the block and the files.

    Raises
    ------
    ExplainError
        Not an explanation JSON, a batch method's JSON, or no ``.npy`` maps beside it.
    """
    import torch

    from explain_cli.api import as_model, make_evaluator, make_problem
    from explain_cli.fileio import atomic_write_bytes
    from explain_cli.inputs import load_input
    from explain_cli.metrics.suite import run_metrics
    from explain_cli.options.settings import settings
    from explain_cli.preprocess import Preprocess, PreparedInput, apply_preprocess

    json_path = Path(json_path)
    doc = load_explanation(json_path)  # the schema first: a tampered JSON is one line, not a KeyError
    try:
        method, targets = doc["method"], [t["index"] for t in doc["targets"]]
        spec = Preprocess.from_dict(doc["preprocessing"], name=doc["preprocessing"].get("name", "custom"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExplainError(f"{json_path} is not an explanation JSON written by explain run: {exc}") from None
    if doc.get("inputs"):
        raise ExplainError(f"{json_path}: {method} explains a batch; evaluate explains one input at a time")
    if doc.get("output_space") not in ("logits", "probs", "callable"):
        raise ExplainError(f"{json_path}: a {doc.get('output_space')} run is evaluated while it is explained; "
                           "explain it again with `evaluate`")
    full = load_saved_map(json_path, doc)  # (K, H0, W0) at the input's resolution, NaN outside the crop
    saved = {"baseline": doc.get("baseline") or "zero",
             "output": doc["output_space"] if doc["output_space"] in ("logits", "probs") else "probs"}
    cfg = settings({"method": method, "seed": doc["seed"], **(options or {}), **saved, "evaluate": True})
    loaded = as_model(model or doc["model"]["source"], weights=_weights(doc), device=cfg.model.device, seed=doc["seed"])
    item = load_input(doc["input"]["path"], channels=loaded.in_channels or 3, max_pixels=cfg.input.max_pixels)
    prepared = apply_preprocess(item.pixels, spec)
    # the maps go through the input's resize and crop (no normalisation), back to the model's view
    geometry_only = Preprocess("map", resize=spec.resize, size=spec.size, crop=spec.crop)
    maps = apply_preprocess(torch.from_numpy(np.nan_to_num(full).astype(np.float32)), geometry_only).x.numpy()
    evaluator = make_evaluator(loaded, cfg)
    x = prepared.x.to(loaded.device)
    every = evaluator(x[None].clone())[0].cpu()  # f(x) for every output: the JSON's targets must be among them
    if max(targets) >= len(every):
        raise ExplainError(f"{json_path} explains target {max(targets)}, but the model has {len(every)} outputs "
                           f"(0..{len(every) - 1}); it was edited, or explained with another model")
    evaluator.select_targets(targets)
    first = PreparedInput(item=item, spec=spec, prepared=prepared, segmentation=None)
    problem = make_problem(cfg, x, first, evaluator, every[targets])

    def no_rerun(seed: int, module: Any) -> np.ndarray:
        raise OptionError("stability", "and `sanity` need the engine: ask for them when explaining, not on a saved "
                          "explanation")

    scores = np.array([[s["score"] for s in t["segments"]] for t in doc["targets"]])
    block, curves = run_metrics(problem, scores, maps, full, cfg.evaluation, no_rerun)
    doc["evaluation"] = block
    atomic_write_bytes(json_path, json.dumps(doc, indent=2, allow_nan=False).encode() + b"\n")  # `map` kept
    from explain_cli.render.captions import curve_labels, curves_title
    from explain_cli.render.curves import render_curves_image
    from explain_cli.render.layout import to_png

    curves_path = json_path.with_suffix(".curves.png")
    names = curve_labels([t.get("label") for t in doc["targets"]], [t["index"] for t in doc["targets"]])
    figure = render_curves_image(curves, curves_title(method, json_path.stem), labels=names)
    atomic_write_bytes(curves_path, to_png(figure))
    return block, [json_path, curves_path]


def load_saved_map(json_path: Path, doc: dict) -> np.ndarray:
    """The ``save_map`` maps beside an explanation JSON, proven to be that run's own.

    The JSON records the ``.npy``'s SHA-256 and shape (``map``); the header is read first (the
    shape must be the JSON's (K, H, W) at its input's size, the file exactly that long), then
    the bytes are hashed, then loaded without pickles. A rerun without ``save_map`` leaves an
    older ``.npy`` beside a JSON that records none: refused, as is any edit.

    Raises
    ------
    ExplainError
        No ``.npy``, a JSON that records none, or one that is not the JSON's own.
    """
    from explain_cli.inputs.limits import MAX_PIXELS
    from explain_cli.inputs.maps import SAVED_MAP_FIX as again
    from explain_cli.inputs.maps import read_saved_map

    npy = json_path.with_suffix(".npy")
    if not npy.is_file():
        raise ExplainError(f"{npy} is missing; {again} to keep the maps")
    record = doc.get("map")
    if record is None:
        raise ExplainError(f"{json_path} records no saved map (it was explained without `save_map`), so {npy.name} "
                           f"beside it is from another run; {again}")
    k, h, w = record["shape"]
    if k != len(doc["targets"]) or [h, w] != list(doc["input"]["size"]) or h * w > MAX_PIXELS:
        raise ExplainError(f"{json_path}: its map shape {record['shape']} does not fit its {len(doc['targets'])} "
                           f"targets at the input's size {doc['input']['size']}; it was edited: {again}")
    return read_saved_map(npy, record["shape"], record["sha256"], json_path.name)


def _weights(doc: dict) -> str | None:
    weights = doc["model"].get("weights")
    return "DEFAULT" if isinstance(weights, str) and weights.startswith("DEFAULT") else weights
