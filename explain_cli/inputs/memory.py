"""Inputs the caller already holds: PIL images, numpy arrays and tensors, beside paths, as LoadedInputs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from explain_cli.errors import ExplainError, one_line
from explain_cli.inputs import LoadedInput, load_input
from explain_cli.inputs.limits import MAX_PIXELS, check_image_size, check_tensor_shape


def as_inputs(inputs: Any, *, channels: int = 3, max_pixels: int | None = None) -> list[LoadedInput]:
    """LoadedInputs from paths, PIL images, numpy arrays (HWC/HW images) or tensors (CHW or NCHW).

    A list of LoadedInputs is taken as it is. In-memory inputs meet the files' rules: the
    pixel limit and the smallest side, a PIL image decoded as an image file is (bit depth,
    transparency, EXIF rotation), an array as an image of its dtype (:func:`from_memory`).
    """
    import torch

    from explain_cli.inputs.limits import check_max_pixels

    if is_loaded(inputs):
        return list(inputs)
    limit = check_max_pixels(max_pixels)
    if isinstance(inputs, (str, Path)) or not isinstance(inputs, (list, tuple)):
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            inputs = list(inputs)
        else:
            inputs = [inputs]
    loaded = []
    for i, item in enumerate(inputs):
        if isinstance(item, (str, Path)):
            loaded.append(load_input(item, channels=channels, max_pixels=limit))
        else:
            loaded.append(from_memory(item, f"input{i}", channels, max_pixels=limit))
    if not loaded:
        raise ExplainError("no inputs given; pass one or more images, arrays, tensors or paths")
    return loaded


def is_loaded(inputs: Any) -> bool:
    """True for a non-empty list of LoadedInputs (nothing left to load)."""
    return isinstance(inputs, (list, tuple)) and bool(inputs) and all(isinstance(i, LoadedInput) for i in inputs)


def from_memory(obj: Any, name: str, channels: int, *, max_pixels: int = MAX_PIXELS) -> LoadedInput:
    """One PIL image, numpy array or tensor as a LoadedInput named ``name``, by the file loaders' rules.

    A PIL image is decoded as an image file is (:func:`~explain_cli.inputs.images.decode_image`).
    A numpy (H, W[, C]) array is an image whose dtype says its scale: bool 0/1, uint8 /255,
    uint16 /65535, other non-negative integers /255 when every value fits 8 bits (else /65535 when
    they fit 16), floats as float images ([0, 1] as they are, [0, 255] /255). Tensors are
    model input as they are (uint8 /255), as ``.pt`` files. Refused, in one line: sizes over
    ``max_pixels`` or under the smallest side, meta tensors, and values no scale explains.
    """
    import torch
    from PIL import Image

    from explain_cli.inputs.images import decode_image
    from explain_cli.inputs.tensors import canonical_chw, display_from_tensor

    if isinstance(obj, Image.Image):
        check_image_size(Path(name), obj.size[1], obj.size[0], max_pixels)
        try:
            pixels, display, _ = decode_image(obj, name, channels)
        except (ValueError, OSError) as exc:
            raise ExplainError(f"{name}: the PIL image cannot be decoded: {one_line(exc)}") from None
        kind = "image"
    elif isinstance(obj, np.ndarray):
        pixels, display = _from_array(obj, name, channels, max_pixels)
        kind = "image"
    elif isinstance(obj, torch.Tensor):
        if obj.is_meta:
            raise ExplainError(f"{name} is a meta tensor (a shape without data); pass a tensor with values")
        check_tensor_shape(Path(name), tuple(obj.shape), max_pixels)
        pixels = canonical_chw(obj.detach().cpu(), Path(name))
        display = display_from_tensor(pixels)
        kind = "tensor"
    else:
        raise ExplainError(f"{name}: inputs must be paths, PIL images, numpy arrays or tensors, not {type(obj).__name__}")
    digest = hashlib.sha256(pixels.numpy().tobytes()).hexdigest()
    return LoadedInput(path=Path(name), sha256=digest, kind=kind, pixels=pixels, display=display)


def _from_array(obj: np.ndarray, name: str, channels: int, max_pixels: int) -> tuple["torch.Tensor", np.ndarray]:
    """(C, H, W) float32 pixels in [0, 1] and the RGB picture of an (H, W[, C]) image array."""
    import torch

    from explain_cli.inputs.images import alpha_over_white, float_image, model_channels

    array = obj
    if array.dtype.kind not in "biuf":
        raise ExplainError(f"{name}: a numpy image must hold numbers (uint8, uint16 or float), not {array.dtype}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ExplainError(f"{name}: a numpy image must be (H, W) or (H, W, C) with C 1, 3 or 4, got shape "
                           f"{list(obj.shape)}; pass a tensor for other layouts")
    check_image_size(Path(name), array.shape[0], array.shape[1], max_pixels)
    if array.dtype.kind == "b":  # black and white, as a mode-1 image
        values = array.astype(np.float32)
    elif array.dtype.kind == "f":
        values = float_image(array.astype(np.float32), name)  # the float-image rule: [0, 1] or [0, 255]
    else:
        lo, hi = int(array.min()), int(array.max())
        if lo < 0:
            raise ExplainError(f"{name}: a numpy image with negative values (min {lo}); pass a tensor for raw values")
        full = 255 if array.dtype == np.uint8 else 65535 if array.dtype == np.uint16 else 255 if hi <= 255 else 65535
        if hi > full:
            raise ExplainError(f"{name}: a {array.dtype} image with values up to {hi}, beyond 16 bits; rescale it "
                               "to 0..65535 or pass a tensor for raw values")
        values = array.astype(np.float32) / full
    if values.shape[2] == 4:  # RGBA: composited onto white, as an RGBA file is
        values = alpha_over_white(values[..., :3], values[..., 3:])
    chw = model_channels(values, channels)
    picture = chw.transpose(1, 2, 0)  # the picture is what the model sees: grey for a grey model
    picture = picture if picture.shape[2] == 3 else np.repeat(picture, 3, axis=2)
    return torch.from_numpy(chw), (np.clip(picture, 0.0, 1.0) * 255).round().astype(np.uint8)
