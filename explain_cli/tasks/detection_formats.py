"""Detector outputs decoded into one canonical form, :class:`Detections`, with clear errors.

torchvision's format is the common currency: per image a dict with ``boxes`` (N, 4) as
x1, y1, x2, y2 in model-input pixels, ``scores`` (N,), ``labels`` (N,), and optionally
``probs`` (N, C) per-box class probabilities and ``objectness`` (N,). Decoders:

``torchvision``
    A list of B such dicts, or the ``(losses, detections)`` tuple a TorchScript-scripted
    torchvision detector returns.
``padded``
    One dict of padded batch tensors, as ONNX exports give: ``boxes`` (B, K, 4), ``scores``
    (B, K), ``labels`` (B, K), optional ``probs`` (B, K, C), ``objectness`` (B, K) and
    ``num_detections`` (B,). Rows past ``num_detections``, or with score <= 0, are padding.
    A dict whose ``boxes`` are (N, 4) is one image's detections.
``yolo``
    A raw (B, 4 + C, A) tensor as ultralytics exports YOLOv8-style models to ONNX: per anchor
    cx, cy, w, h in input pixels and C class scores ((B, A, 4 + C) is read the same way when
    A > 4 + C). Boxes whose top class score exceeds ``conf`` are kept, then class-aware NMS
    (``torchvision.ops.batched_nms`` at IoU ``iou``), at most ``max_det`` per image. Each box's
    class-score vector becomes its ``probs`` and its top class score its ``objectness``.
``auto``
    ``torchvision`` or ``padded`` by their structure; a raw tensor is refused with a message
    that names the decoder, since its layout cannot be recognised safely.

Boxes partly outside the image are clipped to it; a box entirely outside, x2 < x1, NaN or
infinite values, negative scores and ragged or missing keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from explain_cli.errors import ExplainError, OptionError

if TYPE_CHECKING:
    import torch

DECODERS = ("auto", "torchvision", "padded", "yolo")
REQUIRED = ("boxes", "scores", "labels")
FORMAT_HINT = ("a detector must return, per image, a dict with boxes (N, 4) as x1, y1, x2, y2 in input pixels, "
               "scores (N,) and labels (N,) (torchvision's format)")


@dataclass
class Detections:
    """Every detection of a batch of ``n_images`` images, concatenated image by image."""

    boxes: "torch.Tensor"  # (N, 4) float64, x1 y1 x2 y2 in model-input pixels, clipped to the image
    scores: "torch.Tensor"  # (N,) float64, the detector's confidence
    labels: "torch.Tensor"  # (N,) long class indices
    image: "torch.Tensor"  # (N,) long, the image of the batch each row belongs to (non-decreasing)
    n_images: int
    probs: "torch.Tensor | None" = None  # (N, C) float64 class probabilities, where the model gives them
    objectness: "torch.Tensor | None" = None  # (N,) float64, where the model gives it

    def __len__(self) -> int:
        return self.n_images

    def of_image(self, i: int) -> "Detections":
        """The detections of image ``i`` alone (a batch of one)."""
        rows = self.image == i
        pick = (lambda t: None if t is None else t[rows])
        return Detections(self.boxes[rows], self.scores[rows], self.labels[rows], self.image[rows] * 0, 1,
                          pick(self.probs), pick(self.objectness))

    @staticmethod
    def cat(parts: Sequence["Detections"]) -> "Detections":
        """Batches one after another (image indices offset); every part must agree on probs/objectness."""
        import torch

        if len(parts) == 1:
            return parts[0]
        offsets = [0]
        for p in parts[:-1]:
            offsets.append(offsets[-1] + p.n_images)
        for key in ("probs", "objectness"):
            if len({getattr(p, key) is None for p in parts}) > 1:
                raise ExplainError(f"the detector gave {key} for some batches and not for others; {FORMAT_HINT}")
        joined = (lambda key: None if getattr(parts[0], key) is None else torch.cat([getattr(p, key) for p in parts]))
        return Detections(torch.cat([p.boxes for p in parts]), torch.cat([p.scores for p in parts]),
                          torch.cat([p.labels for p in parts]),
                          torch.cat([p.image + o for p, o in zip(parts, offsets)]),
                          sum(p.n_images for p in parts), joined("probs"), joined("objectness"))


@dataclass(frozen=True)
class YoloSettings:
    """How the ``yolo`` decoder turns raw anchors into detections."""

    conf: float = 0.05  # keep anchors whose top class score exceeds this (low, so scores fade smoothly)
    iou: float = 0.7  # class-aware NMS IoU threshold (ultralytics' default)
    max_det: int = 300  # detections kept per image, highest score first


def looks_like_detections(raw: object) -> bool:
    """True for torchvision-style or padded detector outputs (dicts with ``boxes``)."""
    if isinstance(raw, dict):
        return "boxes" in raw
    if isinstance(raw, (list, tuple)) and raw:
        last = raw[-1] if isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[0], dict) else raw
        items = last if isinstance(last, (list, tuple)) else [last]
        return bool(items) and all(isinstance(d, dict) and "boxes" in d for d in items)
    return False


def check_decoder(decoder: str) -> str:
    """``decoder`` if it is one of :data:`DECODERS`, else an OptionError with a did-you-mean."""
    if decoder not in DECODERS:
        from explain_cli.errors import suggest

        hint = suggest(str(decoder), DECODERS)
        raise OptionError("decoder", f"must be one of {', '.join(DECODERS)}, got {decoder!r}"
                                     + (f" ({hint})" if hint else ""))
    return decoder


def decode_detections(raw: object, size: tuple[int, int], decoder: str = "auto",
                      yolo: YoloSettings = YoloSettings()) -> Detections:
    """One raw output batch as :class:`Detections` (float64, on the output's device).

    Parameters
    ----------
    raw : list of dict, tuple, dict of tensors or tensor
        What the model returned for a batch (see the module docstring).
    size : (H, W)
        The model input's size: boxes are clipped to it and refused when entirely outside.
    decoder : {'auto', 'torchvision', 'padded', 'yolo'}

    Raises
    ------
    ExplainError
        One line: what is malformed, in which image, and the expected format.
    """
    import torch

    check_decoder(decoder)
    if decoder == "yolo" or (decoder == "auto" and isinstance(raw, torch.Tensor)):
        if isinstance(raw, torch.Tensor) and decoder == "auto":
            shape = list(raw.shape)
            if raw.dim() == 2:
                raise ExplainError(f"task detection: the model returned a classifier's scores of shape {shape}, not "
                                   "detections; use `task` classification")
            raise ExplainError(f"task detection: the model returned a raw tensor of shape {shape}, not detections; "
                               "for a YOLO-style raw output (batch, 4 + classes, anchors) pass `decoder` yolo; "
                               f"{FORMAT_HINT}")
        return decode_yolo(raw, size, yolo)
    if isinstance(raw, dict) and decoder in ("auto", "padded"):
        return decode_padded(raw, size)
    if decoder == "padded":
        raise ExplainError(f"decoder padded: the model returned {type(raw).__name__}, not a dict of padded "
                           "tensors boxes (B, K, 4), scores (B, K), labels (B, K)")
    return decode_torchvision(raw, size)


def decode_torchvision(raw: object, size: tuple[int, int]) -> Detections:
    """A list of per-image dicts (or TorchScript's ``(losses, detections)``) as :class:`Detections`."""
    if isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[0], dict) and isinstance(raw[1], (list, tuple)):
        raw = raw[1]  # torch.jit.script(torchvision detector) returns (losses, detections)
    if not isinstance(raw, (list, tuple)) or not all(isinstance(d, dict) for d in raw):
        inner = type(raw[0]).__name__ if isinstance(raw, (list, tuple)) and raw else type(raw).__name__
        raise ExplainError(f"task detection: the model returned {type(raw).__name__} of {inner}, not detections; "
                           f"{FORMAT_HINT}")
    if not raw:
        raise ExplainError(f"task detection: the model returned an empty list for a batch; {FORMAT_HINT}")
    return _assemble([_image_fields(d, i) for i, d in enumerate(raw)], size)


def decode_padded(raw: dict, size: tuple[int, int]) -> Detections:
    """A dict of padded batch tensors (or one image's (N, 4) boxes) as :class:`Detections`."""
    import torch

    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ExplainError(f"the detector's output has no {', '.join(missing)} (keys: {', '.join(map(str, raw))}); "
                           f"{FORMAT_HINT}, or one dict of padded tensors boxes (B, K, 4), scores (B, K), labels (B, K)")
    boxes = raw["boxes"]
    if not isinstance(boxes, torch.Tensor) or boxes.dim() not in (2, 3):
        shape = list(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ExplainError(f"the detector's boxes are {shape}; expected (B, K, 4) padded or (N, 4) for one image")
    if boxes.dim() == 2:
        return _assemble([_image_fields(raw, 0)], size)
    b, k = boxes.shape[:2]
    counts = raw.get("num_detections")
    images = []
    for key, value in raw.items():
        if key in (*REQUIRED, "probs", "objectness") and (not isinstance(value, torch.Tensor) or value.dim() < 2
                                                          or tuple(value.shape[:2]) != (b, k)):
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ExplainError(f"the detector's padded {key} is {shape}; with boxes {list(boxes.shape)} it must "
                               f"start with (B, K) = ({b}, {k})")
    if not bool(torch.isfinite(raw["scores"].detach().double()).all()):
        raise ExplainError("the detector's padded scores have NaN or infinite values; check the input's scale")
    for i in range(b):
        n = k if counts is None else int(torch.as_tensor(counts).reshape(-1)[i])
        rows = raw["scores"][i, :n] > 0  # padding rows have score 0 (or below)
        fields = {key: raw[key][i, :n][rows] for key in (*REQUIRED, "probs", "objectness") if key in raw}
        images.append(_image_fields(fields, i))
    return _assemble(images, size)


def decode_yolo(raw: object, size: tuple[int, int], settings: YoloSettings = YoloSettings()) -> Detections:
    """A raw (B, 4 + C, A) YOLO tensor decoded with a confidence threshold and class-aware NMS, vectorised."""
    import torch
    from torchvision.ops import batched_nms, box_convert

    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], torch.Tensor):
        raw = raw[0]  # ultralytics' eager models return (predictions, features)
    if not isinstance(raw, torch.Tensor) or raw.dim() != 3 or max(raw.shape[1], raw.shape[2]) < 5:
        shape = list(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
        raise ExplainError(f"decoder yolo: the model returned {shape}; expected a raw tensor (batch, 4 + classes, "
                           "anchors) of cx, cy, w, h and class scores")
    pred = raw.detach().double()
    if pred.shape[2] < pred.shape[1]:
        pred = pred.transpose(1, 2)  # (B, A, 4 + C) exports: the anchors are the longer axis
    if not bool(torch.isfinite(pred).all()):
        raise ExplainError("decoder yolo: the model returned NaN or infinite values; check the input's scale")
    b, c = pred.shape[0], pred.shape[1] - 4
    classes = pred[:, 4:, :].transpose(1, 2)  # (B, A, C)
    top, label = classes.max(dim=2)
    image, anchor = torch.nonzero(top > settings.conf, as_tuple=True)
    boxes = box_convert(pred[image, :4, anchor], "cxcywh", "xyxy")
    h, w = size
    boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                         boxes[:, 3].clamp(0, h)], dim=1)
    scores, labels = top[image, anchor], label[image, anchor]
    real = ((boxes[:, 2] - boxes[:, 0]) > 1e-2) & ((boxes[:, 3] - boxes[:, 1]) > 1e-2)
    rows = torch.nonzero(real).squeeze(1)
    keep = rows[batched_nms(boxes[rows].float(), scores[rows].float(), (image[rows] * c + labels[rows]), settings.iou)]
    keep = keep[torch.argsort(image[keep], stable=True)]  # image by image, each by score descending
    rank = torch.arange(len(keep), device=keep.device) - _first_of_group(image[keep])
    keep = keep[rank < settings.max_det]
    return Detections(boxes[keep], scores[keep], labels[keep].long(), image[keep], b,
                      probs=classes[image[keep], anchor[keep]], objectness=scores[keep].clone())


