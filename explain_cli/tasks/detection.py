"""The detection task: each target is a box, scored on every perturbed image by D-RISE's similarity.

Score of box t on an image (see :mod:`explain_cli.tasks.drise`)::

    s_t = max_j IoU(L_t, L_j) · cos(P_t, P_j) · O_j      (0 when nothing is detected)

Targets (``TargetRequest.target`` items):

- ``auto``: every detection of f(x) with score >= ``min_score``, highest first, at most ``top_k``;
- a class name or index: the detections of that class with score >= ``min_score``;
- a box ``X1,Y1,X2,Y2[,LABEL]`` (string or tuple), in original-image pixels when the request
  carries a geometry, else in model-input pixels; it may be an object the detector missed.
  With a LABEL its class vector is one-hot(LABEL); without one the box is class-agnostic:
  the class term is 1 and any detection counts by its overlap and confidence.

Fallbacks, recorded in :meth:`DetectionTask.params`:

- P_j: the model's ``probs`` (torchvision's two-stage detectors get them through
  :mod:`explain_cli.models.detectors`); otherwise one-hot(label_j) × score_j. A cosine ignores
  a vector's length, so with one-hot vectors the confidence would vanish from the score; it
  enters through O_j instead (next item).
- O_j (option ``objectness``): ``auto`` takes the model's ``objectness`` where it gives one;
  else the detector's score when the class term cannot carry the confidence (no ``probs``, or
  a class-agnostic box); else 1, as in D-RISE for Faster R-CNN, whose softmax over classes
  with background already carries it. ``score``: always the detector's score; ``none``: 1.
- A detected box's score on f(x) is therefore 1 by construction when O_j = 1 (the model gives
  probs), and the detector's score (or objectness) otherwise; both are recorded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence, cast

from explain_cli.errors import ExplainError, OptionError
from explain_cli.tasks.base import Target, TargetRequest, Task
from explain_cli.tasks.boxes import Box, box_to_model, box_to_original, check_box, is_box, parse_box
from explain_cli.tasks.detection_formats import Detections, YoloSettings, check_decoder, decode_detections
from explain_cli.tasks.drise import References, box_scores, make_references, pair_scores

if TYPE_CHECKING:
    import torch

OBJECTNESS = ("auto", "score", "none")
SIMILARITY = "max_j IoU(L_t, L_j) * cos(P_t, P_j) * O_j over the detections j of the image; 0 when there is none"


@dataclass(frozen=True)
class BoxTarget(Target):
    """One box to explain; ``index`` is its class (None: class-agnostic), ``score`` its similarity on f(x)."""

    box: Box = (0.0, 0.0, 0.0, 0.0)  # x1, y1, x2, y2 in model-input pixels
    source: str = "detection"  # 'detection' (a detection of f(x)) or 'box' (named by the user)
    detector_score: float | None = None  # the detector's score of the f(x) detection that gives `score`
    class_vector: tuple[float, ...] | None = None  # P_t: the detection's probs, or one-hot of a named label
    weight: str = "none"  # where O_j comes from for this box: objectness, score or none (1)
    box_original: Box | None = None  # the box in original-image pixels, when the geometry is known
    detection: int | None = None  # the row of f(x)'s detections this target is (None: a named box)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(box=[round(v, 3) for v in self.box], source=self.source,
                   detector_score=None if self.detector_score is None else float(self.detector_score),
                   objectness=self.weight)
        if self.box_original is not None:
            out["box_original"] = [round(v, 3) for v in self.box_original]
        return out

    def caption(self) -> str:
        name = self.label if self.label is not None else ("any class" if self.index is None else f"class {self.index}")
        detector = "" if self.detector_score is None else f", detector {self.detector_score:.2f}"
        return f"{name}: box score {self.score:.3g}{detector}"

    def overlay(self) -> dict[str, Any]:
        return {"box": self.box_original or self.box, "caption": self.caption()}


class DetectionTask(Task):
    """Boxes scored by D-RISE's similarity (module docstring).

    Parameters
    ----------
    min_score : float
        Default targets are the detections of f(x) scoring at least this.
    decoder : {'auto', 'torchvision', 'padded', 'yolo'}
        How raw outputs are read (:mod:`explain_cli.tasks.detection_formats`).
    objectness : {'auto', 'score', 'none'}
        Where O_j comes from (module docstring).
    yolo : YoloSettings
        Confidence threshold, NMS IoU and detections per image of the ``yolo`` decoder.
    """

    name = "detection"
    options = ("min_score", "box", "decoder", "objectness", "yolo_conf", "nms_iou", "max_det")
    engine_defaults = {"rise": {"grid": 16, "p1": 0.5}}  # D-RISE's published settings
    per_image = True

    def __init__(self, *, min_score: float = 0.5, decoder: str = "auto", objectness: str = "auto",
                 yolo: YoloSettings = YoloSettings()) -> None:
        if not 0.0 <= float(min_score) <= 1.0:
            raise OptionError("min_score", f"must be between 0 and 1, got {min_score}")
        check_decoder(decoder)
        if objectness not in OBJECTNESS:
            raise OptionError("objectness", f"must be one of {', '.join(OBJECTNESS)}, got {objectness!r}")
        self.min_score = float(min_score)
        self.decoder = decoder
        self.objectness = objectness
        self.yolo = yolo

    @classmethod
    def from_options(cls, options: Any) -> "DetectionTask":
        return cls(min_score=options.min_score, decoder=options.decoder, objectness=options.objectness,
                   yolo=YoloSettings(conf=options.yolo_conf, iou=options.nms_iou, max_det=options.max_det))

    def decode(self, raw: object, size: tuple[int, int]) -> Detections:
        return decode_detections(raw, size, self.decoder, self.yolo)

    def join(self, decoded: Sequence[Detections]) -> Detections:
        return Detections.cat(decoded)

    # ------------------------------------------------------------------ targets

    def targets(self, fx: Detections, request: TargetRequest) -> list[BoxTarget]:
        """Boxes from f(x)'s detections and the user's boxes, scored on f(x) (see module docstring)."""
        import torch

        det = fx.of_image(0)
        size = request.size or _size_from(request)
        area = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        ranked = torch.argsort(det.scores, descending=True, stable=True).tolist()
        order = [j for j in ranked if float(area[j]) > 0]  # a zero-area box overlaps nothing: never a target
        detected: list[BoxTarget] = []  # from auto and class items: capped at top_k
        named: list[BoxTarget] = []  # boxes the user named: always kept
        seen: set[Any] = set()
        for item in tuple(request.target) or ("auto",):
            for target in self._resolve(item, det, order, request, size):
                key = (target.detection, target.box, target.index)
                if key not in seen:
                    seen.add(key)
                    (named if target.source == "box" else detected).append(target)
        if request.top_k is not None:
            if request.top_k < 1:
                raise OptionError("top_k", f"must be at least 1, got {request.top_k}")
            detected = detected[: request.top_k]
        chosen = self._scored(detected + named, det)
        return with_original_boxes(chosen, request.geometry) if request.geometry is not None else chosen

    def _resolve(self, item: Any, det: Detections, order: list[int], request: TargetRequest,
                 size: tuple[int, int]) -> list[BoxTarget]:
        if is_box(item):
            return [self._user_box(item, det, request, size)]
        text = str(item).strip()
        if text == "auto":
            rows = [j for j in order if float(det.scores[j]) >= self.min_score]
            if not rows:
                raise self._nothing(det, None, request.labels)
            return [self._detected(j, det, request.labels) for j in rows]
        if text.lstrip("-").isdigit():
            label = int(text)
        else:
            from explain_cli.targets import label_index

            label = label_index(text, request.labels)
        rows = [j for j in order if int(det.labels[j]) == label and float(det.scores[j]) >= self.min_score]
        if not rows:
            raise self._nothing(det, label, request.labels)
        return [self._detected(j, det, request.labels) for j in rows]

    def _nothing(self, det: Detections, label: int | None, labels: list[str] | None) -> ExplainError:
        """The error for no detection at ``min_score``: it names the highest score found."""
        rows = [j for j in range(len(det.scores)) if label is None or int(det.labels[j]) == label]
        what = "" if label is None else f" of {_name(label, labels)}"
        if not rows:
            return ExplainError(f"the detector found no object{what} in the input; name one with "
                                "`box` X1,Y1,X2,Y2[,LABEL] to explain why it was missed")
        best = max(rows, key=lambda j: float(det.scores[j]))
        return OptionError("min_score", f"is {self.min_score:g} but the highest detection score{what} is "
                                        f"{float(det.scores[best]):.3g} ({_name(int(det.labels[best]), labels)}); "
                                        "lower `min_score`, or name a `box`")

    def _detected(self, j: int, det: Detections, labels: list[str] | None) -> BoxTarget:
        label = int(det.labels[j])
        vector = None if det.probs is None else tuple(det.probs[j].tolist())
        return BoxTarget(label=_label(label, labels), index=label, score=float("nan"),
                         box=tuple(det.boxes[j].tolist()), source="detection",
                         class_vector=vector, weight=self._weight(det, agnostic=False), detection=j)

    def _user_box(self, item: Any, det: Detections, request: TargetRequest, size: tuple[int, int]) -> BoxTarget:
        option = "box" if isinstance(item, str) else "target"
        box, label = parse_box(item, option)
        if request.geometry is not None:
            h0, w0 = request.geometry.original
            model_box = box_to_model(check_box(box, (h0, w0), option), request.geometry, option)
        else:
            model_box = check_box(box, size, option, frame="model input")
        index = None if label is None else _class_index(label, request.labels, det, option)
        vector = None
        if index is not None and det.probs is not None:
            width = det.probs.shape[1]
            if index >= width:
                raise OptionError(option, f"label {label!r} is class {index} but the detector's probs have "
                                          f"{width} classes (0..{width - 1})")
            vector = tuple(1.0 if c == index else 0.0 for c in range(width))
        x1, y1, x2, y2 = (float(v) for v in model_box)
        return BoxTarget(label=None if index is None else _label(index, request.labels), index=index,
                         score=float("nan"), box=(x1, y1, x2, y2), source="box",
                         class_vector=vector, weight=self._weight(det, agnostic=index is None))

    def _weight(self, det: Detections, *, agnostic: bool) -> str:
        if self.objectness != "auto":
            return self.objectness
        if det.objectness is not None:
            return "objectness"
        return "score" if det.probs is None or agnostic else "none"

    def _scored(self, chosen: list[BoxTarget], det: Detections) -> list[BoxTarget]:
        """Each target with its similarity on f(x) and the detector's score of the detection giving it."""
        if not chosen:
            return chosen
        pairs = pair_scores(self._references(chosen, det.boxes.device), det)  # (K, N)
        out = []
        for k, target in enumerate(chosen):
            best = int(pairs[k].argmax()) if pairs.shape[1] else -1
            hit = best >= 0 and float(pairs[k, best]) > 0
            out.append(dataclasses.replace(target, score=float(pairs[k, best]) if hit else 0.0,
                                           detector_score=float(det.scores[best]) if hit else None))
        return out

    # ------------------------------------------------------------------ scores

    def _references(self, targets: Sequence[Target], device: "torch.device") -> References:
        """The targets as tensors; class vectors when any target has one (the model gives probs)."""
        import torch

        targets = cast("Sequence[BoxTarget]", targets)  # this task's own targets
        boxes = torch.tensor([t.box for t in targets], dtype=torch.float64, device=device).reshape(-1, 4)
        labels = torch.tensor([-1 if t.index is None else t.index for t in targets], dtype=torch.long, device=device)
        rows = [getattr(t, "class_vector", None) for t in targets]
        vectors = None
        if any(r is not None for r in rows):
            width = max(len(r) for r in rows if r is not None)
            vectors = torch.zeros((len(targets), width), dtype=torch.float64)
            for k, row in enumerate(rows):
                if row is not None:
                    vectors[k] = torch.tensor(row, dtype=torch.float64)
            vectors = vectors.to(device)
        return make_references(boxes, labels, vectors, [t.weight for t in targets])

    def score(self, decoded: Detections, targets: Sequence[Target], size: tuple[int, int]) -> "torch.Tensor":
        return box_scores(self._references(targets, decoded.boxes.device), decoded)

    def scorer(self, targets: Sequence[Target], size: tuple[int, int]):
        """The Evaluator's head; the reference tensors are built once per device, not per batch."""
        targets = tuple(targets)
        cache: dict[str, References] = {}

        def head(raw: object) -> "torch.Tensor":
            det = self.decode(raw, size)
            key = str(det.boxes.device)
            if key not in cache:
                cache[key] = self._references(targets, det.boxes.device)
            return box_scores(cache[key], det)

        head.__name__ = "detection_scores"
        return head

    def params(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "similarity": SIMILARITY,
            "min_score": self.min_score,
            "decoder": self.decoder,
            **({"yolo": dataclasses.asdict(self.yolo)} if self.decoder == "yolo" else {}),
            "objectness": self.objectness,
            "fallbacks": {
                "probs": "one-hot(label) x score when the model gives no per-box class probabilities",
                "objectness": "auto: the model's objectness; else the detector's score when the class term cannot "
                              "carry the confidence (no probs, or a class-agnostic box); else 1",
                "class_agnostic_box": "a box named without a label has class term 1",
            },
        }


