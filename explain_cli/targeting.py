"""What a run explains: the task's targets, chosen from f(x), and what a detector sees by default.

:func:`call_task` builds a call's task once; :func:`choose_targets` is the front door's one step from
settled settings, that task, a model and a prepared input to the targets and their reference
scores (it sets the evaluator's head);
:func:`default_preprocess` and :func:`box_masks` are the defaults a detector (and a segmenter's region) needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from explain_cli.targets import check_callable_target, load_labels

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Evaluator
    from explain_cli.inputs import LoadedInput
    from explain_cli.models import LoadedModel
    from explain_cli.options.groups import Settings
    from explain_cli.preprocess import PreparedInput, Preprocess
    from explain_cli.tasks import Target, Task

#: A detector that declares no preprocessing sees the image as loaded, its shorter side reduced to
#: this when longer (torchvision's detectors resize to 800 themselves; a photo's full size would
#: only multiply the memory of every perturbed batch).
DETECTION_SIDE = 800


def call_task(cfg: Settings, model: LoadedModel) -> "Task | None":
    """The task of a call, built once for all its inputs (it reads a region, or embeds a reference image);
    None when ``target`` is a Python callable. ``cfg`` has its task settled."""
    from explain_cli.task_inputs import build_task

    return None if check_callable_target(cfg.targets.target) else build_task(cfg, model)


def choose_targets(cfg: Settings, task: "Task | None", model: LoadedModel, evaluator: "Evaluator", x: "torch.Tensor",
                   first: PreparedInput) -> tuple[list["Target"] | None, list[str | None], "torch.Tensor"]:
    """Evaluate f(x) once (counted), pick the targets, and make ``evaluator`` score them from now on.

    ``cfg`` has its task settled (:func:`~explain_cli.options.settings.for_task`) and ``task`` is
    built from it (:func:`call_task`; None for a Python ``target`` callable). Returns the targets (None likewise), each target's label, and f(x) for every
    target, (N, K) float64 on the CPU.
    """
    import torch

    from explain_cli.task_inputs import check_task_fits
    from explain_cli.tasks import TargetRequest, reference_targets

    if task is None:
        head = cfg.targets.target[0]
        evaluator.head = head
        fx = torch.cat([evaluator(x[a:b].clone()).cpu() for a, b in evaluator.chunks(len(x))])
        return None, [getattr(head, "__name__", "target")] * fx.shape[1], fx
    check_task_fits(cfg, task, first)  # before any evaluation
    labels, source = load_labels(cfg.targets.labels, model.labels)
    wanted = tuple(cfg.targets.target)
    if cfg.targets.box:  # named boxes join the targets; alone, they replace the default `auto`
        wanted = (wanted if "target" in cfg.given else ()) + tuple(cfg.targets.box)
    request = TargetRequest(target=wanted, top_k=cfg.targets.top_k, labels=labels, labels_source=source,
                            model_source=model.source, geometry=first.prepared.geometry)
    targets, reference = reference_targets(task, evaluator, x, request)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    evaluator.curve_head = task.probability_scorer(targets, size)
    return targets, [t.label for t in targets], reference


def default_preprocess(model: "LoadedModel", cfg: "Settings", item: "LoadedInput") -> "Preprocess | None":
    """The preprocessing ``preprocess auto`` falls back to for ``item``: the model's own, else for a
    detector the image as it is (at most :data:`DETECTION_SIDE` on its shorter side), else None
    (``imagenet`` for images)."""
    from explain_cli.preprocess import Preprocess

    if model.preprocess is not None or (cfg.targets.task or model.task) != "detection":
        return model.preprocess
    short = min(int(item.pixels.shape[-2]), int(item.pixels.shape[-1]))
    return Preprocess("detection", resize=DETECTION_SIDE if short > DETECTION_SIDE else None)


def box_masks(details: Sequence["Target"] | None, size: tuple[int, int]) -> list[np.ndarray] | None:
    """Each target's own object as an (H, W) mask in image pixels (pointing and energy): a detection's box,
    a segmentation target's region; None if a target has neither."""
    masks = []
    for target in details or ():
        overlay = target.overlay() or {}
        if overlay.get("box") is not None:
            masks.append(box_pixels(overlay["box"], size))
        elif overlay.get("region") is not None and overlay.get("frame") == "original":
            masks.append(np.asarray(overlay["region"], dtype=bool))
        else:
            return None
    return masks or None


def box_pixels(box: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """(H, W) mask of a box in image pixels: the pixels whose centres it holds, else the pixel of its centre."""
    from explain_cli.tasks.boxes import box_mask

    x1, y1, x2, y2 = box
    mask = box_mask((x1, y1, x2, y2), size)
    if not mask.any():  # a box thinner than a pixel
        h, w = size
        mask[min(h - 1, int((box[1] + box[3]) / 2)), min(w - 1, int((box[0] + box[2]) / 2))] = True
    return mask
