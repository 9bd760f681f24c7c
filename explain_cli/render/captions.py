"""The words drawn on the figures: titles, per-target captions, legend names and metric lines.

Callers gather the numbers and names from an explanation (or its JSON); the wording lives here.

Examples
--------
>>> heatmap_captions(["cat"], [281], [0.612], "probs")
['cat (281): prob 0.612']
>>> metric_line({"deletion_auc": 0.118, "random_deletion_auc": 0.4, "pointing_hit": True})
'del 0.12 (rand 0.40) · hit'
>>> box_caption(0, {"label": "cat", "index": 17, "score": 1.0, "detector_score": 0.912, "source": "detection"})
'box 0: cat · detector 0.91 · box score 1'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

#: The output space's unit as a caption names it.
SPACE_WORDS = {"probs": "prob", "logits": "logit"}


def printable(text: str) -> str:
    """A file name safe to draw: control characters (a newline in a name) shown as escapes."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def score_word(output_space: str | None, *, mean: bool = False) -> str:
    """``prob``, ``logit`` or ``score`` (``mean prob`` ... for a batch method's mean over its inputs)."""
    word = SPACE_WORDS.get(output_space or "", "score")
    return f"mean {word}" if mean else word


def heatmap_captions(labels: Sequence[str | None], indices: Sequence[int], scores: Sequence[float],
                     output_space: str, *, mean: bool = False, centres: Sequence[float] | None = None) -> list[str]:
    """One caption per target panel: ``name (index): prob 0.612``; an unlabelled class is ``class N``.

    ``centres`` (RISE) adds each map's neutral value: ``· mean saliency 0.31``.

    >>> heatmap_captions([None], [238], [0.0012], "probs")
    ['class 238: prob 0.0012']
    """
    space = score_word(output_space, mean=mean)
    captions = []
    for k, (label, index, score) in enumerate(zip(labels, indices, scores)):
        if label is None or label == str(index):  # the index once, not "class 238 (238)"
            name = f"class {index}"
        else:
            name = f"{printable(label)} ({index})"
        caption = f"{name}: {space} {score:.3g}"
        if centres is not None:
            caption += f" · mean saliency {centres[k]:.3g}"
        captions.append(caption)
    return captions


#: The colour bar's label when maps are drawn relative to their mean (RISE).
CENTRED_BAR_LABEL = "saliency minus its mean (red: keeping the pixel raises the score)"


def box_name(row: int, target: Mapping[str, Any]) -> str:
    """A detection target's short name, ``box 2: cat`` (a box named without a class: ``any class``)."""
    label, index = target.get("label"), target.get("index")
    name = printable(label) if label is not None else (f"class {index}" if index is not None else "any class")
    return f"box {row}: {name}" + (" (named)" if target.get("source") == "box" else "")


def box_caption(row: int, target: Mapping[str, Any]) -> str:
    """A detection panel's caption from its JSON entry: the box's name, the detector's score, the box score on f(x).

    A named box shows no detector score (the JSON's is the best-matching detection's, maybe of another class).
    """
    parts = [box_name(row, target)]
    if target.get("detector_score") is not None and target.get("source") != "box":
        parts.append(f"detector {target['detector_score']:.2f}")
    parts.append(f"box score {target['score']:.3g}")
    return " · ".join(parts)


def region_caption(target: Mapping[str, Any], output_space: str | None) -> str:
    """A segmentation panel's caption: the class, its region, and the region mean on f(x).

    >>> region_caption({"label": "cat", "index": 8, "score": 0.91, "region": {"source": "region", "id": 2}}, "probs")
    'cat (8) over region 2: mean prob 0.91'
    """
    return f"{region_name(target)}: mean {score_word(output_space)} {target['score']:.3g}"