def with_original_boxes(targets: Sequence[BoxTarget], geometry: Any) -> list[BoxTarget]:
    """Targets with ``box_original`` filled from the preprocessing's geometry (for the picture and JSON)."""
    return [dataclasses.replace(t, box_original=box_to_original(t.box, geometry)) for t in targets]


def _class_index(label: str | int, labels: list[str] | None, det: Detections, option: str) -> int:
    if isinstance(label, int):
        if label < 0 or (labels is not None and label >= len(labels)):
            top = f" (0..{len(labels) - 1})" if labels is not None else ""
            raise OptionError(option, f"label {label} is not a class index of the detector{top}")
        return label
    from explain_cli.targets import label_index

    try:
        return label_index(label, labels)
    except OptionError as exc:
        raise OptionError(option, f"label {exc.problem}") from None


def _label(index: int, labels: list[str] | None) -> str | None:
    return labels[index] if labels is not None and 0 <= index < len(labels) else None


def _name(index: int, labels: list[str] | None) -> str:
    name = _label(index, labels)
    return f"{name} ({index})" if name is not None else f"class {index}"


def _size_from(request: TargetRequest) -> tuple[int, int]:
    if request.geometry is not None:
        return tuple(request.geometry.model)
    raise ExplainError("the detection task needs the model input's size to check boxes (TargetRequest.size)")
