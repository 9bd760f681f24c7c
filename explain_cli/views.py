"""Ways to look at an Explanation from Python: one target's row, torch tensors, a matplotlib axes.

:class:`explain_cli.result.Explanation` delegates here (passing itself as ``expl``), so its module
keeps to the data, the JSON and the files. matplotlib is optional: only :func:`plot` imports it,
and only when it is not given an axes.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from explain_cli.errors import ExplainError, require_module


def target_row(targets: Sequence[Any], labels: Sequence[str | None], target: int | str | None = 0, *,
               class_index: int | None = None) -> int:
    """The row 0..K-1 of one explained target.

    ``target`` is a position among the explained targets (0: the first, -1: the last) or a
    label; ``class_index`` (keyword) names the model's class instead.

    Raises
    ------
    ExplainError
        A position, label or class that was not explained, naming those that were.

    >>> target_row([238, 58, 381], ["Great Pyrenees", None, None], 0)
    0
    >>> target_row([238, 58, 381], [None, None, None], class_index=58)
    1
    """
    k = len(targets)
    if class_index is not None:
        if target not in (None, 0):
            raise ExplainError("give a target by position or label, or by class_index, not both")
        if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)):
            raise ExplainError(f"class_index must be an integer class of the model, got {class_index!r}")
        if int(class_index) not in targets:
            raise ExplainError(f"class {class_index} was not explained; the explained classes are {list(targets)} "
                               "(explain it with `target`)")
        return list(targets).index(int(class_index))
    if target is None:
        return 0
    if isinstance(target, str):
        if target not in labels:
            raise ExplainError(f"{target!r} was not explained; the explained labels are {list(labels)}")
        return list(labels).index(target)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise ExplainError(f"target must be a position (0 to {k - 1}) or a label, got {target!r}")
    if not -k <= int(target) < k:
        raise ExplainError(f"target {target} is not a position among the {k} explained targets (0 to {k - 1}); "
                           f"their classes are {list(targets)}: pass class_index=... to pick one by class")
    return int(target) % k


def as_tensors(expl: Any) -> dict[str, Any]:
    """The results as torch tensors (CPU): ``scores`` (K, M), ``stderr`` (K, M) or None,
    ``segments`` (H, W) int64, ``pixel_maps`` (K, H0, W0) float32 (NaN outside the model's view),
    ``target_scores`` (K,).
    """
    import torch

    stderr = expl.stderr
    return {
        "scores": torch.from_numpy(np.array(expl.scores, dtype=np.float64)),
        "stderr": None if stderr is None else torch.from_numpy(np.array(stderr, dtype=np.float64)),
        "segments": torch.from_numpy(np.array(expl.segments, dtype=np.int64)),
        "pixel_maps": torch.from_numpy(np.array(expl.pixel_maps(), dtype=np.float32)),
        "target_scores": torch.from_numpy(np.array(expl.target_scores, dtype=np.float64)),
    }


def plot(expl: Any, target: int | str | None = 0, *, class_index: int | None = None, ax: Any = None,
         cmap: str | None = None, alpha: float = 0.6, colorbar: bool = True) -> Any:
    """Draw one target's map over the input on a matplotlib axes (a new figure's without ``ax``); returns it.

    Signed scores use a diverging colour map centred at 0 (``RdBu_r``), non-negative ones a
    sequential map (``inferno``), as the PNG does; the title names the target and its score.

    Raises
    ------
    ExplainError
        matplotlib is needed to make an axes and is not installed (``pip install matplotlib``),
        or the target was not explained.
    """
    from explain_cli.render.captions import heatmap_captions, task_caption

    row = target_row(expl.targets, expl.labels, target, class_index=class_index)
    if ax is None:
        plt = _pyplot()
        _, ax = plt.subplots()
    heat = expl.pixel_maps()[row]
    finite = heat[np.isfinite(heat)]
    top = float(np.abs(finite).max()) if finite.size else 0.0
    top = top or 1.0
    limits = (-top, top) if expl.signed else (0.0, top)
    display = expl.display if expl.display is not None else np.full((*heat.shape, 3), 128, np.uint8)
    grey = display.astype(np.float32).mean(axis=2)
    ax.imshow(grey, cmap="gray", vmin=0, vmax=255)
    image = ax.imshow(heat, cmap=cmap or ("RdBu_r" if expl.signed else "inferno"), vmin=limits[0], vmax=limits[1],
                      alpha=alpha)
    if getattr(expl, "task", None) in ("detection", "segmentation", "similarity"):  # named as the PNG names it
        caption = task_caption(row, {**expl.details[row].describe(), "score": float(expl.target_scores[row])},
                               expl.output_space) or ""
    else:
        (caption,) = heatmap_captions([expl.labels[row]], [expl.targets[row]], [expl.target_scores[row]],
                                      expl.output_space, mean=expl.inputs is not None)
    ax.set_title(f"{expl.method} · {caption}")
    ax.set_axis_off()
    if colorbar and getattr(ax, "figure", None) is not None:
        ax.figure.colorbar(image, ax=ax)
    return ax


def _pyplot() -> Any:
    # pyplot itself, not only matplotlib: a broken or partial install is the same advice
    return require_module("matplotlib.pyplot", "plot without an axes needs matplotlib", "plot")