def region_name(target: Mapping[str, Any]) -> str:
    """A segmentation target's name, ``cat (8) over region 2`` or ``cat (8) over its predicted region (6%)``."""
    label, index, region = target.get("label"), target.get("index"), target.get("region") or {}
    name = f"{printable(label)} ({index})" if label is not None else f"class {index}"
    where = (f"region {region.get('id')}" if region.get("source") == "region"
             else f"its predicted region ({region.get('fraction', 0.0):.0%})")
    return f"{name} over {where}"


def similarity_caption(target: Mapping[str, Any]) -> str:
    """A similarity panel's caption: cos to the reference, or a prompt's zero-shot probability and cosine.

    >>> similarity_caption({"kind": "prompt", "label": "dog", "index": 1, "score": 0.87, "cosine": 0.31})
    'dog (1): prob 0.87 · cos 0.31'
    """
    if target.get("kind") != "prompt":
        return f"cos {target['score']:.3g} to the reference {target.get('reference', 'embedding')}"
    label, index = target.get("label"), target.get("index")
    name = f"{printable(label)} ({index})" if label is not None else f"prompt {index}"
    return f"{name}: prob {target['score']:.3g} · cos {target.get('cosine', float('nan')):.3g}"


def task_caption(row: int, target: Mapping[str, Any], output_space: str | None) -> str | None:
    """The caption of a target whose JSON entry says what it is (a box, a region, a similarity); None for a class."""
    if target.get("box") is not None:
        return box_caption(row, target)
    if target.get("region") is not None:
        return region_caption(target, output_space)
    if target.get("kind") in ("reference", "prompt"):
        return similarity_caption(target)
    return None


def heatmap_title(method: str, input_path: str, n_segments: int | None, evaluations: int, *,
                  n_inputs: int | None = None, drawn: int, total: int) -> str:
    """The heatmap's title: method, input, segments and evaluations (and how many targets are drawn).

    ``n_inputs`` is given for a batch method, whose map is global and drawn on the first input;
    ``n_segments`` is None for a per-pixel map (RISE), which has no segments to count.
    """
    name = printable(Path(input_path).name)
    if n_inputs is not None:
        name = f"{n_inputs} inputs (global importance, drawn on {name})"
    segments = f" · {n_segments} segments" if n_segments is not None else ""
    title = f"{method} · {name}{segments} · {evaluations} evals"
    if drawn < total:
        title += f" · first {drawn} of {total} targets"
    return title


def numbering_note(n: int) -> str:
    """What the numbered segments are (drawn under the colour bar)."""
    return f"numbered: the {n} largest |score|, of either sign"


def curves_title(method: str, stem: str) -> str:
    """The title of the deletion/insertion curves figure."""
    return f"{method} · {stem}"


def curve_labels(labels: Sequence[str | None], indices: Sequence[int]) -> list[str]:
    """The curves' legend names: each target's label, or ``class N``."""
    return [label or f"class {index}" for label, index in zip(labels, indices)]


def compare_caption(label: str | None, index: int, output_space: str | None, score: float) -> str:
    """The caption of a target's row in the comparison montage, e.g. ``cat (281): prob 0.61``."""
    return f"{label or 'class'} ({index}): {score_word(output_space)} {score:.3g}"


def metric_line(metrics: Mapping[str, Any]) -> str:
    """One line of a target's faithfulness metrics (keys as in the JSON's ``evaluation``; absent or None: left out)."""
    parts = []
    d, rd = metrics.get("deletion_auc"), metrics.get("random_deletion_auc")
    i, ri = metrics.get("insertion_auc"), metrics.get("random_insertion_auc")
    if d is not None:
        parts.append(f"del {d:.2f}" + (f" (rand {rd:.2f})" if rd is not None else ""))
    if i is not None:
        parts.append(f"ins {i:.2f}" + (f" (rand {ri:.2f})" if ri is not None else ""))
    hit, energy = metrics.get("pointing_hit"), metrics.get("energy_in_mask")
    if hit is not None:
        parts.append("hit" if hit else "miss")
    if energy is not None:
        parts.append(f"energy {energy:.2f}")
    return " · ".join(parts)
