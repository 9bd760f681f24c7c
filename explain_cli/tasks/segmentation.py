"""The segmentation task: a target is a class c over a region R, scored as the mean of c's map over R.

Score of target (c, R) on a class map Y (B, C, H', W')::

    s = (1 / |R'|) · Σ_{(i, j) ∈ R'} P[c, i, j]

with P the softmax of Y over the C classes (``output="probs"``; a sigmoid when C = 1) or Y as
the model returns it (``output="logits"``: also the choice for a model that already returns
probabilities). R' is R on the output grid (:mod:`explain_cli.tasks.regions` documents the
resampling). All K targets are one step: the class maps gathered (B, K, H', W') and one
einsum with the K normalised masks (K, H', W').

Targets:

- with ``region`` (a mask or label map at the input image's resolution): for each region id,
  the classes ``TargetRequest.target`` names (an index or a label); ``auto`` is the class with
  the highest mean over R (the ``top_k`` highest when asked);
- without: each class predicted (argmax of f(x)'s map) on at least ``min_area`` of the map,
  largest first, at most ``top_k`` (default: all), skipping the background class when the
  labels name one; a class named by ``target`` gets its own predicted region, whatever its area.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from explain_cli.errors import ExplainError, OptionError
from explain_cli.rle import rle_encode
from explain_cli.tasks.base import Target, TargetRequest, Task
from explain_cli.tasks.regions import (PixelBox, check_region_size, ids_to_model, mask_to_original, pixel_bbox,
                                       region_ids, resample_nearest)

if TYPE_CHECKING:
    import torch

BACKGROUND = "background"  # a label that reads this once underscores and case are dropped is the background
RESAMPLING = ("original -> model input: the preprocessing's resize and crop, nearest-exact; model input -> "
              "output map: output cell (i, j) takes the input pixel (floor((i+1/2)H/H'), floor((j+1/2)W/W'))")


@dataclass(frozen=True)
class RegionTarget(Target):
    """Class ``index`` over one region; the arrays are for the renderer and metrics, not the JSON."""

    source: str = "predicted"  # 'predicted' (the class's region in f(x)'s argmax map) or 'region' (the user's)
    region: int | None = None  # the id in the user's label map (None: a predicted region)
    cells: int = 0  # cells of the output map averaged, |R'|
    output_size: tuple[int, int] = (0, 0)  # (H', W') of the model's map
    area: int = 0  # pixels of R in `frame`
    fraction: float = 0.0  # area / pixels of `frame`
    bbox: PixelBox = (0, 0, 0, 0)  # x1, y1, x2, y2 pixel edges of R in `frame`
    frame: str = "model"  # 'original' (the image as loaded; needs the geometry) or 'model' (model input)
    grid: Any = field(default=None, compare=False, repr=False)  # (H', W') bool: R', what is scored
    mask: Any = field(default=None, compare=False, repr=False)  # (H, W) bool: R in model-input pixels
    mask_original: Any = field(default=None, compare=False, repr=False)  # (H0, W0) bool, when known

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["region"] = {"source": self.source, "id": self.region, "area": int(self.area),
                         "fraction": round(float(self.fraction), 6), "bbox": list(self.bbox), "frame": self.frame,
                         "cells": int(self.cells), "output_size": list(self.output_size)}
        if self.mask_original is not None:  # its exact shape, for drawing it again (explain compare)
            out["region"]["rle"] = rle_encode(self.mask_original)
        return out

    def caption(self) -> str:
        name = self.label if self.label is not None else f"class {self.index}"
        where = f"region {self.region}" if self.source == "region" else f"its region ({self.fraction:.0%})"
        return f"{name} over {where}: {self.score:.3g}"

    def overlay(self) -> dict[str, Any]:
        """The region to outline: (H0, W0) bool in the original's pixels when known, else (H, W) model pixels."""
        original = self.mask_original is not None
        return {"region": self.mask_original if original else self.mask, "frame": "original" if original else "model",
                "caption": self.caption()}


