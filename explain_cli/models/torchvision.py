"""``torchvision:ARCH``: an architecture from torchvision plus weights (file, DEFAULT, or random)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from explain_cli.errors import ExplainError, OptionError, one_line
from explain_cli.fileio import sha256_file
from explain_cli.models.base import TORCHVISION_PREFIX, LoadedModel
from explain_cli.models.weights import download_weights, head_width, read_state_dict
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
        from explain_cli.errors import suggest

        hint = suggest(arch, available, n=3)
        hint = f"{hint} " if hint else ""
        raise ExplainError(
            f"unknown torchvision architecture {arch!r}; {hint}`explain info --models` lists all {len(available)}"
        )
    try:
        default_weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, AttributeError):
        default_weights = None
    labels = (list(default_weights.meta.get("categories") or []) or None) if default_weights else None
    preprocess = _preprocess_from_weights(default_weights)

    sha, notes = None, []
    if weights is None:
        # Random initialisation, reproducible from --seed; useful for benchmarks and tests only.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = torchvision.models.get_model(arch, weights=None)
        notes.append(RANDOM_WEIGHTS_NOTE)
    elif weights.upper() == "DEFAULT":
        if default_weights is None:
            raise OptionError("weights", f"DEFAULT: torchvision has no pretrained weights for {arch}; pass `weights` FILE")
        module = torchvision.models.get_model(arch, weights=None)
        module.load_state_dict(download_weights(default_weights, arch))
        weights = f"DEFAULT ({default_weights})"
    else:
        path = Path(weights)
        state = read_state_dict(path)
        classes = head_width(state, _head_name(arch)) or 1000
        module = torchvision.models.get_model(arch, weights=None, num_classes=classes)
        if labels is not None and len(labels) != classes:
            labels = None  # a fine-tuned head: ImageNet names no longer apply
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            problem = one_line(str(exc))
            raise ExplainError(
                f"weights {path} do not fit torchvision:{arch}: {problem[:300]}; check the architecture name"
            ) from None
        sha = sha256_file(path)
    module.eval()
    return LoadedModel(
        module=module.to(device),
        source=source,
        kind="torchvision",
        sha256=sha,
        weights=weights,
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
