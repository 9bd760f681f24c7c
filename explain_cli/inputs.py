"""Input loading: images through Pillow, tensors from .pt (weights_only) and .npy (no pickles)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.errors import ExplainError
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

    @property
    def stem(self) -> str:
        return self.path.stem

    def describe(self) -> dict:
        c, h, w = self.pixels.shape
        return {"path": str(self.path), "sha256": self.sha256, "kind": self.kind, "size": [h, w], "channels": c}


def load_input(path: str | Path, *, channels: int | None = 3) -> LoadedInput:
    """Load an image or a tensor file.

    Parameters
    ----------
    path : str or Path
        PNG/JPEG/... image, or a ``.pt``/``.npy`` tensor of shape (C,H,W), (H,W,C), (1,C,H,W) or (H,W).
    channels : int or None
        Channels the model takes, for images (1 = grayscale, 3 = RGB). Tensors are never converted.

    Raises
    ------
    ExplainError
        Missing, empty or unreadable files, pickled objects, and tensors of the wrong shape.
    """
    path = Path(path)
    require_file(path, "input", "pass image or tensor files (a shell glob works: DIR/*.png)")
    if path.suffix.lower() in TENSOR_SUFFIXES:
        pixels = _load_tensor(path)
        kind = "tensor"
        display = _display_from_tensor(pixels)
    else:
        pixels, display = _load_image(path, channels or 3)
        kind = "image"
    return LoadedInput(path=path, sha256=sha256_file(path), kind=kind, pixels=pixels, display=display)


def _load_image(path: Path, channels: int) -> tuple["torch.Tensor", np.ndarray]:
    import torch
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
    except UnidentifiedImageError:
        raise ExplainError(
            f"input {path} is not an image Pillow can read; use PNG/JPEG/..., or .pt/.npy for tensors"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ExplainError(f"input {path} is a damaged image: {exc}") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparency onto white: what a viewer shows, instead of undefined colour under alpha 0.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if channels == 1:
        array = np.asarray(img.convert("L"), dtype=np.float32)[None] / 255.0
    elif channels == 3:
        array = rgb.astype(np.float32).transpose(2, 0, 1) / 255.0
    else:
        raise ExplainError(f"the model takes {channels}-channel input; images give 1 or 3, pass a .pt/.npy tensor")
    return torch.from_numpy(np.ascontiguousarray(array)), rgb


def _load_tensor(path: Path) -> "torch.Tensor":
    import pickle

    import torch

    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                raise ExplainError(f"input {path} holds Python objects (a pickle); save a numeric array") from None
            raise ExplainError(f"input {path} is not a valid .npy file: {exc}") from None
        except (OSError, EOFError) as exc:
            raise ExplainError(f"input {path} is not a valid .npy file: {exc}") from None
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            raise ExplainError(f"input {path} must hold a numeric array, not {getattr(array, 'dtype', type(array))}")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError):
            raise ExplainError(
                f"input {path} is not a tensor saved with torch.save(tensor, PATH) (pickled objects are refused)"
            ) from None
        if not isinstance(obj, torch.Tensor):
            raise ExplainError(f"input {path} holds a {type(obj).__name__}; save a single tensor")
        tensor = obj
    return _canonical_chw(tensor, path)


def _canonical_chw(tensor: "torch.Tensor", path: Path) -> "torch.Tensor":
    """Bring a tensor to (C, H, W) float32, accepting (H,W), (C,H,W), (H,W,C) and (1,C,H,W)."""
    import torch

    shape = tuple(tensor.shape)
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ExplainError(f"input {path} has dtype {tensor.dtype}; save a real-valued tensor")
    scale = 255.0 if tensor.dtype == torch.uint8 else 1.0
    t = tensor.to(torch.float32) / scale
    if t.dim() == 4 and shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    elif t.dim() == 3:
        # Channels first unless the last axis is clearly the small channel axis.
        if t.shape[0] > 4 and t.shape[-1] <= 4:
            t = t.permute(2, 0, 1)
    else:
        raise ExplainError(
            f"input {path} has shape {list(shape)}; expected (C,H,W), (H,W,C), (1,C,H,W) or (H,W)"
        )
    if min(t.shape[1:]) < 2:
        raise ExplainError(f"input {path} has shape {list(shape)}: height and width must be at least 2")
    if not torch.isfinite(t).all():
        raise ExplainError(f"input {path} contains NaN or infinite values")
    return t.contiguous()


def _display_from_tensor(pixels: "torch.Tensor") -> np.ndarray:
    """An RGB picture of a tensor: its 3 channels, or the channel mean in grey, min-max scaled."""
    array = pixels.numpy()
    picture = array if array.shape[0] == 3 else np.repeat(array.mean(axis=0, keepdims=True), 3, axis=0)
    lo, hi = float(picture.min()), float(picture.max())
    scaled = (picture - lo) / (hi - lo) if hi > lo else np.zeros_like(picture)
    return (scaled.transpose(1, 2, 0) * 255).round().astype(np.uint8)

