"""Input loading: images through Pillow, tensors from .pt (weights_only) and .npy (no pickles).

Hostile files are refused before they cost memory: image sizes are read from the header before
decoding, ``.npy`` shapes from the array header before any data is read, and ``.pt`` tensors are
memory-mapped and measured before they are converted.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.errors import ExplainError, one_line
from explain_cli.fileio import read_error_reason, require_file, sha256_file

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage

TENSOR_SUFFIXES = {".pt", ".pth", ".npy"}

#: Default limit on an input's height × width. 40 megapixels decode to 480 MB of float32 RGB;
#: the explanation's perturbation batches multiply that, so anything larger is refused before
#: decoding (a 420 kB PNG can declare 12,000 × 12,000). Raised with ``max_pixels``.
MAX_PIXELS = 40_000_000
#: Option that raises the pixel limit, as error messages name it.
MAX_PIXELS_OPTION = "--max-pixels"
#: Smallest height and width accepted. Below 4 pixels a side the segmenters' smoothing (sigma 1,
#: quickshift's kernel 4) covers the whole image, superpixels are single pixels or the whole
#: picture, and the explanation says nothing; a 1×N "image" is almost always a broken export.
MIN_SIDE = 4
#: A tensor may have several channels: C·H·W is bounded by this many times the pixel limit.
_MAX_CHANNELS_AT_LIMIT = 4
#: Longest .npy header accepted, as numpy's own loader (longer ones are not from np.save).
_NPY_MAX_HEADER = 10_000


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
        Largest height × width accepted, checked before decoding; None takes `MAX_PIXELS`.

    Returns
    -------
    LoadedInput
        Images scaled to [0, 1] by their real bit depth (8-bit, 16-bit, 32-bit integer, float).

    Raises
    ------
    ExplainError
        Missing, empty, unreadable or damaged files; images or tensors over the pixel limit or
        smaller than `MIN_SIDE`; pickled objects; tensors of the wrong shape or dtype.
    """
    path = Path(path)
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    if limit < MIN_SIDE * MIN_SIDE:
        raise ExplainError(f"{MAX_PIXELS_OPTION} must be at least {MIN_SIDE * MIN_SIDE}, got {max_pixels}")
    require_file(path, "input", "pass image or tensor files (a shell glob works: DIR/*.png)")
    mode = None
    if path.suffix.lower() in TENSOR_SUFFIXES:
        pixels = _load_tensor(path, limit)
        kind = "tensor"
        display = _display_from_tensor(pixels)
    else:
        pixels, display, mode = _load_image(path, channels or 3, limit)
        kind = "image"
    return LoadedInput(path=path, sha256=sha256_file(path), kind=kind, pixels=pixels, display=display,
                       source_mode=mode)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def _too_many_pixels(path: Path, what: str, height: int, width: int, limit: int) -> ExplainError:
    return ExplainError(
        f"input {path} {what} {width}×{height} = {height * width / 1e6:.1f} megapixels, over the limit of "
        f"{limit / 1e6:g} megapixels; downscale it, or raise the limit with {MAX_PIXELS_OPTION}"
    )