class SegmentationTask(Task):
    """Mean class score over a region (module docstring).

    Parameters
    ----------
    output : {'probs', 'logits'}
        ``probs``: softmax over the classes of each pixel (sigmoid for one class);
        ``logits``: the map as the model returns it.
    region : (H0, W0) array-like, optional
        A binary mask or an integer label map (0 outside, one target region per id > 0) at
        the resolution of the image as loaded (of the model input when there is no geometry).
    min_area : float
        Fraction of f(x)'s argmax map a class must cover to be a default target.

    Raises
    ------
    OptionError
        For an unknown output, ``min_area`` outside (0, 1], or a malformed or empty region.
    """

    name = "segmentation"
    options = ("output", "region", "min_area")
    per_image = True  # regions and predicted maps belong to one image

    def __init__(self, output: str = "probs", *, region: Any = None, min_area: float = 0.02) -> None:
        if output not in ("probs", "logits"):
            raise OptionError("output", f"must be logits or probs, got {output!r}")
        if not 0.0 < float(min_area) <= 1.0:
            raise OptionError("min_area", f"must be a fraction in (0, 1], got {min_area}")
        self.output = output
        self.min_area = float(min_area)
        self.region = None if region is None else region_ids(region)

    @property
    def output_space(self) -> str:
        return self.output

    def decode(self, raw: object, size: tuple[int, int]) -> "torch.Tensor":
        """(B, C, H', W') float64 class maps in the output space.

        The map is the output itself, a dict's ``out`` (torchvision), ``logits`` (Hugging Face)
        or only tensor, or a tuple's first item.

        Raises
        ------
        ExplainError
            Unless that map is a 4-D tensor.
        """
        import torch

        from explain_cli.tasks.detection_formats import looks_like_detections

        if looks_like_detections(raw):
            raise OptionError("task", "is segmentation, but the model returned detections (boxes, scores, labels); "
                                      "use task detection")
        if isinstance(raw, dict):  # torchvision's {"out", "aux"}; Hugging Face's outputs carry "logits"
            tensors = [k for k, v in raw.items() if isinstance(v, torch.Tensor)]
            key = "out" if "out" in raw else "logits" if "logits" in raw else tensors[0] if len(tensors) == 1 else None
            if key is None:
                raise ExplainError(f"the model returned a dict with keys {sorted(map(str, raw))[:5]}; a segmenter "
                                   "must return a (batch, classes, height, width) tensor, or a dict with it as 'out'")
            raw = raw[key]
        elif isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], torch.Tensor):
            raw = raw[0]  # e.g. (out, aux)
        if not isinstance(raw, torch.Tensor):
            raise ExplainError(f"the model returned {type(raw).__name__}; a segmenter must return a tensor of class "
                               "maps (batch, classes, height, width)")
        if raw.dim() != 4:
            raise ExplainError(f"the model returned outputs of shape {list(raw.shape)}, not (batch, classes, height, "
                               "width); task segmentation explains class maps: choose the task that matches the model")
        out = raw.detach().double()
        if self.output == "probs":
            out = torch.softmax(out, dim=1) if out.shape[1] > 1 else torch.sigmoid(out)
        return out

    # ------------------------------------------------------------------ targets

    def targets(self, fx: "torch.Tensor", request: TargetRequest) -> list[RegionTarget]:
        """Targets from f(x)'s first map and ``request`` (module docstring), scored on f(x)."""
        maps = fx[0]
        labels = _labels(request, int(maps.shape[0]))
        size = request.size or (tuple(request.geometry.model) if request.geometry is not None else None)
        if size is None:
            raise ExplainError("the segmentation task needs the model input's size (TargetRequest.size)")
        if request.top_k is not None and request.top_k < 1:
            raise OptionError("top_k", f"must be at least 1, got {request.top_k}")
        if self.region is None:
            chosen = self._predicted(maps, request, labels, tuple(size))
        else:
            chosen = self._in_regions(self.region, maps, request, labels, tuple(size))
        scores = self.score(fx[:1], chosen, tuple(size))[0].tolist()  # the very numbers the engines get as f(x)
        return [dataclasses.replace(t, score=float(s)) for t, s in zip(chosen, scores)]

    def _predicted(self, maps: "torch.Tensor", request: TargetRequest, labels: list[str] | None,
                   size: tuple[int, int]) -> list[RegionTarget]:
        """Default targets: classes of f(x)'s argmax map, each over its own predicted region."""
        n_classes = int(maps.shape[0])
        argmax = maps.argmax(dim=0).cpu().numpy()  # ties: the lowest class index
        counts = np.bincount(argmax.ravel(), minlength=n_classes)
        order = [int(c) for c in np.argsort(-counts, kind="stable")]
        classes: list[int] = []
        for item in tuple(request.target) or ("auto",):
            text = str(item).strip()
            if text == "auto":
                found = [c for c in order if counts[c] > 0 and counts[c] >= self.min_area * argmax.size
                         and not _is_background(c, labels)]
                if not found:
                    raise self._nothing(counts, labels)
                picked = found[: request.top_k] if request.top_k is not None else found
            else:
                c = _class_index(text, labels, n_classes)
                if counts[c] == 0:
                    raise ExplainError(f"{_name(c, labels)} is predicted nowhere in the model's map of the input; "
                                       "name a region (region MASK) to explain its score there")
                picked = [c]
            classes += [c for c in picked if c not in classes]
        out = []
        for c in classes:
            grid = argmax == c
            out.append(self._target(c, labels, grid, resample_nearest(grid, size), None, request, region=None))
        return out

    def _nothing(self, counts: np.ndarray, labels: list[str] | None) -> ExplainError:
        ranked = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0 and not _is_background(c, labels)]
        if not ranked:
            return ExplainError("the model predicts only the background class on this input; name a class "
                                "with target, or a region")
        best = ranked[0]
        return OptionError("min_area", f"is {self.min_area:g} but the largest class, {_name(best, labels)}, covers "
                                       f"{counts[best] / counts.sum():.3g} of the map; lower min_area, or name a class")

    def _in_regions(self, ids: np.ndarray, maps: "torch.Tensor", request: TargetRequest, labels: list[str] | None,
                    size: tuple[int, int]) -> list[RegionTarget]:
        """Targets over the user's regions (``ids``): for each id, the named classes or the top classes over it."""
        import torch

        geometry = request.geometry
        if geometry is not None:
            check_region_size(ids, tuple(geometry.original), "input image")
            model_ids = ids_to_model(ids, geometry)
        else:
            check_region_size(ids, size, "model input")
            model_ids = ids
        several = len(np.unique(ids)) > 2  # a label map: errors name the id; a mask (any one value) is 'mask'
        out_size = (int(maps.shape[-2]), int(maps.shape[-1]))
        out = []
        for r in (int(v) for v in np.unique(ids[ids > 0])):
            name = f"id {r}" if several else "mask"
            mask = model_ids == r
            if not mask.any():
                raise OptionError("region", f"{name} lies outside the part of the image the model sees (the "
                                            "preprocessing crops it away); draw it inside the crop, or preprocess "
                                            "with size H,W")
            grid = resample_nearest(mask, out_size)
            if not grid.any():
                raise OptionError("region", f"{name} covers no cell of the model's {out_size[0]}x{out_size[1]} output "
                                            "map (a cell belongs to it when the input pixel under the cell's centre "
                                            "does); give a larger region")
            weights = torch.as_tensor(grid, dtype=maps.dtype, device=maps.device)
            means = ((maps * weights).sum(dim=(1, 2)) / weights.sum()).cpu().numpy()
            for c in self._region_classes(means, request, labels):
                original: np.ndarray | None = np.equal(ids, r) if geometry is not None else None
                out.append(self._target(c, labels, grid, mask, original, request, region=r))
        return out

    def _region_classes(self, means: np.ndarray, request: TargetRequest, labels: list[str] | None) -> list[int]:
        n = len(means)
        classes: list[int] = []
        for item in tuple(request.target) or ("auto",):
            text = str(item).strip()
            if text == "auto":
                k = 1 if request.top_k is None else request.top_k
                if k > n:
                    raise OptionError("top_k", f"{k} is more than the model's {n} classes")
                picked = [int(c) for c in np.argsort(-means, kind="stable")[:k]]
            else:
                picked = [_class_index(text, labels, n)]
            classes += [c for c in picked if c not in classes]
        return classes

    def _target(self, c: int, labels: list[str] | None, grid: np.ndarray, mask: np.ndarray,
                original: np.ndarray | None, request: TargetRequest, *, region: int | None) -> RegionTarget:
        if original is None and request.geometry is not None:
            original = mask_to_original(mask, request.geometry)
        shown = original if original is not None else mask
        area = int(shown.sum())
        return RegionTarget(label=_label(c, labels), index=c, score=float("nan"),
                            source="predicted" if region is None else "region", region=region,
                            cells=int(grid.sum()), output_size=(int(grid.shape[0]), int(grid.shape[1])),
                            area=area, fraction=area / shown.size, bbox=pixel_bbox(shown) if area else (0, 0, 0, 0),
                            frame="model" if original is None else "original",
                            grid=grid, mask=mask, mask_original=original)

    # ------------------------------------------------------------------ scores

    def _weights(self, targets: Sequence[Target], out_size: tuple[int, int],
                 device: "torch.device") -> tuple["torch.Tensor", "torch.Tensor"]:
        """(K,) class indices and (K, H', W') float64 masks normalised to sum 1."""
        import torch

        grids: list[Any] = [getattr(t, "grid", None) for t in targets]
        if any(g is None for g in grids):
            raise ExplainError("the segmentation task scores RegionTargets only (build them with task.targets)")
        if any(tuple(g.shape) != tuple(out_size) for g in grids):
            raise ExplainError(f"the model's output map is {out_size[0]}x{out_size[1]} here but was "
                               f"{grids[0].shape[0]}x{grids[0].shape[1]} on the input; it must not change size")
        stacked = torch.as_tensor(np.stack(grids), dtype=torch.float64)
        weights = stacked / stacked.sum(dim=(1, 2), keepdim=True)
        classes = torch.as_tensor([t.index for t in targets], dtype=torch.long)
        return classes.to(device), weights.to(device)

    def score(self, decoded: "torch.Tensor", targets: Sequence[Target], size: tuple[int, int]) -> "torch.Tensor":
        out_size = (int(decoded.shape[-2]), int(decoded.shape[-1]))
        classes, weights = self._weights(targets, out_size, decoded.device)
        return _region_means(decoded, classes, weights)

    def scorer(self, targets: Sequence[Target], size: tuple[int, int]):
        """The Evaluator's head; the masks are moved to the device once, not per batch."""
        targets = tuple(targets)
        cache: dict[tuple, tuple] = {}

        def head(raw: object) -> "torch.Tensor":
            decoded = self.decode(raw, size)
            out_size = (int(decoded.shape[-2]), int(decoded.shape[-1]))
            key = (str(decoded.device), out_size)
            if key not in cache:
                cache[key] = self._weights(targets, out_size, decoded.device)
            return _region_means(decoded, *cache[key])

        head.__name__ = "segmentation_scores"
        return head

    def params(self) -> dict[str, Any]:
        mean_of = "softmax probability" if self.output == "probs" else "map value as returned (logit)"
        return {"task": self.name, "output": self.output, "score": f"mean over the region of the class's {mean_of}",
                "min_area": self.min_area, "region": None if self.region is None else {
                    "shape": list(self.region.shape), "ids": [int(v) for v in np.unique(self.region[self.region > 0])]},
                "resampling": RESAMPLING}


