"""Images through Pillow: the size read from the header before decoding, every mode scaled by its real bit depth."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.errors import ExplainError, one_line
from explain_cli.fileio import read_error_reason
from explain_cli.inputs.limits import check_image_size

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage


def load_image(path: Path, channels: int, max_pixels: int) -> tuple["torch.Tensor", np.ndarray, str]:
    """An image file as (C, H, W) float32 pixels in [0, 1], its RGB picture and its Pillow mode as stored."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ExplainError(f"the model takes {channels}-channel input; images give 1 or 3, pass a .pt/.npy tensor")
    try:
        with warnings.catch_warnings():
            # Pillow warns about metadata it skipped (corrupt EXIF, odd palettes) and about sizes
            # our own limit, checked below from the header, already governs: the pixels are
            # decoded or an error is raised, and a warning would break the one-line output.
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                # Image.open reads only the header: check the size before any pixel is decoded.
                width, height = img.size
                check_image_size(path, height, width, max_pixels)
                img.load()
                return decode_image(img, path, channels)
    except UnidentifiedImageError:
        claimed = _claimed_format(path)
        if claimed:  # the signature says image, so the header after it is what is broken
            raise ExplainError(f"input {path} is a damaged {claimed} image: Pillow cannot read its header") from None
        raise ExplainError(
            f"input {path} is not an image Pillow can read; use PNG/JPEG/..., or .pt/.npy for tensors"
        ) from None
    except Image.DecompressionBombError as exc:
        # Only above 2x Pillow's own limit (about 179 megapixels), which no option here raises.
        raise ExplainError(f"input {path} is refused before decoding: {one_line(exc)} Downscale it") from None
    except MemoryError:
        raise ExplainError(f"input {path} does not fit in memory once decoded; downscale it") from None
    except OSError as exc:
        if exc.errno is not None:  # a real I/O failure (permission, disk), not a decoder complaint
            raise ExplainError(f"input {path} cannot be read: {read_error_reason(exc)}") from None
        raise ExplainError(f"input {path} is a damaged or truncated image: {one_line(exc)}") from None
    except (SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError, ZeroDivisionError) as exc:
        # Pillow's decoders report malformed headers with all of these.
        raise ExplainError(f"input {path} is a damaged image: {one_line(exc)}") from None


def decode_image(img: "PILImage.Image", path: Path | str, channels: int) -> tuple["torch.Tensor", np.ndarray, str]:
    """A decoded Pillow image (from a file, or a caller's) as (C, H, W) float32 pixels in [0, 1], its RGB
    picture and its mode: EXIF rotation applied, every mode scaled by its bit depth (:func:`image_to_float`)."""
    import torch
    from PIL import ImageOps

    if channels not in (1, 3):
        raise ExplainError(f"the model takes {channels}-channel input; images give 1 or 3, pass a .pt/.npy tensor")
    mode = img.mode
    # EXIF rotation can swap height and width; the limits were checked on the stored size.
    array = image_to_float(ImageOps.exif_transpose(img), path)
    rgb = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return torch.from_numpy(model_channels(array, channels)), rgb, mode


def model_channels(values: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, 1 or 3) float pixels as a ``channels``-channel model's (C, H, W) float32: luma for a grey
    model, grey repeated for a colour one (files and in-memory arrays alike)."""
    if channels == 1 and values.shape[2] != 1:
        values = _luma(values)[..., None]
    elif channels == 3 and values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return np.ascontiguousarray(values.transpose(2, 0, 1), dtype=np.float32)


#: File signatures of common image formats, to tell a damaged image from something else.
_SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"),
]


def _claimed_format(path: Path) -> str | None:
    """The image format a file's first bytes announce, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma, the weights Pillow's ``convert('L')`` uses, kept in float."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def alpha_over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite onto white: what a viewer shows, instead of undefined colour under alpha 0."""
    return colour * alpha + (1.0 - alpha)


