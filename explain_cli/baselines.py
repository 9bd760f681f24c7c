"""Baselines: what a removed superpixel is replaced by, in model input space."""

from __future__ import annotations

from typing import TYPE_CHECKING

from explain_cli.errors import OptionError
from explain_cli.options.parse import Baseline
from explain_cli.preprocess import Preprocess, normalize_pixels

if TYPE_CHECKING:
    import torch

BASELINES = ("zero", "mean", "blur", "value:R,G,B")
#: Kernels wider than this blur as two 1-D passes: the same Gaussian, O(k) not O(k²) per pixel
#: (an 800-pixel photo's 403-wide kernel took minutes in 2-D); narrower ones keep torchvision's
#: 2-D kernel, so results on model-sized inputs stay bit for bit what they were.
SEPARABLE_ABOVE = 101
BASELINE_HELP = ("What a removed superpixel becomes: zero (in model input space), mean (the image's channel means), "
                 "blur (Gaussian blur), or value:R,G,B (a 0-255 colour).")


def make_baseline(baseline: Baseline, x: "torch.Tensor", preprocess: Preprocess, *, input_kind: str = "image") -> "torch.Tensor":
    """Build the (C, H, W) baseline for model input ``x``.

    ``zero``: zeros in model input space (after normalisation: the dataset mean colour for
    ImageNet-normalised models). ``mean``: each channel's mean over this input. ``blur``: a
    Gaussian blur of the input (σ = 1/16 of its longer side). ``value:V[,V...]``: a constant
    colour in 0-255 pixel units for images (raw units for tensors), normalised like the input.
    """
    import torch

    kind, values, spec = baseline.kind, baseline.values, baseline.spec
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean(dim=(1, 2), keepdim=True).expand_as(x).contiguous()
    if kind == "blur":
        return gaussian_blur(x)
    c = x.shape[0]
    if len(values) not in (1, c):
        raise OptionError("baseline", f"{spec!r} gives {len(values)} numbers but the input has {c} channels; give 1 or {c}")
    colour = torch.tensor(values, dtype=x.dtype).expand(c)
    if input_kind == "image":
        if not all(0 <= v <= 255 for v in values):
            raise OptionError("baseline", f"value: numbers are 8-bit channel values in 0..255 for images, got {spec!r}")
        colour = normalize_pixels(colour / 255.0, preprocess)
    return colour.view(c, 1, 1).expand_as(x).contiguous()


def gaussian_blur(x: "torch.Tensor", sigma: float | None = None) -> "torch.Tensor":
    """A Gaussian-blurred copy of a (C, H, W) ``x``; ``sigma`` defaults to max(H, W) / 16.

    The kernel spans ±3σ, clipped to the largest odd width that reflect padding allows.
    """
    import torch
    import torch.nn.functional as F
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    h, w = x.shape[-2:]
    sigma = max(h, w) / 16.0 if sigma is None else float(sigma)
    size = int(2 * round(3 * sigma) + 1)
    size = min(size, 2 * (min(h, w) // 2) - 1) if min(h, w) > 2 else 1
    if size <= SEPARABLE_ABOVE:
        return tv_blur(x.unsqueeze(0), [size, size], [sigma, sigma])[0].contiguous()
    t = torch.linspace(-(size - 1) / 2, (size - 1) / 2, size, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    pad = size // 2
    flat = x.reshape(-1, 1, h, w)
    rows = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    both = F.conv2d(F.pad(rows, (0, 0, pad, pad), mode="reflect"), kernel.view(1, 1, -1, 1))
    return both.reshape(x.shape).contiguous()