def _region_means(decoded: "torch.Tensor", classes: "torch.Tensor", weights: "torch.Tensor") -> "torch.Tensor":
    """(B, K): each target's class map (B, K, H', W') contracted with its normalised mask (K, H', W')."""
    import torch

    if int(classes.max()) >= decoded.shape[1]:
        raise ExplainError(f"the model's map has {decoded.shape[1]} classes here but a target is class "
                           f"{int(classes.max())}; its number of classes must not change")
    return torch.einsum("bkhw,khw->bk", decoded.index_select(1, classes), weights)


def _labels(request: TargetRequest, n: int) -> list[str] | None:
    labels = request.labels
    if labels is not None and len(labels) != n:
        if request.labels_source == "labels":
            raise OptionError("labels", f"gives {len(labels)} names but the model's map has {n} classes; "
                                        "fix the labels option")
        raise ExplainError(f"the model's own labels give {len(labels)} names but its map has {n} classes; "
                           "override them with labels FILE")
    return labels


def _class_index(text: str, labels: list[str] | None, n: int) -> int:
    if text.lstrip("-").isdigit():
        c = int(text)
        if not 0 <= c < n:
            raise OptionError("target", f"{c} is out of range: the model's map has {n} classes (0..{n - 1})")
        return c
    from explain_cli.targets import label_index

    return label_index(text, labels)


def _is_background(c: int, labels: list[str] | None) -> bool:
    return labels is not None and labels[c].strip().strip("_").lower() == BACKGROUND


def _label(c: int, labels: list[str] | None) -> str | None:
    return labels[c] if labels is not None else None


def _name(c: int, labels: list[str] | None) -> str:
    return f"{labels[c]} ({c})" if labels is not None else f"class {c}"
