"""Preprocessing from loaded pixels to the model's input, and the geometry to undo it.

An image goes through: resize (shorter side to ``resize``, or to an exact ``size``, with the
``interpolation`` the model's weights declare), centre-crop to ``crop``, then ``(x - mean) / std``,
each step a ``torchvision.transforms.v2.functional`` call as in the weights' own ``transforms()``.
:class:`Geometry` owns the arithmetic of the resize and crop and its inverse: which box of the
original image the model sees, so heatmaps can be drawn back at the original resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.errors import ExplainError, OptionError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Resampling modes a resize may use: the torchvision ``InterpolationMode`` values that resize tensors.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "nearest-exact")


@dataclass(frozen=True)
class Preprocess:
    """How pixels in [0, 1] become the model's input."""

    name: str  # preset name recorded in the JSON ('imagenet', 'none', 'model', 'custom')
    resize: int | None = None  # shorter side is resized to this (aspect kept); None: no resize
    size: tuple[int, int] | None = None  # exact (H, W) resize; overrides ``resize``
    crop: tuple[int, int] | None = None  # centre crop (H, W) after resizing; None: no crop
    mean: tuple[float, ...] | None = None  # per-channel mean subtracted; None: none
    std: tuple[float, ...] | None = None  # per-channel std divided by; None: none
    interpolation: str = "bilinear"  # resampling of the resize (antialiased), as the weights declare

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ExplainError(f"preprocessing interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                               f"got {self.interpolation!r}")

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "resize": self.resize,
            "size": list(self.size) if self.size else None,
            "crop": list(self.crop) if self.crop else None,
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
        }
        if self.interpolation != "bilinear":
            # Absent means bilinear: documents of models that declare no interpolation keep their bytes.
            out["interpolation"] = self.interpolation
        return out

    @classmethod
    def from_dict(cls, data: dict, name: str = "model") -> Preprocess:
        """Build from a metadata dict (TorchScript extra file); unknown keys are ignored."""
        size = data.get("size")
        crop = data.get("crop")
        return cls(
            name=name,
            resize=data.get("resize"),
            size=tuple(size) if size else None,
            crop=tuple(crop) if crop else None,
            mean=tuple(data["mean"]) if data.get("mean") else None,
            std=tuple(data["std"]) if data.get("std") else None,
            interpolation=data.get("interpolation") or "bilinear",
        )


PRESETS: dict[str, Preprocess] = {
    "imagenet": Preprocess("imagenet", resize=256, crop=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "none": Preprocess("none"),
}
PRESET_NAMES = tuple(PRESETS)


@dataclass(frozen=True)
class Geometry:
    """Where the model's input window lies in the original image, and the maps both ways.

    :meth:`plan` is the one place the resize-and-crop arithmetic lives (torchvision's rounding);
    :meth:`to_model` applies it to an image or a label map, :meth:`to_original` undoes it.
    """

    original: tuple[int, int]  # (H0, W0) of the loaded image
    box: tuple[float, float, float, float]  # (top, left, height, width) seen by the model, original pixels
    model: tuple[int, int]  # (H, W) of the model input

    @classmethod
    def plan(cls, original: tuple[int, int], spec: Preprocess) -> Geometry:
        """The geometry of ``spec``'s resize and centre crop for an image of size ``original``.

        Raises
        ------
        ExplainError
            If the crop is larger than the resized image.
        """
        h0, w0 = original
        if spec.size:
            rh, rw = spec.size
        elif spec.resize:
            # torchvision's rounding for a resize to an int (shorter side), aspect kept.
            if h0 <= w0:
                rh, rw = spec.resize, int(spec.resize * w0 / h0)
            else:
                rh, rw = int(spec.resize * h0 / w0), spec.resize
        else:
            rh, rw = h0, w0
        if spec.crop:
            ch, cw = spec.crop
            if ch > rh or cw > rw:
                raise ExplainError(
                    f"crop {ch}x{cw} is larger than the resized image {rh}x{rw}; use a larger resize or set `size`"
                )
            top, left = int(round((rh - ch) / 2.0)), int(round((rw - cw) / 2.0))  # as center_crop rounds
        else:
            ch, cw, top, left = rh, rw, 0, 0
        sy, sx = h0 / rh, w0 / rw
        return cls(original=(h0, w0), box=(top * sy, left * sx, ch * sy, cw * sx), model=(ch, cw))

    # The pixel grid follows from the three fields: exactly for a plan; for a box read back from
    # JSON (3 decimals) too, unless a resized side runs to tens of thousands of pixels.
    @property
    def resized(self) -> tuple[int, int]:
        """(H, W) of the image after the resize, before the crop."""
        (h0, w0), (_, _, h, w) = self.original, self.box
        return round(self.model[0] * h0 / h), round(self.model[1] * w0 / w)

    def offset(self) -> tuple[int, int]:
        """Top-left corner of the crop in resized pixels."""
        (h0, w0), (rh, rw) = self.original, self.resized
        return round(self.box[0] * rh / h0), round(self.box[1] * rw / w0)

    def to_model(self, image: "torch.Tensor", interpolation: str = "bilinear") -> "torch.Tensor":
        """Resize (antialiased, as torchvision's weights transforms do) and crop (C, H0, W0) to (C, H, W).

        Values are not clamped: bicubic may overshoot the input's range.
        """
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        out = F.resize(image, list(self.resized), interpolation=InterpolationMode(interpolation), antialias=True)
        if self.resized == self.model:
            return out
        top, left = self.offset()
        return F.crop(out, top, left, self.model[0], self.model[1])

    def to_original(self, maps: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """Resample (K, H, W) model-space maps onto the original image; NaN outside the window.

        ``nearest`` is for label maps (segment ids), bilinear for scores.
        """
        import torch
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        maps = np.asarray(maps)
        k = maps.shape[0]
        h0, w0 = self.original
        t, l, b, r = self.pixel_box()
        src = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float64))[:, None]
        mode = InterpolationMode.NEAREST if nearest else InterpolationMode.BILINEAR
        resized = F.resize(src, [b - t, r - l], interpolation=mode, antialias=False)[:, 0].numpy()
        full = np.full((k, h0, w0), np.nan)
        full[:, t:b, l:r] = resized
        return full

    def pixel_box(self) -> tuple[int, int, int, int]:
        """The box rounded to whole pixels, clipped to the image: (top, left, bottom, right)."""
        top, left, h, w = self.box
        h0, w0 = self.original
        t, l = max(0, round(top)), max(0, round(left))
        b, r = min(h0, round(top + h)), min(w0, round(left + w))
        return t, l, max(b, t + 1), max(r, l + 1)

    def to_dict(self) -> dict:
        return {"original": list(self.original), "box": [round(v, 3) for v in self.box], "model": list(self.model)}


