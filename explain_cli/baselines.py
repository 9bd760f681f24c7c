"""Baselines: what a removed superpixel is replaced by, in model input space."""

from __future__ import annotations

from typing import TYPE_CHECKING

from explain_cli.errors import ExplainError
from explain_cli.preprocess import Preprocess, normalize_pixels

if TYPE_CHECKING:
    import torch

BASELINES = ("zero", "mean", "blur", "value:R,G,B")


def make_baseline(spec: str, x: "torch.Tensor", preprocess: Preprocess, *, input_kind: str = "image") -> "torch.Tensor":
    """Build the (C, H, W) baseline for model input ``x``.

    ``zero``: zeros in model input space (after normalisation: the dataset mean colour for
    ImageNet-normalised models). ``mean``: each channel's mean over this input. ``blur``: a
    Gaussian blur of the input (σ = 1/16 of its longer side). ``value:V[,V...]``: a constant
    colour in 0-255 pixel units for images (raw units for tensors), normalised like the input.
    """
    import torch

    spec = (spec or "zero").strip().lower()
    if spec == "zero":
        return torch.zeros_like(x)
    if spec == "mean":
        return x.mean(dim=(1, 2), keepdim=True).expand_as(x).contiguous()
    if spec == "blur":
        from torchvision.transforms.functional import gaussian_blur

        sigma = max(x.shape[1:]) / 16.0
        size = int(2 * round(3 * sigma) + 1)
        size = min(size, 2 * (min(x.shape[1:]) // 2) - 1) if min(x.shape[1:]) > 2 else 1
        return gaussian_blur(x.unsqueeze(0), [size, size], [sigma, sigma])[0].contiguous()
    if spec.startswith("value:"):
        try:
            values = [float(v) for v in spec[len("value:") :].split(",")]
        except ValueError:
            values = []
        c = x.shape[0]
        if len(values) not in (1, c):
            raise ExplainError(
                f"--baseline {spec!r}: give 1 or {c} comma-separated numbers, e.g. value:128,128,128"
            )
        colour = torch.tensor(values, dtype=x.dtype).expand(c)
        if input_kind == "image":
            colour = normalize_pixels(colour / 255.0, preprocess)
        return colour.view(c, 1, 1).expand_as(x).contiguous()
    raise ExplainError(f"unknown --baseline {spec!r}; choose zero, mean, blur or value:R,G,B")
