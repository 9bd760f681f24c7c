"""D-RISE's similarity (Petsiuk et al., CVPR 2021) between reference boxes and detections.

For a reference d_t = (L_t, P_t) and each detection d_j = (L_j, P_j, O_j) of an image:

    s(d_t, d_j) = IoU(L_t, L_j) · cos(P_t, P_j) · O_j,    score_t(image) = max_j s(d_t, d_j), 0 if none

computed for every reference and every detection of a whole batch in one step: one
``box_iou`` (K, N), one class term (K, N), one weight (K, N), then a segment max over the
images (``scatter_reduce`` with ``amax``). No loop over pairs or images.

Class vectors: P_t is the reference's class vector (a detection's ``probs``, or one-hot of a
named label); P_j is the detection's ``probs`` or, without them, one-hot(label_j) (the
one-hot × score fallback: a cosine ignores the length, so the score enters through O_j, see
:class:`References`). A class-agnostic reference (a box named without a label) has class term 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from explain_cli.errors import ExplainError

if TYPE_CHECKING:
    import torch

    from explain_cli.tasks.detection_formats import Detections

#: Where each reference's O_j comes from.
WEIGHTS = ("objectness", "score", "none")


@dataclass(frozen=True)
class References:
    """K reference boxes as tensors on one device, ready to score batches of detections."""

    boxes: "torch.Tensor"  # (K, 4) float64, x1 y1 x2 y2 in model-input pixels
    labels: "torch.Tensor"  # (K,) long class index; -1 for a class-agnostic box
    vectors: "torch.Tensor | None"  # (K, C) float64 unit class vectors; None when the model gives no probs
    weight: "torch.Tensor"  # (K,) long index into WEIGHTS: O_j is objectness, the detector's score, or 1

    @property
    def agnostic(self) -> "torch.Tensor":
        return self.labels < 0


def make_references(boxes: "torch.Tensor", labels: "torch.Tensor", vectors: "torch.Tensor | None",
                    weights: list[str]) -> References:
    """Build :class:`References`; ``vectors`` rows are normalised here (all-zero rows stay zero)."""
    import torch

    boxes = boxes.to(torch.float64)
    if vectors is not None:
        vectors = vectors.to(torch.float64)
        vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    codes = torch.as_tensor([WEIGHTS.index(w) for w in weights], dtype=torch.long, device=boxes.device)
    return References(boxes, labels.to(boxes.device, torch.long), vectors, codes)


def class_term(refs: References, det: "Detections") -> "torch.Tensor":
    """(K, N) cos(P_t, P_j): 1 for class-agnostic references."""
    import torch

    k, n = refs.boxes.shape[0], det.boxes.shape[0]
    if refs.vectors is None:
        term = (refs.labels[:, None] == det.labels[None, :]).to(torch.float64)
    elif det.probs is not None:
        if det.probs.shape[1] != refs.vectors.shape[1]:
            raise ExplainError(f"the detector's probs have {det.probs.shape[1]} classes on a perturbed batch but "
                               f"{refs.vectors.shape[1]} on the input; it must give one width")
        unit = det.probs / det.probs.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        term = torch.mm(refs.vectors, unit.T)  # float64: autocast leaves it alone
    else:  # one-hot detections against class vectors: the vector's entry at the detection's label
        c = refs.vectors.shape[1]
        inside = det.labels < c
        term = refs.vectors[:, det.labels.clamp(max=c - 1)] * inside[None, :]
    return torch.where(refs.agnostic[:, None], torch.ones((k, n), dtype=torch.float64, device=term.device), term)


def weight_term(refs: References, det: "Detections") -> "torch.Tensor":
    """(K, N) O_j per reference's weight source."""
    import torch

    n = det.boxes.shape[0]
    one = torch.ones(n, dtype=torch.float64, device=det.boxes.device)
    if det.objectness is None and bool((refs.weight == 0).any()):
        raise ExplainError("the detector gave objectness on the input but not on a perturbed batch; "
                           "it must give the same keys for every input")
    objectness = det.objectness if det.objectness is not None else one
    choices = torch.stack([objectness, det.scores, one])  # (3, N) in WEIGHTS order
    return choices[refs.weight]


def pair_scores(refs: References, det: "Detections") -> "torch.Tensor":
    """(K, N) s(d_t, d_j) for every reference t and every detection j of the batch."""
    from torchvision.ops import box_iou

    if det.boxes.shape[0] == 0:
        return det.boxes.new_zeros((refs.boxes.shape[0], 0))
    iou = box_iou(refs.boxes, det.boxes).nan_to_num_(0.0)  # two zero-area boxes: 0/0, no overlap
    return iou * class_term(refs, det) * weight_term(refs, det)


def box_scores(refs: References, det: "Detections") -> "torch.Tensor":
    """(B, K) float64 max_j s(d_t, d_j) per image of the batch; 0 for an image with no detection."""
    pairs = pair_scores(refs, det)
    k = refs.boxes.shape[0]
    out = pairs.new_zeros((k, det.n_images))
    if pairs.shape[1]:
        out.scatter_reduce_(1, det.image[None, :].expand(k, -1), pairs, reduce="amax", include_self=True)
    return out.T.contiguous()
