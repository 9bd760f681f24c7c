"""What a task draws over or beside a target's panel: a box, a region's outline, a reference image.

A task's :meth:`~explain_cli.tasks.base.Target.overlay` says what (``box``: x1, y1, x2, y2 in the
image's pixels; ``region``: an (H0, W0) bool mask in the image's pixels, ``frame="original"``;
``thumbnail``: the reference image); :func:`draw_overlay` draws the first two on a panel, and
:func:`reference_picture` makes the reference its own panel beside the maps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from explain_cli.render.panels import BOX_COLOUR, as_rgb, draw_box

if TYPE_CHECKING:
    from PIL import Image as PILImage


def draw_overlay(panel: "PILImage.Image", overlay: Mapping[str, Any] | None, image_hw: tuple[int, int],
                 font_px: int) -> None:
    """Draw a target's box or region outline on its panel (of an image of ``image_hw`` pixels); else nothing."""
    if not overlay:
        return
    if overlay.get("box") is not None:
        draw_box(panel, overlay["box"], image_hw, font_px)
    elif overlay.get("region") is not None and overlay.get("frame", "original") == "original":
        region = np.asarray(overlay["region"], dtype=bool)
        if region.shape == tuple(image_hw):
            draw_region(panel, region, font_px)


def draw_region(panel: "PILImage.Image", mask: np.ndarray, font_px: int) -> None:
    """Outline ``mask`` (H, W bool, the image's pixels) on a panel of that image, over a dark halo.

    The mask is resampled bilinearly and cut at one half, so a region on a coarse model grid is
    outlined with smooth edges rather than its staircase.
    """
    from PIL import Image
    from scipy import ndimage

    h, w = panel.height, panel.width
    soft = Image.fromarray(mask.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR)
    inside = np.asarray(soft) >= 0.5
    if not inside.any():
        return
    width = max(2, font_px // 6)
    line = inside & ~ndimage.binary_erosion(inside, iterations=width, border_value=0)
    halo = ndimage.binary_dilation(line, iterations=1) & ~line
    pixels = np.asarray(panel.convert("RGB")).copy()
    pixels[halo] = 0
    pixels[line] = BOX_COLOUR
    panel.paste(Image.fromarray(pixels))


def reference_picture(thumbnail: Any, size: tuple[int, int]) -> "PILImage.Image":
    """The reference image (h, w, C floats in [0, 1], or uint8) as a panel of ``size`` = (height, width)."""
    from PIL import Image

    pixels = np.asarray(thumbnail)
    if pixels.dtype != np.uint8:
        pixels = (np.clip(pixels.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    picture = Image.fromarray(as_rgb(pixels))
    h, w = size
    # fit inside the panel's box, keeping the reference's own aspect ratio, on white
    factor = min(h / picture.height, w / picture.width)
    shown = picture.resize((max(1, round(picture.width * factor)), max(1, round(picture.height * factor))),
                           Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (w, h), "white")
    canvas.paste(shown, ((w - shown.width) // 2, (h - shown.height) // 2))
    return canvas
