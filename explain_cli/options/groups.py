"""The resolved options of one run, in typed, frozen groups (one per help panel).

:func:`explain_cli.options.settings.settings` builds them; everything downstream reads these
fields, never a dict of option names. Free-form values arrive parsed (``size`` is ``(H, W)``,
``scale`` a ``Scale``, ``baseline`` a ``Baseline``); a field's name is its option's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

    from explain_cli.options.parse import Baseline
    from explain_cli.engines.base import Engine
    from explain_cli.render.scale import Scale


@dataclass(frozen=True)
class TargetOptions:
    """Which outputs of the model are explained, and in which output space."""

    target: tuple[Any, ...]  # 'auto', class indices or labels, boxes (detection); in Python also one callable
    top_k: int | None  # with target auto: the K top classes / at most K detections; None: the task's default
    labels: str | None  # class names: a file or 'imagenet'; None: the model's own
    task: str | None  # classification | detection | segmentation | similarity; None: the model's declared task (settled by `for_task`)
    output: str  # logits | probs (classification)
    min_score: float  # detection: default targets score at least this
    box: tuple[Any, ...]  # detection: boxes the user names, X1,Y1,X2,Y2[,LABEL] in input-image pixels
    decoder: str  # detection: auto | torchvision | padded | yolo
    objectness: str  # detection: where O_j comes from: auto | score | none
    yolo_conf: float  # decoder yolo: confidence threshold
    nms_iou: float  # decoder yolo: NMS IoU threshold
    max_det: int  # decoder yolo: detections kept per image
    region: Any  # segmentation: a mask or label map file, or (Python) an array; None: predicted regions
    min_area: float  # segmentation: default classes cover at least this share of the map
    reference: Any  # similarity: an image or .npy path, or (Python) a tensor, array or image
    temperature: float  # similarity: τ of the zero-shot softmax over K prompts


@dataclass(frozen=True)
class InputOptions:
    """How inputs are read and turned into the model's input."""

    preprocess: str  # auto | model | a preset name
    size: tuple[int, int] | None  # exact (H, W) resize, no crop
    mean: tuple[float, ...] | None  # normalisation mean per channel
    std: tuple[float, ...] | None  # normalisation std per channel (positive)
    max_pixels: int  # largest height x width read


@dataclass(frozen=True)
class SegmentationOptions:
    """How the model's view of an input is cut into superpixels."""

    algorithm: str  # a segmenter's name, or 'labels' for the user's label map
    params: dict[str, Any]  # the segmenter's parameters as given (seg_param, n_segments, compactness)
    label_map: np.ndarray | None = field(default=None, compare=False)  # (H, W) ids 0..M-1, the user's own


@dataclass(frozen=True)
class ModelOptions:
    """How the model is loaded and run."""

    weights: str | None  # torchvision:/timm: weights: a file or DEFAULT
    runtime: str | None  # eager | compile | onnxruntime | auto; None: as loaded
    device: str  # auto | cpu | cuda[:N] | mps
    precision: str  # fp32 | bf16 | fp16 (autocast, CUDA only)
    batch_size: int | Literal["auto"]  # perturbations per forward pass; auto: by device


@dataclass(frozen=True)
class OutputOptions:
    """What is written and how the picture is drawn."""

    out: Path  # output folder
    name: str | None  # file name of a batch method's result; None: 'batch'
    save_map: bool  # also write NAME.METHOD.npy
    boundaries: bool  # draw superpixel boundaries and number the top segments
    style: str  # overlay | side-by-side
    opacity: float  # map opacity in the overlay style
    cmap: str | None  # colour map; None: by the sign of the scores
    scale: Scale  # colour scale: figure | panel | fixed limits


#: The output options that change only the picture (what ``Explanation.render`` takes).
DRAWING = ("boundaries", "style", "opacity", "cmap", "scale")


@dataclass(frozen=True)
class EvaluationOptions:
    """The faithfulness metrics asked for (the JSON's ``evaluation`` block)."""

    evaluate: bool  # deletion and insertion curves
    deletion: str  # what deleted pixels become: road | blur | baseline
    eval_step: float  # share of the pixels moved per step
    mask: str | None  # the object's mask file: pointing game and energy in mask
    tolerance: float  # pointing game tolerance, pixels of the input
    stability: int  # top-5 Jaccard over this many seeds (0: off)
    sanity: bool  # model-randomisation check
    seed: int  # the run's seed, where the metrics' random orders and reruns start

    def any(self) -> bool:
        """True when some metric is asked for."""
        return self.evaluate or bool(self.mask) or self.stability >= 2 or self.sanity


@dataclass(frozen=True)
class Settings:
    """Every option of one run, validated and typed; ``values`` keeps them as plain option values.

    ``values`` is the merged layers with the engine's defaults filled in; ``given`` only what
    some layer set, which is what ``explain(**given)`` and a Ray worker take to rebuild these
    settings (defaults that depend on the model's task are settled there, not here).
    """

    method: str
    seed: int
    baseline: Baseline | None  # None for methods without one (permutation)
    params: Any  # the engine's parameter dataclass
    targets: TargetOptions
    input: InputOptions
    segmentation: SegmentationOptions
    model: ModelOptions
    output: OutputOptions
    evaluation: EvaluationOptions
    values: dict[str, Any] = field(compare=False)
    given: dict[str, Any] = field(default_factory=dict, compare=False)  # the values some layer set (no defaults)

    @property
    def engine(self) -> Engine:
        from explain_cli.engines import get_engine

        return get_engine(self.method)
