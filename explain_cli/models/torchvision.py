"""``torchvision:ARCH``: an architecture from torchvision plus weights (file, DEFAULT, or random)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from explain_cli.models.base import TORCHVISION_PREFIX, LoadedModel
from explain_cli.models.weights import choose_weights, head_width, load_state_checked, unknown_name
from explain_cli.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

if TYPE_CHECKING:
    import torch

RANDOM_WEIGHTS_NOTE = "random weights (no --weights given): outputs are meaningless; use for tests and benchmarks only"


def architectures() -> list[str]:
    """Every classification architecture torchvision can build."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def load_torchvision(source: str, weights: str | None, device: "torch.device", seed: int) -> LoadedModel:
    """Build ``torchvision:ARCH`` with weights from a file, ``DEFAULT`` (torch.hub cache), or random.

    Raises
    ------
    ExplainError
        For an unknown architecture, weights that do not fit, or DEFAULT weights offline.
    """
    import torch
    import torchvision

    arch = source[len(TORCHVISION_PREFIX) :]
    from explain_cli.models.detectors import DETECTORS, load_detector  # detection task (issue 21)

    if arch in DETECTORS:
        return load_detector(source, weights, device, seed)
    from explain_cli.models.segmenters import SEGMENTERS, load_segmenter  # segmentation task (issue 22)

    if arch in SEGMENTERS:
        return load_segmenter(source, weights, device, seed)
    available = architectures() + sorted(DETECTORS) + sorted(SEGMENTERS)
    if arch not in available:
        raise unknown_name("torchvision architecture", arch, available,
                                   f"`explain info --models` lists all {len(available)}")
    try:
        default_weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, AttributeError):
        default_weights = None
    labels = (list(default_weights.meta.get("categories") or []) or None) if default_weights else None
    preprocess = _preprocess_from_weights(default_weights)
    chosen = choose_weights(arch, weights, default_weights)
    notes = [] if chosen.state is not None else [RANDOM_WEIGHTS_NOTE]
    classes = (head_width(chosen.state, _head_name(arch)) if chosen.from_file and chosen.state else None) or 1000
    if labels is not None and len(labels) != classes:
        labels = None  # a fine-tuned head: ImageNet names no longer apply
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random initialisation is reproducible from --seed
        module = torchvision.models.get_model(arch, weights=None, num_classes=classes)
    if chosen.state is not None:
        load_state_checked(module, chosen.state, arch, chosen.label)
    module.eval()
    return LoadedModel(
        module=module.to(device),
        source=source,
        kind="torchvision",
        sha256=chosen.sha256,
        weights=chosen.label,
        device=device,
        labels=labels,
        preprocess=preprocess,
        in_channels=3,
        notes=notes,
    )


def _head_name(arch: str) -> str | None:
    """The classifier's parameter prefix: the last layer whose output size is the 1000 classes.

    Built on the meta device, so nothing is allocated or initialised.
    """
    import torch
    import torchvision

    with torch.device("meta"):
        reference = torchvision.models.get_model(arch, weights=None)
    heads = [k for k, v in reference.state_dict().items() if k.endswith(".weight") and v.dim() >= 2 and v.shape[0] == 1000]
    return heads[-1].removesuffix(".weight") if heads else None


def _preprocess_from_weights(weights: object) -> Preprocess | None:
    """The transforms a torchvision weights enum declares (read from metadata; nothing is downloaded)."""
    if weights is None:
        return None
    try:
        t = weights.transforms()
        crop, resize = list(t.crop_size), list(t.resize_size)
        return Preprocess(
            "model",
            resize=int(resize[0]),
            crop=(int(crop[0]), int(crop[-1])),
            mean=tuple(float(v) for v in t.mean),
            std=tuple(float(v) for v in t.std),
            interpolation=t.interpolation.value,  # bicubic for e.g. EfficientNet-B2..B7
        )
    except (AttributeError, TypeError, IndexError):
        return Preprocess("model", resize=256, crop=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD)