def check_image_size(path: Path, height: int, width: int, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse sizes under `MIN_SIDE` a side or over ``max_pixels``, with one line that says the fix."""
    if height * width > max_pixels:
        raise _too_many_pixels(path, "is", height, width, max_pixels)
    if min(height, width) < MIN_SIDE:
        raise ExplainError(
            f"input {path} is {width}×{height} pixels; height and width must be at least {MIN_SIDE} "
            f"for superpixels to mean anything — pass a larger image"
        )


def _load_image(path: Path, channels: int, max_pixels: int) -> tuple["torch.Tensor", np.ndarray, str]:
    import torch
    from PIL import Image, ImageOps, UnidentifiedImageError

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
                mode = img.mode
                img = ImageOps.exif_transpose(img)
                array = image_to_float(img, path)
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
    # EXIF rotation can swap height and width; the limits were checked on the stored size.
    rgb = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    if channels == 1:
        grey = array[..., 0] if array.shape[2] == 1 else _luma(array)
        chw = grey[None]
    else:
        chw = (np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array).transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32)), rgb, mode


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


def _alpha_over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
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
        return _float_image(np.asarray(img, dtype=np.float32), path)[..., None]
    if mode == "L" and "transparency" not in img.info:
        return (np.asarray(img, dtype=np.float32) / 255.0)[..., None]
    if mode in ("L", "LA", "La"):
        # La is premultiplied and L may carry a transparent grey level: LA undoes both.
        la = np.asarray(img.convert("LA"), dtype=np.float32) / 255.0
        return _alpha_over_white(la[..., :1], la[..., 1:])
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
            return _alpha_over_white(rgba[..., :3], rgba[..., 3:])
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


def _float_image(values: np.ndarray, path: Path | str) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------------------------


def infer_chw(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(C, H, W) of a tensor of ``shape`` under the accepted layouts, or None if none applies.

    (H,W) -> (1,H,W); (C,H,W) as is, unless the last axis is clearly the small channel axis
    ((H,W,C) with C <= 4 < H); (1,C,H,W) -> (C,H,W).
    """
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    if len(shape) == 3:
        if shape[0] > 4 and shape[-1] <= 4:
            return (shape[2], shape[0], shape[1])
        return (shape[0], shape[1], shape[2])
    return None


def check_tensor_shape(path: Path, shape: tuple[int, ...], max_pixels: int = MAX_PIXELS) -> None:
    """Refuse a declared tensor shape before its data is read: bad layout, too large, too small.

    H·W must be at most ``max_pixels`` and C·H·W at most 4·``max_pixels`` (so that many
    channels cannot slip past the limit); H and W at least `MIN_SIDE`.
    """
    shape = tuple(int(s) for s in shape)
    chw = infer_chw(shape)
    if chw is None:
        raise ExplainError(f"input {path} has shape {list(shape)}; expected (C,H,W), (H,W,C), (1,C,H,W) or (H,W)")
    c, h, w = chw
    # Python ints: a forged shape cannot overflow this product.
    if h * w > max_pixels:
        raise _too_many_pixels(path, "declares", h, w, max_pixels)
    if c * h * w > _MAX_CHANNELS_AT_LIMIT * max_pixels:
        raise ExplainError(
            f"input {path} declares shape {list(shape)}: {c * h * w:,} values, over {_MAX_CHANNELS_AT_LIMIT}× "
            f"the pixel limit; crop it, or raise the limit with {MAX_PIXELS_OPTION}"
        )
    if min(h, w) < MIN_SIDE:
        raise ExplainError(
            f"input {path} has shape {list(shape)}: height and width must be at least {MIN_SIDE}"
        )


def _load_tensor(path: Path, max_pixels: int) -> "torch.Tensor":
    if path.suffix.lower() == ".npy":
        tensor = _load_npy(path, max_pixels)
    else:
        tensor = _load_pt(path, max_pixels)
    return _canonical_chw(tensor, path)


def read_npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Read a ``.npy`` header without reading the data.

    Returns
    -------
    shape : tuple of int
    fortran_order : bool
    dtype : numpy.dtype
    data_offset : int
        Where the array data starts in the file.

    Raises
    ------
    ExplainError
        Not a .npy file, an over-long header (numpy's limit: 10,000 bytes), or a header numpy
        cannot parse.
    """
    from numpy.lib import format as npy_format

    try:
        with open(path, "rb") as fh:
            try:
                version = npy_format.read_magic(fh)
            except ValueError:
                raise ExplainError(f"input {path} is not a .npy file (no numpy magic string); save it with numpy.save") from None
            # Read the header length ourselves: numpy's complaint about long headers talks of
            # pickles, which would mislead (this is a forged or foreign header, not a pickle).
            size_format = "<H" if version == (1, 0) else "<I"
            raw = fh.read(struct.calcsize(size_format))
            if len(raw) != struct.calcsize(size_format):
                raise ExplainError(f"input {path} is a truncated .npy file (its header is cut off)")
            (header_len,) = struct.unpack(size_format, raw)
            if header_len > _NPY_MAX_HEADER:
                raise ExplainError(
                    f"input {path} has an over-long .npy header ({header_len:,} bytes, numpy writes under "
                    f"{_NPY_MAX_HEADER:,}); it was not written by numpy.save — re-save the array"
                )
            fh.seek(-len(raw), os.SEEK_CUR)
            # Version 3.0 differs from 2.0 only in allowing UTF-8 field names, which matter only to
            # structured dtypes, refused below.
            reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            try:
                shape, fortran_order, dtype = reader(fh, max_header_size=_NPY_MAX_HEADER)
            except OSError:
                raise
            except Exception as exc:  # noqa: BLE001
                # The header is a Python literal parsed by ast.literal_eval: a forged one can raise
                # ValueError, SyntaxError, tokenize.TokenError, MemoryError, RecursionError, ...
                raise ExplainError(f"input {path} has a damaged .npy header: {one_line(exc)}") from None
            offset = fh.tell()
    except ExplainError:
        raise
    except OSError as exc:
        raise ExplainError(f"input {path} cannot be read: {read_error_reason(exc)}") from None
    return tuple(int(s) for s in shape), bool(fortran_order), dtype, offset


def _load_npy(path: Path, max_pixels: int) -> "torch.Tensor":
    import torch

    shape, fortran_order, dtype, offset = read_npy_header(path)
    if dtype.hasobject:
        raise ExplainError(f"input {path} holds Python objects (a pickle); save a numeric array")
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise ExplainError(f"input {path} must hold a numeric array, not dtype {dtype}; save a float or integer array")
    check_tensor_shape(path, shape, max_pixels)
    needed = math.prod(shape) * dtype.itemsize
    available = os.path.getsize(path) - offset
    if needed > available:
        raise ExplainError(
            f"input {path} declares shape {list(shape)} of {dtype} ({needed:,} bytes) but holds only "
            f"{max(available, 0):,} bytes of data; the file is truncated or its header is wrong"
        )
    try:
        array = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise ExplainError(f"input {path} cannot be read: {read_error_reason(exc)}") from None
    except (ValueError, EOFError) as exc:
        raise ExplainError(f"input {path} is not a valid .npy file: {one_line(exc)}") from None
    if (array.dtype.kind == "u" and array.dtype.itemsize > 1) or (array.dtype.kind == "f" and array.dtype.itemsize > 8):
        # torch has no long double and few operations on uint16/32/64; the values are taken as
        # stored and end as float32 anyway, so convert now (this also fixes the byte order).
        array = array.astype(np.float32)
    elif not array.dtype.isnative:
        # torch.from_numpy refuses big-endian arrays; the values are the same in native order.
        array = array.astype(array.dtype.newbyteorder("="))
    return torch.from_numpy(np.ascontiguousarray(array))


def _load_pt(path: Path, max_pixels: int) -> "torch.Tensor":
    import pickle

    import torch

    refused = (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError,
               KeyError, IndexError, struct.error)
    try:
        with warnings.catch_warnings():
            # torch warns while rebuilding some tensors (sparse validation, deprecated storage and
            # quantized types); what the file holds is checked below, and the warnings would
            # break the one-line output.
            warnings.simplefilter("ignore")
            try:
                # mmap: storages stay on disk until used, so a large tensor is measured before
                # it costs memory.
                obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc) and "zipfile" not in str(exc):
                    raise
                # Legacy (pre-zip) torch.save format cannot be memory-mapped; its storages are
                # read whole, bounded by the file's size.
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except OSError as exc:
        if exc.errno is not None:
            raise ExplainError(f"input {path} cannot be read: {read_error_reason(exc)}") from None
        raise ExplainError(f"input {path} is not a valid tensor file: {one_line(exc)}") from None
    except MemoryError:
        raise ExplainError(f"input {path} declares a tensor too large to load; crop or downscale it") from None
    except refused:
        raise ExplainError(
            f"input {path} is not a tensor saved with torch.save(tensor, PATH) (pickled objects are refused)"
        ) from None
    if not isinstance(obj, torch.Tensor):
        raise ExplainError(f"input {path} holds a {type(obj).__name__}; save a single tensor")
    tensor = obj.detach()  # a requires_grad tensor (or a Parameter) is only data here
    if tensor.is_quantized:
        raise ExplainError(f"input {path} holds a quantized tensor; save tensor.dequantize()")
    if tensor.is_meta:
        raise ExplainError(f"input {path} holds a meta tensor (a shape without data); save a real tensor")
    check_tensor_shape(path, tuple(tensor.shape), max_pixels)
    if tensor.layout != torch.strided:
        # Sparse (COO, CSR, ...): the shape is checked above, so densifying is bounded.
        try:
            tensor = tensor.to_dense()
        except RuntimeError as exc:
            raise ExplainError(f"input {path} holds a {tensor.layout} tensor that cannot be made dense: {one_line(exc)}") from None
    return tensor


def _canonical_chw(tensor: "torch.Tensor", path: Path) -> "torch.Tensor":
    """Bring a tensor to (C, H, W) float32, accepting (H,W), (C,H,W), (H,W,C) and (1,C,H,W)."""
    import torch

    shape = tuple(tensor.shape)
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ExplainError(f"input {path} has dtype {tensor.dtype}; save a real-valued tensor")
    scale = 255.0 if tensor.dtype == torch.uint8 else 1.0
    # .to() copies, so neither the caller's tensor nor a memory-mapped file is ever modified.
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
    if min(t.shape[1:]) < MIN_SIDE:
        raise ExplainError(f"input {path} has shape {list(shape)}: height and width must be at least {MIN_SIDE}")
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