def _first_of_group(sorted_ids: "torch.Tensor") -> "torch.Tensor":
    """For each position of a non-decreasing id vector, the position where its id starts."""
    import torch

    if sorted_ids.numel() == 0:
        return sorted_ids
    starts = torch.ones_like(sorted_ids, dtype=torch.bool)
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    index = torch.arange(len(sorted_ids), device=sorted_ids.device)
    return torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=0).values


def _image_fields(d: dict, i: int) -> dict[str, "torch.Tensor"]:
    """One image's detection fields, checked for presence, type and shape (values: :func:`_assemble`)."""
    import torch

    where = f"the detector's output for image {i}"
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise ExplainError(f"{where} has no {', '.join(missing)} (keys: {', '.join(map(str, d)) or 'none'}); {FORMAT_HINT}")
    out: dict[str, torch.Tensor] = {}
    for key in (*REQUIRED, "probs", "objectness"):
        if key not in d or d[key] is None:
            continue
        value = d[key]
        if not isinstance(value, torch.Tensor):
            raise ExplainError(f"{where}: {key} is {type(value).__name__}, not a tensor; {FORMAT_HINT}")
        out[key] = value.detach()
    n = out["boxes"].shape[0] if out["boxes"].dim() >= 1 else -1
    expected = {"boxes": (n, 4), "scores": (n,), "labels": (n,), "objectness": (n,)}
    for key, shape in expected.items():
        if key in out and tuple(out[key].shape) != shape:
            raise ExplainError(f"{where}: {key} has shape {list(out[key].shape)} but boxes has {max(n, 0)} rows, "
                               f"so {key} must be {list(shape)}; {FORMAT_HINT}")
    if "probs" in out and (out["probs"].dim() != 2 or out["probs"].shape[0] != n):
        raise ExplainError(f"{where}: probs has shape {list(out['probs'].shape)}; it must be (N, classes) "
                           f"with one row per box ({n})")
    return out


