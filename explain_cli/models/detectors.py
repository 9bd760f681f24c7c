"""``torchvision:DETECTOR``: torchvision's detection architectures by name, as batch callables.

Each is built with random weights (no download: ``weights_backbone=None``), a weights file
(state dict or ``.safetensors``, read without unpickling anything but tensors), or
``DEFAULT`` (torchvision's COCO weights through the torch.hub cache), and wrapped as
:class:`TorchvisionDetector`: a (B, 3, H, W) batch of [0, 1] pixels in, torchvision's list
of B dicts out (``boxes`` in the batch's own pixels: torchvision resizes internally and maps
the boxes back), with ``probs`` for the two-stage Faster R-CNNs (:mod:`.roi_probs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from explain_cli.models.base import TORCHVISION_PREFIX, LoadedModel
from explain_cli.models.roi_probs import RoiProbs, has_roi_heads
from explain_cli.models.weights import choose_weights, load_state_checked, unknown_name
from explain_cli.preprocess import Preprocess

if TYPE_CHECKING:
    import torch

RANDOM_DETECTOR_NOTE = ("random weights (no --weights given): this detector's boxes, labels and scores are noise and "
                        "its explanations mean nothing; use for tests and benchmarks only, or pass --weights FILE|DEFAULT")
COCO_CLASSES = 91  # torchvision's COCO heads: background, 80 classes and 10 unused ids


@dataclass(frozen=True)
class DetectorArch:
    """What differs between the supported architectures."""

    head: str  # the classification parameter whose rows are anchors x classes
    score_option: str  # the builder's keyword for the detection score threshold
    min_size: int  # the transform's default shorter side (the explained input is resized to it)


DETECTORS: dict[str, DetectorArch] = {
    "fasterrcnn_resnet50_fpn_v2": DetectorArch("roi_heads.box_predictor.cls_score.weight", "box_score_thresh", 800),
    "fasterrcnn_mobilenet_v3_large_fpn": DetectorArch("roi_heads.box_predictor.cls_score.weight",
                                                      "box_score_thresh", 800),
    "retinanet_resnet50_fpn_v2": DetectorArch("head.classification_head.cls_logits.weight", "score_thresh", 800),
    "fcos_resnet50_fpn": DetectorArch("head.classification_head.cls_logits.weight", "score_thresh", 800),
    "ssdlite320_mobilenet_v3_large": DetectorArch("head.classification_head.module_list.0.1.weight",
                                                  "score_thresh", 320),
}


def is_detector(source: str) -> bool:
    """True for ``torchvision:NAME`` naming one of :data:`DETECTORS`."""
    return source.startswith(TORCHVISION_PREFIX) and source[len(TORCHVISION_PREFIX):] in DETECTORS


class TorchvisionDetector:
    """A torchvision detection model as a batch callable: (B, 3, H, W) in [0, 1] -> list of B dicts.

    Each dict has ``boxes`` (N, 4) x1, y1, x2, y2 in the input's pixels, ``scores`` (N,),
    ``labels`` (N,), and for two-stage models ``probs`` (N, C) (see :mod:`.roi_probs`).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.two_stage = has_roi_heads(model)

    def __call__(self, batch: "torch.Tensor") -> list[dict]:
        images = list(batch)
        sizes = [(int(batch.shape[-2]), int(batch.shape[-1]))] * len(images)
        if not self.two_stage:
            return [dict(d) for d in self.model(images)]
        with RoiProbs(self.model) as capture:
            detections = self.model(images)
        return capture.attach([dict(d) for d in detections], sizes)

    def eval(self) -> "TorchvisionDetector":
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> "TorchvisionDetector":
        """As ``nn.Module.train``: the front door runs a live detector in eval mode and gives it back."""
        self.model.train(mode)
        return self

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
        """The detector's own (the sanity check re-initialises a copy's)."""
        return self.model.named_parameters(*args, **kwargs)

    def named_buffers(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.named_buffers(*args, **kwargs)

    def to(self, device: Any) -> "TorchvisionDetector":
        self.model.to(device)
        return self

    @property
    def training(self) -> bool:
        return bool(self.model.training)


def as_detector(module: Any) -> Any:
    """A live torchvision detection module wrapped as :class:`TorchvisionDetector`; anything else unchanged.

    Python callers' own detectors (callables returning torchvision's format) need no wrapping.
    """
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD

    if isinstance(module, (GeneralizedRCNN, RetinaNet, FCOS, SSD)):
        return TorchvisionDetector(module)
    return module


def load_detector(source: str, weights: str | None, device: "torch.device", seed: int,
                  **build: Any) -> LoadedModel:
    """Build ``torchvision:DETECTOR`` with random weights, a weights file, or ``DEFAULT``.

    Parameters
    ----------
    source : str
        ``torchvision:`` and one of :data:`DETECTORS`.
    weights : str or None
        A state dict / ``.safetensors`` file, ``DEFAULT``, or None for random weights (noted loudly).
    device : torch.device
    seed : int
        Seeds random initialisation.
    **build
        Passed to torchvision's builder (``min_size``, ``max_size``, ``box_score_thresh`` ...);
        ``score_thresh`` is renamed to the architecture's own keyword.

    Returns
    -------
    LoadedModel
        ``task`` is ``"detection"``; ``preprocess`` resizes the shorter side to the detector's
        own ``min_size`` and does not normalise (the detector normalises internally).

    Raises
    ------
    ExplainError
        For an unknown name, weights that do not fit, or DEFAULT weights offline.
    """
    import torch
    import torchvision

    arch_name = source[len(TORCHVISION_PREFIX):]
    if arch_name not in DETECTORS:
        raise unknown_name("torchvision detector", arch_name, DETECTORS, f"supported: {', '.join(DETECTORS)}")
    arch = DETECTORS[arch_name]
    if "score_thresh" in build:
        build[arch.score_option] = build.pop("score_thresh")
    default_weights = torchvision.models.get_model_weights(arch_name).DEFAULT
    categories = list(default_weights.meta.get("categories") or [])
    chosen = choose_weights(arch_name, weights, default_weights)
    notes = [] if chosen.state is not None else [RANDOM_DETECTOR_NOTE]
    num_classes = (_num_classes(arch_name, arch, chosen.state) if chosen.from_file else None) or COCO_CLASSES
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random initialisation is reproducible from --seed
        model = torchvision.models.get_model(arch_name, weights=None, weights_backbone=None,
                                             num_classes=num_classes, **build)
    if chosen.state is not None:
        load_state_checked(model, chosen.state, arch_name, chosen.label)
    model.eval().to(device)
    transform = getattr(model, "transform", None)
    min_size = int(transform.min_size[-1]) if transform is not None else arch.min_size
    return LoadedModel(
        module=TorchvisionDetector(model),
        source=source,
        kind="torchvision",
        sha256=chosen.sha256,
        weights=chosen.label,
        device=device,
        labels=categories if num_classes == len(categories) else None,
        preprocess=Preprocess("model", resize=min_size),
        in_channels=3,
        notes=notes,
        task="detection",
    )


def _num_classes(arch_name: str, arch: DetectorArch, state: dict) -> int | None:
    """Classes of the head in ``state``: its rows over the anchors per location (from a meta-device build)."""
    import torch
    import torchvision

    weight = state.get(arch.head)
    if weight is None:
        return None
    with torch.device("meta"):
        reference = torchvision.models.get_model(arch_name, weights=None, weights_backbone=None,
                                                 num_classes=COCO_CLASSES)
    anchors = reference.state_dict()[arch.head].shape[0] // COCO_CLASSES
    return int(weight.shape[0]) // anchors