def image_to_float(img: "PILImage.Image", path: Path | str = "image") -> np.ndarray:
    """Convert a decoded Pillow image to float32 in [0, 1], scaled by its real bit depth.

    Parameters
    ----------
    img : PIL.Image.Image
        Any Pillow mode: 1, L, LA, La, P, PA, RGB, RGBA, RGBa, RGBX, CMYK, YCbCr, LAB, HSV,
        I;16 (and I;16L/B/N), I, F.
    path : Path or str
        Named in error messages.

    Returns
    -------
    (H, W, 1) or (H, W, 3) ndarray of float32
        One channel for grey modes (1, L, LA, I;16*, I, F), three (RGB) for colour modes.
        Alpha is composited onto white.

    Raises
    ------
    ExplainError
        Integer images with negative values, float images outside [0, 1] and [0, 255], and
        modes Pillow cannot convert to RGB.

    Notes
    -----
    16-bit modes are divided by 65535. Mode ``I`` (32-bit integer) takes the bit depth the file
    declares (TIFF BitsPerSample); without one (16-bit PNG or PGM in older Pillow) it is 16-bit
    when every value fits, else 32-bit. Mode ``F`` is taken as [0, 1] when every value is in
    [0, 1], else as Pillow's 0-255 scale (what ``convert('F')`` of an 8-bit image gives).

    Examples
    --------
    >>> from PIL import Image
    >>> img = Image.new("I;16", (4, 4), 65535)
    >>> float(image_to_float(img).max())
    1.0
    """
    from PIL import Image

    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=np.float32)[..., None]
    if mode.startswith("I;16"):
        # np.asarray honours the byte order of I;16B, so the values are the stored ones.
        return (np.asarray(img).astype(np.float32) / 65535.0)[..., None]
    if mode in ("I", "I;32", "I;32S"):
        values = np.asarray(img)
        return (values.astype(np.float64) / _integer_full_scale(img, values, path)).astype(np.float32)[..., None]
    if mode == "F":
        return float_image(np.asarray(img, dtype=np.float32), path)[..., None]
    if mode == "L" and "transparency" not in img.info:
        return (np.asarray(img, dtype=np.float32) / 255.0)[..., None]
    if mode in ("L", "LA", "La"):
        # La is premultiplied and L may carry a transparent grey level: LA undoes both.
        la = np.asarray(img.convert("LA"), dtype=np.float32) / 255.0
        return alpha_over_white(la[..., :1], la[..., 1:])
    has_alpha = mode in ("RGBA", "RGBa", "PA") or (mode in ("P", "RGB") and "transparency" in img.info)
    if mode == "LAB":
        # Pillow stores a* and b* offset by 128 (what TIFF unpacking and getpixel use) but its
        # LAB -> RGB transform reads them as signed bytes, turning white into cyan; flip the
        # sign bit so the transform sees the values the file holds.
        lab = np.asarray(img).copy()
        lab[..., 1:] ^= 0x80
        img = Image.fromarray(lab, mode="LAB")
    try:
        if has_alpha:
            rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
            return alpha_over_white(rgba[..., :3], rgba[..., 3:])
        # 8-bit colour modes (RGB, RGBX, P, CMYK, YCbCr, LAB, HSV): Pillow's converters are exact.
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (ValueError, OSError) as exc:
        raise ExplainError(
            f"input {path} has image mode {mode}, which cannot be converted to RGB ({one_line(exc)}); "
            f"save it as PNG or TIFF in RGB or grey"
        ) from None


def _integer_full_scale(img: "PILImage.Image", values: np.ndarray, path: Path | str) -> float:
    """The value that means white for a 32-bit-integer image: 2^bits - 1 for its real bit depth."""
    if values.size and int(values.min()) < 0:
        raise ExplainError(
            f"input {path} is a signed-integer image with negative values (min {int(values.min())}); "
            f"save it as .npy to pass raw values, or rescale it to 0..65535"
        )
    bits = None
    tags = getattr(img, "tag_v2", None)  # TIFF: BitsPerSample (258) says what the file holds
    if tags is not None:
        declared = tags.get(258)
        if isinstance(declared, tuple):
            declared = declared[0] if declared else None
        if isinstance(declared, int) and 0 < declared <= 32:
            bits = declared
    if bits is None:
        bits = 16 if values.size == 0 or int(values.max()) <= 65535 else 32
    # Mode I is signed 32-bit, so 32-bit files reach at most 2^31 - 1.
    return float(2 ** min(bits, 31) - 1)


def float_image(values: np.ndarray, path: Path | str) -> np.ndarray:
    """Float pixels as [0, 1]: kept when in [0, 1], divided by 255 when in [0, 255], else refused."""
    if not np.isfinite(values).all():
        raise ExplainError(f"input {path} is a floating-point image with NaN or infinite values")
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        return values
    if lo >= 0.0 and hi <= 255.0:
        return values / 255.0
    raise ExplainError(
        f"input {path} is a floating-point image with values in [{lo:g}, {hi:g}], neither [0, 1] nor "
        f"[0, 255]; save it as .npy to pass raw values"
    )