@dataclass
class Prepared:
    """The model input and what is derived from it, all for a single example."""

    x: "torch.Tensor"  # (C, H, W) float32, model input space
    pixels: "torch.Tensor"  # (C, H, W) float32 in [0, 1], what segmentation looks at
    geometry: Geometry
    preprocess: Preprocess
    extra: dict = field(default_factory=dict)


def resolve_preprocess(
    preset: str | None,
    *,
    model_default: Preprocess | None,
    input_kind: str,
    size: tuple[int, int] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Preprocess:
    """Pick the preprocessing: explicit options > preset > the model's own > a default by input kind.

    Tensor inputs are taken as model input as they are (``none``) unless asked otherwise;
    images use the model's own transforms when it declares them, else ``imagenet``. ``size``,
    ``mean`` and ``std`` are the options as their parse hooks give them (:mod:`explain_cli.options.parse`).
    """
    if preset in (None, "auto"):
        if input_kind == "tensor":
            base = PRESETS["none"]
        else:
            base = model_default or PRESETS["imagenet"]
    elif preset == "model":
        if model_default is None:
            raise OptionError("preprocess", "model: this model declares no preprocessing; use imagenet, none or size")
        base = model_default
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise OptionError("preprocess", f"must be one of auto, model, {', '.join(PRESETS)}, got {preset!r}")
    changes: dict = {}
    if size:
        changes.update(size=tuple(size), resize=None, crop=None)
    if mean:
        changes["mean"] = tuple(mean)
    if std:
        changes["std"] = tuple(std)
    if changes:
        base = Preprocess(**{**base.__dict__, **changes, "name": f"{base.name}+custom"})
    return base


def apply_preprocess(pixels: "torch.Tensor", spec: Preprocess) -> Prepared:
    """Turn (C, H0, W0) pixels in [0, 1] into the model input.

    Raises
    ------
    ExplainError
        If mean/std do not match the number of channels, or the crop does not fit.
    """
    c, h0, w0 = pixels.shape
    geometry = Geometry.plan((h0, w0), spec)
    out = geometry.to_model(pixels, spec.interpolation)
    if geometry.resized != (h0, w0):
        # Clamped as the weights' 8-bit pipelines are (PIL, uint8 tensors): bicubic overshoots [0, 1].
        out = out.clamp_(0.0, 1.0)
    pixels_model = out.contiguous()
    for stat, label in ((spec.mean, "mean"), (spec.std, "std")):
        if stat is not None and len(stat) not in (1, c):
            raise ExplainError(
                f"preprocessing {label} has {len(stat)} values but the input has {c} channels; "
                f"pass {label} with {c} values or preprocess none"
            )
    x = normalize_pixels(pixels_model, spec)
    return Prepared(x=x.contiguous(), pixels=pixels_model, geometry=geometry, preprocess=spec)


def normalize_pixels(values: "torch.Tensor", spec: Preprocess) -> "torch.Tensor":
    """Map pixel-space values (C, ...) in [0, 1] into model input space with ``spec``'s mean/std."""
    from torchvision.transforms.v2 import functional as F

    if spec.mean is None and spec.std is None:
        return values
    # x - 0 and x / 1 are exact, so a missing mean or std changes nothing.
    mean, std = list(spec.mean or (0.0,)), list(spec.std or (1.0,))
    image = values.reshape(values.shape[0], 1, -1)  # normalize takes (C, H, W)
    return F.normalize(image, mean, std).reshape(values.shape)


def map_to_original(maps: np.ndarray, geometry: Geometry, *, nearest: bool = False) -> np.ndarray:
    """Resample (K, H, W) model-space maps onto the original image (:meth:`Geometry.to_original`)."""
    return geometry.to_original(maps, nearest=nearest)


def labels_to_model(labels: np.ndarray, spec: Preprocess) -> np.ndarray:
    """Carry an (H0, W0) integer label map at the input's resolution through ``spec``'s resize and crop.

    Nearest-neighbour resampling keeps ids intact; the result is at the model's resolution.
    """
    import torch

    geometry = Geometry.plan(labels.shape, spec)
    ids = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float64))[None]  # float64 holds every id exactly
    out = geometry.to_model(ids, "nearest")[0].long()
    return out.numpy()


