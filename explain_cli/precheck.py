"""What can be refused from a run's files and options before the model loads (a second, not a model's load).

The command line knows its inputs as paths: their sizes come from image headers, so a mask of
the wrong size, an image over ``max_pixels`` or under the minimum side, and a baseline colour
out of range are answered before the model (seconds for a torchvision one), its forward pass
and the runtime probe. The library checks the same again on what it loads: this is only earlier.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from explain_cli.options.groups import Settings

#: EXIF orientations that turn the picture a quarter: the decoded height and width swap.
_QUARTER_TURNS = {5, 6, 7, 8}


def header_size(path: Path) -> tuple[int, int] | None:
    """An image file's (H, W) as decoded (EXIF rotation applied), from its header; None if Pillow cannot tell."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own size warnings: the limits are ours (inputs.images)
            with Image.open(path) as img:
                width, height = img.size
                turned = img.getexif().get(0x0112) in _QUARTER_TURNS
    except Exception:  # unreadable here: the loader gives the one-line reason later
        return None
    return (width, height) if turned else (height, width)


def check_files(paths: Sequence[str], cfg: "Settings") -> None:
    """Refuse, from image headers (and a ``mask``'s own pixels), what the run would refuse after loading the model.

    Raises
    ------
    ExplainError, OptionError
        An image over ``max_pixels`` or under the minimum side; a ``mask`` not the size of every
        image; a ``value:`` baseline colour outside 0..255 for images.
    """
    from explain_cli.inputs import TENSOR_SUFFIXES
    from explain_cli.inputs.limits import check_image_size

    images = [Path(p) for p in paths if Path(p).suffix.lower() not in TENSOR_SUFFIXES and Path(p).is_file()]
    sizes = []
    for path in images:
        size = header_size(path)
        if size is not None:
            check_image_size(path, *size, max_pixels=cfg.input.max_pixels)
            sizes.append((path.name, size))
    if images and cfg.baseline is not None:
        from explain_cli.baselines import check_image_colour

        check_image_colour(cfg.baseline)
    if cfg.evaluation.mask and not cfg.engine.batch and sizes:
        from explain_cli.metrics.localisation import check_mask_fits

        check_mask_fits(cfg.evaluation.mask, sizes)
