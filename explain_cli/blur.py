"""Gaussian blurs: the one ``blur`` of model inputs (baseline and curves), and the drawing blur.

:func:`blur` is what "blur" means across the tool: the ``blur`` baseline and the deletion and
insertion curves' blurred copy. :func:`blur_drawing` softens numpy images for drawing (segment
boundaries); it replicates edges, so an image's border is not drawn as a boundary.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: Kernels wider than this blur by FFT: the same Gaussian at a cost independent of its width
#: (an 800-pixel photo's 403-wide kernel took minutes in 2-D); narrower ones keep torchvision's
#: 2-D kernel, so results on model-sized inputs stay bit for bit what they were.
SEPARABLE_ABOVE = 101


def blur(x: "torch.Tensor", sigma: float | None = None) -> "torch.Tensor":
    """A Gaussian-blurred copy of a (C, H, W) ``x``; ``sigma`` defaults to max(H, W) / 16.

    The kernel spans ±3σ, clipped to the largest odd width that reflect padding allows. Up to
    `SEPARABLE_ABOVE` taps it is torchvision's 2-D blur; wider, the same kernel and padding by
    FFT (:func:`fft_blur`), whose cost does not grow with the kernel.
    """
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    h, w = x.shape[-2:]
    sigma = max(h, w) / 16.0 if sigma is None else float(sigma)
    size = int(2 * round(3 * sigma) + 1)
    size = min(size, 2 * (min(h, w) // 2) - 1) if min(h, w) > 2 else 1
    if size <= SEPARABLE_ABOVE:
        return tv_blur(x.unsqueeze(0), [size, size], [sigma, sigma])[0].contiguous()
    return fft_blur(x, size, sigma)


def fft_blur(x: "torch.Tensor", size: int, sigma: float) -> "torch.Tensor":
    """(C, H, W) ``x`` blurred as torchvision's ``gaussian_blur(x, [size, size], [sigma, sigma])``, by FFT.

    The same kernel (``size`` taps, the sampled Gaussian normalised to sum 1) and the same
    reflect padding, applied as two 1-D circular convolutions in float64, a channel at a time:
    on the padded image no output that is kept wraps around, so the result equals torchvision's
    to float32 rounding, at a cost that grows with H·W·log(H·W) rather than H·W·size² (70 s at
    1024² in 2-D) or H·W·size (two 1-D passes: minutes at 4096²). ``size // 2`` must be below
    H and W (reflect padding), as torchvision requires.
    """
    import torch
    import torch.nn.functional as F

    half = size // 2
    if half == 0:
        return x.clone()
    taps = torch.linspace(-half, half, size, dtype=torch.float32)  # torchvision's kernel, in its precision
    pdf = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (pdf / pdf.sum()).double()
    _, h, w = x.shape
    out = torch.empty_like(x)
    spectra: dict[int, "torch.Tensor"] = {}
    for c in range(x.shape[0]):
        plane = F.pad(x[c][None, None], [half, half, half, half], mode="reflect")[0, 0].double()
        for _ in range(2):  # along the rows, then (transposed, so memory is contiguous) the columns
            length = plane.shape[1]
            if length not in spectra:  # the kernel centred on index 0 of a circle of `length`
                wrapped = torch.zeros(length, dtype=torch.float64)
                wrapped[: half + 1] = kernel[half:]
                wrapped[length - half:] = kernel[:half]
                spectra[length] = torch.fft.rfft(wrapped)
            plane = torch.fft.irfft(torch.fft.rfft(plane, dim=1) * spectra[length], n=length, dim=1).T.contiguous()
        out[c] = plane[half:half + h, half:half + w].to(x.dtype)
    return out


def blur_drawing(image: np.ndarray, sigma: float) -> np.ndarray:
    """A float64 Gaussian-blurred copy of a 2-D ``image``, for drawing.

    The kernel spans ±ceil(3σ) (at least one pixel each side); edges are replicated, so the
    image's border is not a boundary.
    """
    from scipy import ndimage

    radius = max(1, int(math.ceil(3 * sigma)))
    return ndimage.gaussian_filter(image.astype(np.float64), sigma, mode="nearest", radius=radius)