# ---------------------------------------------------------------------------------------------
# Preparation: the one path from an input to the model's view and its superpixels.
# ---------------------------------------------------------------------------------------------

if TYPE_CHECKING:
    from collections import OrderedDict

    from explain_cli.inputs import LoadedInput
    from explain_cli.options.groups import Settings
    from explain_cli.segmentation import Segmentation


@dataclass
class PreparedInput:
    """An input as the model sees it, and its segmentation (None when not asked for)."""

    item: "LoadedInput"
    spec: Preprocess
    prepared: Prepared
    segmentation: "Segmentation | None"


def prepare(item: "LoadedInput", cfg: "Settings", *, model_default: Preprocess | None = None,
            with_segments: bool = True, cache: "OrderedDict | None" = None) -> PreparedInput:
    """Preprocess one input and segment the image the model sees; ``explain segment`` uses this too.

    ``model_default`` is the preprocessing the model declares (``LoadedModel.preprocess``).
    ``cache`` (if given) memoises by everything that changes the result: the input's content, the
    preprocessing, the segmenter and its parameters, and the user's label map.
    """
    import hashlib
    import json

    from explain_cli.segmentation import segment, to_segmentation_space

    opts, seg_opts = cfg.input, cfg.segmentation
    spec = resolve_preprocess(opts.preprocess, model_default=model_default, input_kind=item.kind,
                              size=opts.size, mean=opts.mean, std=opts.std)
    key = None
    if cache is not None:
        label_key = hashlib.sha256(seg_opts.label_map.tobytes()).hexdigest() if seg_opts.label_map is not None else None
        key = json.dumps([item.sha256, item.kind, spec.to_dict(), with_segments and seg_opts.algorithm,
                          seg_opts.params, label_key], sort_keys=True, default=str)
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    prepared = apply_preprocess(item.pixels, spec)
    seg = None
    if with_segments:
        if seg_opts.label_map is not None:
            seg = _user_segmentation(seg_opts.label_map, item, prepared, spec)
        else:
            image = to_segmentation_space(prepared.pixels.numpy(), rescale=item.kind == "tensor")
            seg = segment(image, seg_opts.algorithm, **seg_opts.params)
    result = PreparedInput(item=item, spec=spec, prepared=prepared, segmentation=seg)
    if cache is not None:
        cache[key] = result
        while len(cache) > 16:  # a batch visits each input's methods in a row; keep a few
            cache.popitem(last=False)
    return result


def _user_segmentation(labels: np.ndarray, item: "LoadedInput", prepared: Prepared, spec: Preprocess) -> "Segmentation":
    """A user's label map at the input's resolution (carried through resize and crop) or at the model's."""
    from explain_cli.segmentation import Segmentation, relabel

    model_shape = tuple(prepared.x.shape[1:])
    input_shape = tuple(item.pixels.shape[1:])
    if labels.shape == model_shape:
        mapped = labels
    elif labels.shape == input_shape:
        mapped = labels_to_model(labels, spec)
    else:
        raise OptionError("segments", f"label map is {list(labels.shape)} but the input is {list(input_shape)} "
                          f"and the model sees {list(model_shape)}; give one of those shapes")
    return Segmentation(labels=relabel(mapped), algorithm="labels", params={"shape": list(labels.shape)})
