"""Recognising a live model's classifier head: ImageNet's class names for a torchvision or timm module.

A module built by ``torchvision.models`` or ``timm`` whose last layer has 1000 outputs is an
ImageNet-1k classifier in the standard class order (both libraries' conventions), so its
explanations can be captioned ``tabby (281)`` rather than ``class 281``. Anything else gets no
names: a guess would mislabel a fine-tuned head.
"""

from __future__ import annotations

from typing import Any

#: The libraries whose 1000-way classifiers use ImageNet-1k's class order.
IMAGENET_LIBRARIES = ("torchvision.models", "timm.")
IMAGENET_CLASSES = 1000


def head_width(module: Any) -> int | None:
    """Outputs of the module's last linear (or 1x1 convolution) layer, in registration order; None if it has none."""
    import torch

    width = None
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear):
            width = layer.out_features
        elif isinstance(layer, torch.nn.Conv2d) and layer.kernel_size == (1, 1):
            width = layer.out_channels  # squeezenet's classifier
    return width


def imagenet_head(module: Any) -> str | None:
    """How the JSON names the labels of a torchvision/timm module with a 1000-way head (None: not one)."""
    library = type(module).__module__
    if not library.startswith(IMAGENET_LIBRARIES) or head_width(module) != IMAGENET_CLASSES:
        return None
    name = "torchvision" if library.startswith("torchvision") else "timm"
    return f"imagenet (a {name} {type(module).__name__} with a {IMAGENET_CLASSES}-class head)"
