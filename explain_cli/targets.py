"""Class names and targets: which outputs of the model are explained."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from explain_cli.errors import ExplainError, OptionError, suggest


def load_labels(spec: str | None, model_labels: list[str] | None) -> tuple[list[str] | None, str]:
    """Class names and where they came from: the ``labels`` option (a file or 'imagenet'), else the model's own."""
    from explain_cli.models.labels import resolve_labels

    return resolve_labels(spec, model_labels), "model" if spec is None else "labels"


def resolve_targets(requested: Sequence[Any], top_k: int, outputs: np.ndarray, labels: list[str] | None,
                    labels_source: str = "labels", model_source: str | None = None) -> list[int]:
    """Target indices from ``auto``/indices/labels; ``auto`` means the top-k classes of f(x).

    ``outputs`` is the (n_outputs,) score vector the choice is made on. ``labels_source`` says
    where ``labels`` came from: ``"labels"`` (the option) or ``"model"`` (the model's own, named
    ``model_source``), so a mismatch blames the right one.
    """
    n = outputs.shape[0]
    if labels is not None and len(labels) != n:
        if labels_source == "labels":
            raise OptionError("labels", f"gives {len(labels)} names but the model has {n} outputs; fix the labels option")
        from explain_cli.models.base import METADATA_FILE

        where = f"model {model_source}: {METADATA_FILE}: labels" if model_source else "the model's own labels"
        raise ExplainError(f"{where}: {len(labels)} names but the model has {n} outputs; re-export the model "
                           "with one name per output, or override them with labels FILE")
    requested = [str(t).strip() for t in requested] or ["auto"]
    if requested == ["auto"]:
        if top_k > n:
            raise OptionError("top_k", f"{top_k} is more than the model's {n} outputs")
        return [int(i) for i in np.argsort(-outputs, kind="stable")[:top_k]]
    if top_k != 1:
        raise OptionError("top_k", "applies to target auto; list explicit targets instead")
    chosen: list[int] = []
    for item in requested:
        if item == "auto":
            index = int(np.argmax(outputs))
        elif item.lstrip("-").isdigit():
            index = int(item)
            if not 0 <= index < n:
                raise OptionError("target", f"{index} is out of range: the model has {n} outputs (0..{n - 1})")
        else:
            index = label_index(item, labels)
        if index not in chosen:
            chosen.append(index)
    return chosen


def label_index(name: str, labels: list[str] | None) -> int:
    """The index of the label ``name`` (case ignored); an OptionError naming ``target`` suggests close labels."""
    if labels is None:
        raise OptionError("target", f"{name!r} is a name but the model has no labels; pass labels FILE or an index")
    lowered = [v.lower() for v in labels]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    close = suggest(name, labels, n=3, quote=True)
    if close:
        hint = f"; {close}"
    elif len(labels) <= 12:
        hint = f"; they are {', '.join(labels)}"
    else:
        hint = "; pass a class index instead"
    raise OptionError("target", f"{name!r} is not one of the model's {len(labels)} labels{hint}")


def check_callable_target(target: Any) -> bool:
    """True when ``target`` is a callable (Python only); a callable mixed with other targets is an error."""
    items = target if isinstance(target, (list, tuple)) else [target]
    calls = [t for t in items if callable(t)]
    if calls and len(items) > 1:
        raise ExplainError("target: a callable target explains one score; pass it alone")
    return bool(calls)