def _assemble(images: list[dict[str, "torch.Tensor"]], size: tuple[int, int]) -> Detections:
    """Concatenate shape-checked per-image fields, check their values in one pass, clip boxes to the image."""
    import torch

    for key in ("probs", "objectness"):
        has = [key in d for d in images]
        if any(has) and not all(has):
            raise ExplainError(f"the detector's output for image {has.index(False)} has no {key} but image "
                               f"{has.index(True)} has; every image must give the same keys")
    widths = {d["probs"].shape[1] for d in images if "probs" in d}
    if len(widths) > 1:
        raise ExplainError(f"the detector's probs have {sorted(widths)} classes in different images; give one width")
    device = images[0]["boxes"].device
    cat = (lambda key: torch.cat([d[key].to(device, torch.float64) for d in images]) if key in images[0] else None)
    fields = {key: cat(key) for key in (*REQUIRED, "probs", "objectness")}
    boxes, scores, labels = (_present(fields[key]) for key in REQUIRED)
    image = torch.cat([torch.full((d["boxes"].shape[0],), i, dtype=torch.long, device=device)
                       for i, d in enumerate(images)])
    _check_values(fields, image, size)
    h, w = size
    boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                         boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1)
    return Detections(boxes, scores, labels.round().long(), image, len(images), fields["probs"], fields["objectness"])


