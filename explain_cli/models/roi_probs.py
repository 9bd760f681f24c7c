"""Per-box class probabilities for torchvision's two-stage detectors, without editing the model.

Faster R-CNN's box predictor scores every proposal with a softmax over all classes
(background included), but its output keeps only each final box's own class score. Following
the torchvision maintainers' advice (pytorch/vision #2500), forward hooks on ``roi_heads`` and
``roi_heads.box_predictor`` see the proposals, the class logits and the box regressions of the
same forward pass; each final detection is then matched to the proposal row that produced it:
the row whose softmax score for the detection's label equals the detection's score and whose
class-specific regressed box, clipped and mapped back to the input's pixels as torchvision
does, equals the detection's box. ``probs`` is that row's full softmax (C classes with
background at 0), so ``probs[j, labels[j]] == scores[j]``.

The hooks exist only during a call of :class:`RoiProbs`; the model is never changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def has_roi_heads(module: Any) -> bool:
    """True for torchvision two-stage detectors (a ``roi_heads`` with a ``box_predictor``)."""
    heads = getattr(module, "roi_heads", None)
    return heads is not None and hasattr(heads, "box_predictor") and hasattr(heads, "box_coder")


class RoiProbs:
    """Context manager that records one forward pass's RoI-head tensors, then attaches ``probs``.

    Examples
    --------
    >>> with RoiProbs(model) as capture:                 # doctest: +SKIP
    ...     detections = model(list(batch))
    >>> detections = capture.attach(detections, [(H, W)] * len(batch))  # doctest: +SKIP
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.proposals: list[torch.Tensor] | None = None
        self.image_shapes: list[tuple[int, int]] | None = None
        self.logits: torch.Tensor | None = None
        self.regression: torch.Tensor | None = None
        self._handles: list[Any] = []

    def __enter__(self) -> "RoiProbs":
        heads = self.model.roi_heads
        self._handles = [heads.register_forward_pre_hook(self._before, with_kwargs=True),
                         heads.box_predictor.register_forward_hook(self._after)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _before(self, module: Any, args: tuple, kwargs: dict) -> None:
        names = ("features", "proposals", "image_shapes")
        given = {**dict(zip(names, args)), **kwargs}
        self.proposals = [p.detach() for p in given["proposals"]]
        self.image_shapes = [tuple(int(v) for v in s) for s in given["image_shapes"]]

    def _after(self, module: Any, args: tuple, output: Any) -> None:
        self.logits, self.regression = (t.detach() for t in output)

    def attach(self, detections: list[dict], sizes: list[tuple[int, int]]) -> list[dict]:
        """The detections with ``probs`` (N, C) added, matched row by row (module docstring).

        ``sizes`` are the (H, W) of the images as given to the model (where the boxes live).
        Returns the detections unchanged if the hooks saw nothing (a model of another layout).
        """
        import torch
        import torch.nn.functional as F
        from torchvision.ops import clip_boxes_to_image

        if self.logits is None or self.proposals is None or self.image_shapes is None:
            return detections
        heads = self.model.roi_heads
        counts = [len(p) for p in self.proposals]
        decoded = heads.box_coder.decode(self.regression, self.proposals).split(counts)  # (P_i, C, 4) each
        softmax = F.softmax(self.logits, -1).split(counts)
        out = []
        for det, boxes, probs, shape, size in zip(detections, decoded, softmax, self.image_shapes, sizes):
            boxes = clip_boxes_to_image(boxes, shape)
            # torchvision's resize_boxes: ratios of original to resized size, in float32
            ratio_h = torch.tensor(size[0], dtype=torch.float32) / torch.tensor(shape[0], dtype=torch.float32)
            ratio_w = torch.tensor(size[1], dtype=torch.float32) / torch.tensor(shape[1], dtype=torch.float32)
            scale = torch.stack([ratio_w, ratio_h, ratio_w, ratio_h]).to(boxes)
            boxes = boxes * scale
            labels = det["labels"].long()
            if len(labels) == 0 or len(probs) == 0:
                out.append({**det, "probs": probs.new_zeros((len(labels), probs.shape[1]))})
                continue
            candidate_scores = probs[:, labels]  # (P, N)
            candidate_boxes = boxes[:, labels, :]  # (P, N, 4)
            extent = float(max(size))
            cost = (candidate_scores - det["scores"][None, :]).abs() + (
                (candidate_boxes - det["boxes"][None, :, :]).abs().amax(dim=2) / extent)
            rows = cost.argmin(dim=0)
            out.append({**det, "probs": probs[rows]})
        return out
