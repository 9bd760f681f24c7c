"""``torchvision:SEGMENTER``: torchvision's semantic segmentation architectures by name.

Each is built with random weights (no download: ``weights_backbone=None``), a weights file
(state dict or ``.safetensors``, read without unpickling anything but tensors), or ``DEFAULT``
(torchvision's VOC-labelled weights through the torch.hub cache), and wrapped so that it returns
its ``out`` map as a tensor: (B, 3, H, W) normalised input -> (B, C, H, W) logits (torchvision
upsamples the map to the input's size). The auxiliary head is dropped: it is a training aid.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from explain_cli.models.base import TORCHVISION_PREFIX, LoadedModel
from explain_cli.models.weights import choose_weights, load_state_checked, unknown_name
from explain_cli.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

if TYPE_CHECKING:
    import torch

RANDOM_SEGMENTER_NOTE = ("random weights (no --weights given): this segmenter's class maps are noise and its "
                         "explanations mean nothing; use for tests and benchmarks only, or pass --weights FILE|DEFAULT")
VOC_CLASSES = 21  # torchvision's segmentation weights: background and the 20 Pascal VOC classes

#: Architecture -> the parameter whose rows are the classes (read to size a weights file's head).
SEGMENTERS: dict[str, str] = {
    "fcn_resnet50": "classifier.4.weight",
    "fcn_resnet101": "classifier.4.weight",
    "deeplabv3_resnet50": "classifier.4.weight",
    "deeplabv3_resnet101": "classifier.4.weight",
    "deeplabv3_mobilenet_v3_large": "classifier.4.weight",
    "lraspp_mobilenet_v3_large": "classifier.high_classifier.weight",
}


def is_segmenter(source: str) -> bool:
    """True for ``torchvision:NAME`` naming one of :data:`SEGMENTERS`."""
    return source.startswith(TORCHVISION_PREFIX) and source[len(TORCHVISION_PREFIX):] in SEGMENTERS


@functools.cache
def _out_only_class() -> type:
    import torch

    class OutOnly(torch.nn.Module):
        """A torchvision segmentation model returning its ``out`` map (B, C, H, W) as a plain tensor."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)["out"]

    return OutOnly


def as_segmenter(module: Any) -> Any:
    """A live torchvision segmentation module wrapped to return its ``out`` tensor; anything else unchanged.

    The segmentation task reads ``{"out": ...}`` itself; the wrapper is for runtimes and exports,
    which want a tensor. The module's auxiliary head is switched off (it is not used by ``out``).
    """
    from torchvision.models.segmentation._utils import _SimpleSegmentationModel
    from torchvision.models.segmentation.lraspp import LRASPP

    if isinstance(module, _SimpleSegmentationModel):
        module.aux_classifier = None  # fcn / deeplabv3: computing the aux map would only cost time
        return _out_only_class()(module)
    if isinstance(module, LRASPP):
        return _out_only_class()(module)
    return module


def load_segmenter(source: str, weights: str | None, device: "torch.device", seed: int) -> LoadedModel:
    """Build ``torchvision:SEGMENTER`` with random weights, a weights file, or ``DEFAULT``.

    Parameters
    ----------
    source : str
        ``torchvision:`` and one of :data:`SEGMENTERS`.
    weights : str or None
        A state dict / ``.safetensors`` file, ``DEFAULT``, or None for random weights (noted loudly).
    device : torch.device
    seed : int
        Seeds random initialisation.

    Returns
    -------
    LoadedModel
        ``task`` is ``"segmentation"``; ``preprocess`` is the weights' own (shorter side to
        520, ImageNet mean and std, no crop); ``labels`` the 21 VOC names when the head has 21 classes.

    Raises
    ------
    ExplainError
        For an unknown name, weights that do not fit, or DEFAULT weights offline.
    """
    import torch
    import torchvision

    arch_name = source[len(TORCHVISION_PREFIX):]
    if arch_name not in SEGMENTERS:
        raise unknown_name("torchvision segmenter", arch_name, SEGMENTERS, f"supported: {', '.join(SEGMENTERS)}")
    default_weights = torchvision.models.get_model_weights(arch_name).DEFAULT
    categories = list(default_weights.meta.get("categories") or [])
    chosen = choose_weights(arch_name, weights, default_weights)
    state, aux, num_classes = chosen.state, False, VOC_CLASSES
    notes = [] if state is not None else [RANDOM_SEGMENTER_NOTE]
    if chosen.from_file and state is not None:
        head = state.get(SEGMENTERS[arch_name])
        num_classes = int(head.shape[0]) if head is not None and head.dim() >= 1 else VOC_CLASSES
    if state is not None:
        aux = any(k.startswith("aux_classifier.") for k in state)  # load it strictly, then drop it
    build = {"aux_loss": aux} if arch_name != "lraspp_mobilenet_v3_large" else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random initialisation is reproducible from --seed
        model = torchvision.models.get_model(arch_name, weights=None, weights_backbone=None,
                                             num_classes=num_classes, **build)
    if state is not None:
        load_state_checked(model, state, arch_name, chosen.label)
    model.eval().to(device)
    return LoadedModel(
        module=as_segmenter(model),
        source=source,
        kind="torchvision",
        sha256=chosen.sha256,
        weights=chosen.label,
        device=device,
        labels=categories if num_classes == len(categories) else None,
        preprocess=_preprocess(default_weights),
        in_channels=3,
        notes=notes,
        task="segmentation",
    )


def _preprocess(default_weights: Any) -> Preprocess:
    """The weights' ``SemanticSegmentation`` transforms (metadata only: nothing is downloaded)."""
    try:
        t = default_weights.transforms()
        return Preprocess("model", resize=int(list(t.resize_size)[0]), mean=tuple(float(v) for v in t.mean),
                          std=tuple(float(v) for v in t.std), interpolation=t.interpolation.value)
    except (AttributeError, TypeError, IndexError):
        return Preprocess("model", resize=520, mean=IMAGENET_MEAN, std=IMAGENET_STD)
