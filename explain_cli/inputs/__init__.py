"""Inputs: files (images, ``.pt``/``.npy`` tensors) and Python objects, as one :class:`LoadedInput`.

Hostile files are refused before they cost memory: image sizes are read from the header before
decoding, ``.npy`` shapes from the array header before any data is read, and ``.pt`` tensors are
memory-mapped and measured before they are converted (:mod:`~explain_cli.inputs.limits`).
:mod:`~explain_cli.inputs.images` and :mod:`~explain_cli.inputs.tensors` read files,
:mod:`~explain_cli.inputs.memory` adapts PIL images, arrays and tensors, and
:mod:`~explain_cli.inputs.maps` reads label maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.fileio import require_file, sha256_file

if TYPE_CHECKING:
    import torch

TENSOR_SUFFIXES = {".pt", ".pth", ".npy"}


@dataclass
class LoadedInput:
    """One input, as pixels for the model and as an RGB picture for the heatmap."""

    path: Path
    sha256: str
    kind: str  # 'image' or 'tensor'
    pixels: "torch.Tensor"  # (C, H, W) float32; images in [0, 1], tensors as stored
    display: np.ndarray  # (H, W, 3) uint8, what the PNG is drawn over
    source_mode: str | None = None  # images: Pillow mode as stored (e.g. 'I;16'); tensors: None

    @property
    def stem(self) -> str:
        return self.path.stem

    def describe(self) -> dict:
        c, h, w = self.pixels.shape
        return {"path": str(self.path), "sha256": self.sha256, "kind": self.kind, "size": [h, w], "channels": c}


def load_input(path: str | Path, *, channels: int | None = 3, max_pixels: int | None = None) -> LoadedInput:
    """Load an image or a tensor file.

    Parameters
    ----------
    path : str or Path
        PNG/JPEG/TIFF/... image, or a ``.pt``/``.npy`` tensor of shape (C,H,W), (H,W,C), (1,C,H,W) or (H,W).
    channels : int or None
        Channels the model takes, for images (1 = grayscale, 3 = RGB). Tensors are never converted.
    max_pixels : int or None
        Largest height × width accepted, checked before decoding; None takes
        :data:`~explain_cli.inputs.limits.MAX_PIXELS`.

    Returns
    -------
    LoadedInput
        Images scaled to [0, 1] by their real bit depth (8-bit, 16-bit, 32-bit integer, float).

    Raises
    ------
    ExplainError
        Missing, empty, unreadable or damaged files; images or tensors over the pixel limit or
        smaller than :data:`~explain_cli.inputs.limits.MIN_SIDE`; pickled objects; tensors of the wrong shape or dtype.
    """
    from explain_cli.inputs.images import load_image
    from explain_cli.inputs.limits import check_max_pixels
    from explain_cli.inputs.tensors import display_from_tensor, load_tensor

    path = Path(path)
    limit = check_max_pixels(max_pixels)
    require_file(path, "input", "pass image or tensor files (a shell glob works: DIR/*.png)")
    mode = None
    if path.suffix.lower() in TENSOR_SUFFIXES:
        pixels = load_tensor(path, limit)
        kind = "tensor"
        display = display_from_tensor(pixels)
    else:
        pixels, display, mode = load_image(path, channels or 3, limit)
        kind = "image"
    return LoadedInput(path=path, sha256=sha256_file(path), kind=kind, pixels=pixels, display=display,
                       source_mode=mode)

