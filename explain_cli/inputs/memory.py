"""Inputs the caller already holds: PIL images, numpy arrays and tensors, beside paths, as LoadedInputs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from explain_cli.errors import ExplainError
from explain_cli.inputs import LoadedInput, load_input


def as_inputs(inputs: Any, *, channels: int = 3, max_pixels: int | None = None) -> list[LoadedInput]:
    """LoadedInputs from paths, PIL images, numpy arrays (HWC/HW images) or tensors (CHW or NCHW).

    A list of LoadedInputs is taken as it is.
    """
    import torch

    if is_loaded(inputs):
        return list(inputs)
    if isinstance(inputs, (str, Path)) or not isinstance(inputs, (list, tuple)):
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            inputs = list(inputs)
        else:
            inputs = [inputs]
    loaded = []
    for i, item in enumerate(inputs):
        if isinstance(item, (str, Path)):
            loaded.append(load_input(item, channels=channels, max_pixels=max_pixels))
        else:
            loaded.append(from_memory(item, f"input{i}", channels))
    if not loaded:
        raise ExplainError("no inputs given; pass one or more images, arrays, tensors or paths")
    return loaded


def is_loaded(inputs: Any) -> bool:
    """True for a non-empty list of LoadedInputs (nothing left to load)."""
    return isinstance(inputs, (list, tuple)) and bool(inputs) and all(isinstance(i, LoadedInput) for i in inputs)


def from_memory(obj: Any, name: str, channels: int) -> LoadedInput:
    """One PIL image, numpy array or tensor as a LoadedInput named ``name``, by the file loaders' rules."""
    import torch
    from PIL import Image

    from explain_cli.inputs.tensors import canonical_chw, display_from_tensor

    if isinstance(obj, Image.Image):
        obj = np.asarray(obj.convert("RGB" if channels == 3 else "L"))
    if isinstance(obj, np.ndarray):
        array = obj
        if array.dtype.kind not in "biuf":
            raise ExplainError(f"{name}: a numpy array must be numeric, not {array.dtype}")
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise ExplainError(f"{name}: a numpy image must be (H, W) or (H, W, C), got shape {list(obj.shape)}")
        scale = 255.0 if array.dtype == np.uint8 else 65535.0 if array.dtype == np.uint16 else 1.0
        pixels = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32) / scale)
        if pixels.shape[0] == 1 and channels == 3:
            pixels = pixels.expand(3, -1, -1).contiguous()
        if not bool(torch.isfinite(pixels).all()):
            raise ExplainError(f"{name}: the array contains NaN or infinite values")
        display = (pixels.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        if display.shape[-1] == 1:
            display = np.repeat(display, 3, axis=-1)
        kind = "image"
    elif isinstance(obj, torch.Tensor):
        pixels = canonical_chw(obj.detach().cpu(), Path(name))
        display = display_from_tensor(pixels)
        kind = "tensor"
    else:
        raise ExplainError(f"{name}: inputs must be paths, PIL images, numpy arrays or tensors, not {type(obj).__name__}")
    digest = hashlib.sha256(pixels.numpy().tobytes()).hexdigest()
    return LoadedInput(path=Path(name), sha256=digest, kind=kind, pixels=pixels, display=display)
