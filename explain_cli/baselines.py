"""Baselines: what a removed superpixel is replaced by, in model input space."""

from __future__ import annotations

from typing import TYPE_CHECKING

from explain_cli.errors import OptionError
from explain_cli.options.parse import Baseline
from explain_cli.preprocess import Preprocess, normalize_pixels

if TYPE_CHECKING:
    import torch

BASELINES = ("zero", "mean", "blur", "value:R,G,B")
#: Kernels wider than this blur by FFT: the same Gaussian at a cost independent of its width
#: (an 800-pixel photo's 403-wide kernel took minutes in 2-D); narrower ones keep torchvision's
#: 2-D kernel, so results on model-sized inputs stay bit for bit what they were.
SEPARABLE_ABOVE = 101
BASELINE_HELP = ("What a removed superpixel becomes: zero (in model input space), mean (the image's channel means), "
                 "blur (Gaussian blur), value:R,G,B (a 0-255 colour), or reference (similarity: the reference image's "
                 "pixels; it must be the input's size after preprocessing).")


def make_baseline(baseline: Baseline, x: "torch.Tensor", preprocess: Preprocess, *, input_kind: str = "image",
                  reference: "torch.Tensor | None" = None) -> "torch.Tensor":
    """Build the (C, H, W) baseline for model input ``x``.

    ``zero``: zeros in model input space (after normalisation: the dataset mean colour for
    ImageNet-normalised models). ``mean``: each channel's mean over this input. ``blur``: a
    Gaussian blur of the input (σ = 1/16 of its longer side). ``value:V[,V...]``: a constant
    colour in 0-255 pixel units for images (raw units for tensors), normalised like the input.
    ``reference``: the ``reference`` image (C, H, W), preprocessed like ``x`` (task similarity).
    """
    import torch

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
