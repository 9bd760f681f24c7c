"""Baselines: what a removed superpixel is replaced by, in model input space."""

from __future__ import annotations

from typing import TYPE_CHECKING

from explain_cli.errors import OptionError
from explain_cli.options.parse import Baseline
from explain_cli.preprocess import Preprocess, normalize_pixels

if TYPE_CHECKING:
    import torch

BASELINES = ("zero", "mean", "blur", "value:R,G,B")
BASELINE_HELP = ("What a removed superpixel becomes: zero (in model input space), mean (the image's channel means), "
                 "blur (Gaussian blur), value:R,G,B (a 0-255 colour), or reference (similarity: the reference image's "
                 "pixels; it must be the input's size after preprocessing).")


def make_baseline(baseline: Baseline, x: "torch.Tensor", preprocess: Preprocess, *, input_kind: str = "image",
                  reference: "torch.Tensor | None" = None) -> "torch.Tensor":
    """Build the (C, H, W) baseline for model input ``x``.

    ``zero``: zeros in model input space (after normalisation: the dataset mean colour for
    ImageNet-normalised models). ``mean``: each channel's mean over this input. ``blur``: a
    Gaussian blur of the input (σ = 1/16 of its longer side; :func:`explain_cli.blur.blur`). ``value:V[,V...]``: a constant
    colour in 0-255 pixel units for images (raw units for tensors), normalised like the input.
    ``reference``: the ``reference`` image (C, H, W), preprocessed like ``x`` (task similarity).
    """
    import torch

    from explain_cli.blur import blur

    kind, values, spec = baseline.kind, baseline.values, baseline.spec
    if kind == "reference":
        from explain_cli.tasks.similarity import reference_baseline

        if reference is None:
            raise OptionError("baseline", "reference needs task similarity with a reference image (reference IMAGE)")
        return reference_baseline(reference, x)
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean(dim=(1, 2), keepdim=True).expand_as(x).contiguous()
    if kind == "blur":
        return blur(x)
    c = x.shape[0]
    if len(values) not in (1, c):
        raise OptionError("baseline", f"{spec!r} gives {len(values)} numbers but the input has {c} channels; give 1 or {c}")
    colour = torch.tensor(values, dtype=x.dtype).expand(c)
    if input_kind == "image":
        check_image_colour(baseline)
        colour = normalize_pixels(colour / 255.0, preprocess)
    return colour.view(c, 1, 1).expand_as(x).contiguous()


def check_image_colour(baseline: Baseline) -> None:
    """A ``value:`` baseline on an image gives 8-bit channel values (also checked early, from the command line)."""
    if baseline.kind == "value" and not all(0 <= v <= 255 for v in baseline.values):
        raise OptionError("baseline", f"value: numbers are 8-bit channel values in 0..255 for images, got {baseline.spec!r}")
