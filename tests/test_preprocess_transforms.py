"""Preprocessing is the model's own: the prepared tensor equals torchvision's and timm's transforms.

Two comparisons per architecture:

- on the float pixels the loader makes (the same dtype path), our input is the weights'
  transform of those pixels clamped to [0, 1] (as the 8-bit pipelines clamp), to 1e-6;
- on a PIL image, where PIL resizes in 8 bits: it rounds (and, for bicubic, clips) to whole
  levels after each of its two passes, so it differs from the float pipeline by about a quarter
  of a level on average and by a few levels at most, at saturated edges. The bounds below are
  those of this image with margin; the wrong interpolation exceeds them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from explain_cli.inputs import load_input
from explain_cli.preprocess import PRESETS, Geometry, Preprocess, apply_preprocess, labels_to_model

LEVEL = 1 / 255
PIL_MEAN_BOUND = 0.5 * LEVEL  # 8-bit rounding alone averages a quarter of a level
PIL_MAX_BOUND = 6 * LEVEL  # measured 4 levels for bicubic (PIL clips between its passes), 1 for bilinear


def scene(h: int = 300, w: int = 400) -> Image.Image:
    """Smooth gradients, a saturated rectangle with sharp edges, mild noise: 8-bit RGB."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(6 * xx + 1) * 0.5 + 0.5, np.cos(5 * yy) * 0.5 + 0.5, xx * yy], -1)
    img[h // 4 : h // 2, w // 3 : w // 2] = [1.0, 0.1, 0.0]
    img += np.random.default_rng(0).normal(0, 0.05, img.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))


def loaded_pixels(img: Image.Image, tmp_path) -> torch.Tensor:
    """The pixels ``explain`` reads from this image (PNG is lossless)."""
    img.save(tmp_path / "scene.png")
    return load_input(tmp_path / "scene.png").pixels


def clamped(reference: torch.Tensor, spec: Preprocess) -> torch.Tensor:
    """``reference`` (model space) with its pixel values clamped to [0, 1]."""
    mean, std = torch.tensor(spec.mean).view(-1, 1, 1), torch.tensor(spec.std).view(-1, 1, 1)
    return ((reference * std + mean).clamp(0, 1) - mean) / std


def pixel_error(ours: torch.Tensor, reference: torch.Tensor, spec: Preprocess) -> tuple[float, float]:
    """Mean and max absolute difference in pixel units ([0, 1])."""
    diff = ((ours - reference) * torch.tensor(spec.std).view(-1, 1, 1)).abs()
    return float(diff.mean()), float(diff.max())


def check_against(transform, spec: Preprocess, interpolation: str, tmp_path) -> None:
    assert spec.interpolation == interpolation
    img = scene()
    pixels = loaded_pixels(img, tmp_path)
    ours = apply_preprocess(pixels, spec).x
    torch.testing.assert_close(ours, clamped(transform(pixels), spec), atol=1e-6, rtol=0)
    mean, worst = pixel_error(ours, transform(img), spec)
    assert mean <= PIL_MEAN_BOUND and worst <= PIL_MAX_BOUND, (mean * 255, worst * 255)
    if interpolation == "bicubic":  # the test tells the interpolations apart
        bilinear = apply_preprocess(pixels, Preprocess(**{**spec.__dict__, "interpolation": "bilinear"})).x
        mean, worst = pixel_error(bilinear, transform(img), spec)
        assert mean > PIL_MEAN_BOUND and worst > PIL_MAX_BOUND, (mean * 255, worst * 255)


@pytest.mark.parametrize("arch, interpolation", [("resnet18", "bilinear"), ("efficientnet_b3", "bicubic")])
def test_torchvision_weights_transforms(arch, interpolation, tmp_path):
    import torchvision

    from explain_cli.models.torchvision import _preprocess_from_weights

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    check_against(weights.transforms(), _preprocess_from_weights(weights), interpolation, tmp_path)


@pytest.mark.parametrize("name, interpolation", [("test_resnet", "bilinear"), ("test_efficientnet", "bicubic")])
def test_timm_data_config_transforms(name, interpolation, tmp_path):
    timm = pytest.importorskip("timm", reason="timm:NAME models need the timm extra")
    from timm.data import create_transform, resolve_data_config

    from explain_cli.models.timm import _preprocess

    module = timm.create_model(name)
    spec, notes = _preprocess(timm, module)
    assert notes == []
    check_against(create_transform(**resolve_data_config({}, model=module)), spec, interpolation, tmp_path)


def test_timm_squash_crop_mode(tmp_path):
    timm = pytest.importorskip("timm", reason="timm:NAME models need the timm extra")
    from timm.data import create_transform, resolve_data_config

    from explain_cli.models.timm import _preprocess

    module = timm.create_model("test_efficientnet", pretrained_cfg_overlay={"crop_mode": "squash", "crop_pct": 0.9})
    spec, _ = _preprocess(timm, module)
    assert spec.size == (177, 177) and spec.resize is None and spec.crop == (160, 160)
    check_against(create_transform(**resolve_data_config({}, model=module)), spec, "bicubic", tmp_path)


def test_interpolation_is_recorded_only_when_not_bilinear():
    import torchvision

    from explain_cli.models.base import LoadedModel
    from explain_cli.models.export import export_metadata
    from explain_cli.models.torchvision import _preprocess_from_weights

    bicubic = _preprocess_from_weights(torchvision.models.get_model_weights("efficientnet_b3").DEFAULT)
    assert "interpolation" not in PRESETS["imagenet"].to_dict()  # documents of such models keep their bytes
    assert bicubic.to_dict()["interpolation"] == "bicubic"
    assert Preprocess.from_dict(PRESETS["imagenet"].to_dict(), name="imagenet") == PRESETS["imagenet"]
    # an exported model (.pt2, .onnx) embeds it and reads it back
    meta = export_metadata(LoadedModel(None, "e.pt", "torchscript", None, None, torch.device("cpu"), preprocess=bicubic))
    assert meta["preprocess"]["interpolation"] == "bicubic"
    assert Preprocess.from_dict(meta["preprocess"]) == bicubic


def test_geometry_read_back_from_json_maps_as_planned():
    planned = Geometry.plan((300, 400), PRESETS["imagenet"])
    record = planned.to_dict()
    read = Geometry(tuple(record["original"]), tuple(record["box"]), tuple(record["model"]))
    assert read.resized == planned.resized == (256, 341)
    assert read.offset() == planned.offset() == (16, 58)


def test_label_maps_follow_the_image_through_resize_and_crop():
    # a label map that is the column index, and the same ramp as an image: nearest vs bilinear
    # resampling of a ramp agree to within a pixel, so the crops line up
    h0, w0 = 300, 400
    ramp = np.tile(np.arange(w0), (h0, 1))
    labels = labels_to_model(ramp, PRESETS["imagenet"])
    pixels = torch.from_numpy(np.repeat(ramp[None] / w0, 3, axis=0).astype(np.float32))
    image = apply_preprocess(pixels, PRESETS["imagenet"]).pixels[0].numpy() * w0
    assert labels.shape == (224, 224) and labels.dtype == np.int64
    assert np.abs(labels - image).max() <= 2.0
