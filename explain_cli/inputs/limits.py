"""The size limits every input meets before it costs memory: pixels, channels, smallest side."""

from __future__ import annotations

from pathlib import Path

from explain_cli.errors import ExplainError, OptionError

#: Default limit on an input's height × width. 40 megapixels decode to 480 MB of float32 RGB;
#: the explanation's perturbation batches multiply that, so anything larger is refused before
#: decoding (a 420 kB PNG can declare 12,000 × 12,000). Raised with ``max_pixels``.
MAX_PIXELS = 40_000_000
#: Smallest height and width accepted. Below 4 pixels a side the segmenters' smoothing (sigma 1,
#: quickshift's kernel 4) covers the whole image, superpixels are single pixels or the whole
#: picture, and the explanation says nothing; a 1×N "image" is almost always a broken export.
MIN_SIDE = 4
#: A tensor may have several channels: C·H·W is bounded by this many times the pixel limit.
_MAX_CHANNELS_AT_LIMIT = 4


def check_max_pixels(max_pixels: int | None) -> int:
    """The pixel limit to apply: ``max_pixels``, or `MAX_PIXELS` when None; at least `MIN_SIDE`²."""
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    if limit < MIN_SIDE * MIN_SIDE:
        raise OptionError("max_pixels", f"must be at least {MIN_SIDE * MIN_SIDE}, got {max_pixels}")
    return limit


def too_many_pixels(path: Path, what: str, height: int, width: int, limit: int) -> ExplainError:
    """The error for an input over the pixel limit (``what``: is | declares)."""
    return ExplainError(
        f"input {path} {what} {width}×{height} = {height * width / 1e6:.1f} megapixels, over the limit of "
        f"{limit / 1e6:g} megapixels; downscale it, or raise the limit with `max_pixels`"
    )


def check_image_size(path: Path, height: int, width: int, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse sizes under `MIN_SIDE` a side or over ``max_pixels``, with one line that says the fix."""
    if height * width > max_pixels:
        raise too_many_pixels(path, "is", height, width, max_pixels)
    if min(height, width) < MIN_SIDE:
        raise ExplainError(
            f"input {path} is {width}×{height} pixels; height and width must be at least {MIN_SIDE} "
            f"for superpixels to mean anything — pass a larger image"
        )


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
        raise too_many_pixels(path, "declares", h, w, max_pixels)
    if c * h * w > _MAX_CHANNELS_AT_LIMIT * max_pixels:
        raise ExplainError(
            f"input {path} declares shape {list(shape)}: {c * h * w:,} values, over {_MAX_CHANNELS_AT_LIMIT}× "
            f"the pixel limit; crop it, or raise the limit with `max_pixels`"
        )
    if min(h, w) < MIN_SIDE:
        raise ExplainError(
            f"input {path} has shape {list(shape)}: height and width must be at least {MIN_SIDE}"
        )