def _present(value: "torch.Tensor | None") -> "torch.Tensor":
    """A required field (checked present by :func:`_image_fields`)."""
    assert value is not None
    return value


def _check_values(fields: dict[str, "torch.Tensor | None"], image: "torch.Tensor", size: tuple[int, int]) -> None:
    """Every value check over the whole batch at once; the error names the first offending image."""
    import torch

    h, w = size
    boxes, labels = _present(fields["boxes"]), _present(fields["labels"])
    if len(boxes) == 0:
        return
    rows = lambda t: t if t.dim() == 1 else t.any(dim=1)  # noqa: E731  (N, C) -> (N,)
    checks = [(rows(~torch.isfinite(v)), f"{k} has NaN or infinite values; check the input's scale and preprocessing")
              for k, v in fields.items() if v is not None]
    checks += [
        (labels != labels.round(), "labels must be class indices (integers)"),
        (labels < 0, "labels has negative values; labels must be class indices"),
        *[(rows(v < 0), f"{k} has negative values; a detector's {k} must be confidences in [0, 1]")
          for k in ("scores", "probs", "objectness") if (v := fields[k]) is not None],
        ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]), "box {box} has x2 < x1 or y2 < y1"),
        ((boxes[:, 0] > w) | (boxes[:, 1] > h) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0),
         f"box {{box}} lies entirely outside the {w}x{h} input; boxes must be x1, y1, x2, y2 in the model input's pixels"),
    ]
    bad = torch.stack([mask for mask, _ in checks])
    if not bool(bad.any()):  # one device sync for the whole batch
        return
    which = int(torch.nonzero(bad.any(dim=1))[0])
    row = int(torch.nonzero(bad[which])[0])
    box = [round(float(v), 2) for v in boxes[row]]
    raise ExplainError(f"the detector's output for image {int(image[row])}: " + checks[which][1].format(box=box))
