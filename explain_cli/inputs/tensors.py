"""Tensors from ``.pt`` (weights_only, memory-mapped and measured first) and ``.npy`` (no pickles, header read first)."""

from __future__ import annotations

import math
import os
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.errors import ExplainError, one_line
from explain_cli.fileio import read_error_reason
from explain_cli.inputs.limits import MIN_SIDE, check_tensor_shape

if TYPE_CHECKING:
    import torch

#: Longest .npy header accepted, as numpy's own loader (longer ones are not from np.save).
_NPY_MAX_HEADER = 10_000


def load_tensor(path: Path, max_pixels: int) -> "torch.Tensor":
    """A ``.npy`` or ``.pt`` tensor file as (C, H, W) float32, refused before its data costs memory when too large."""
    if path.suffix.lower() == ".npy":
        tensor = _load_npy(path, max_pixels)
    else:
        tensor = _load_pt(path, max_pixels)
    return canonical_chw(tensor, path)


def read_npy_header(path: Path, what: str = "input") -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Read a ``.npy`` header without reading the data; errors call the file ``what``.

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
                raise ExplainError(f"{what} {path} is not a .npy file (no numpy magic string); save it with numpy.save") from None
            # Read the header length ourselves: numpy's complaint about long headers talks of
            # pickles, which would mislead (this is a forged or foreign header, not a pickle).
            size_format = "<H" if version == (1, 0) else "<I"
            raw = fh.read(struct.calcsize(size_format))
            if len(raw) != struct.calcsize(size_format):
                raise ExplainError(f"{what} {path} is a truncated .npy file (its header is cut off)")
            (header_len,) = struct.unpack(size_format, raw)
            if header_len > _NPY_MAX_HEADER:
                raise ExplainError(
                    f"{what} {path} has an over-long .npy header ({header_len:,} bytes, numpy writes under "
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
                raise ExplainError(f"{what} {path} has a damaged .npy header: {one_line(exc)}") from None
            offset = fh.tell()
    except ExplainError:
        raise
    except OSError as exc:
        raise ExplainError(f"{what} {path} cannot be read: {read_error_reason(exc)}") from None
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


def canonical_chw(tensor: "torch.Tensor", path: Path) -> "torch.Tensor":
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


def display_from_tensor(pixels: "torch.Tensor") -> np.ndarray:
    """An RGB picture of a tensor: its 3 channels, or the channel mean in grey, min-max scaled."""
    array = pixels.numpy()
    picture = array if array.shape[0] == 3 else np.repeat(array.mean(axis=0, keepdims=True), 3, axis=0)
    lo, hi = float(picture.min()), float(picture.max())
    scaled = (picture - lo) / (hi - lo) if hi > lo else np.zeros_like(picture)
    return (scaled.transpose(1, 2, 0) * 255).round().astype(np.uint8)
