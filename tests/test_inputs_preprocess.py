"""Loading and preprocessing: EXIF, modes, tensor layouts, crop geometry and its inverse, offline weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from explain_cli.errors import ExplainError
from explain_cli.inputs import load_input
from explain_cli.preprocess import PRESETS, Geometry, apply_preprocess, map_to_original, resolve_preprocess
from explain_cli.segmentation import grid_labels, segment
from tests.helpers import assert_refused


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    img.save(tmp_path / "rot.jpg", exif=exif)
    loaded = load_input(tmp_path / "rot.jpg")
    assert loaded.pixels.shape == (3, 40, 20)
    assert loaded.display.shape == (40, 20, 3)


def test_grey_and_rgba_become_rgb(tmp_path):
    Image.new("L", (8, 6), 128).save(tmp_path / "g.png")
    rgba = Image.new("RGBA", (8, 6), (0, 0, 0, 0))
    rgba.save(tmp_path / "a.png")
    grey = load_input(tmp_path / "g.png")
    assert grey.pixels.shape == (3, 6, 8) and torch.allclose(grey.pixels, torch.full((3, 6, 8), 128 / 255))
    clear = load_input(tmp_path / "a.png")
    assert torch.all(clear.pixels == 1.0)  # transparent shows the white it is composited on
    assert load_input(tmp_path / "g.png", channels=1).pixels.shape == (1, 6, 8)


def test_uint8_tensor_is_scaled(tmp_path):
    np.save(tmp_path / "u.npy", np.full((5, 6, 3), 255, dtype=np.uint8))
    loaded = load_input(tmp_path / "u.npy")
    assert loaded.pixels.shape == (3, 5, 6) and float(loaded.pixels.max()) == 1.0


def test_imagenet_geometry_and_inverse_mapping():
    geo = Geometry.plan((300, 400), PRESETS["imagenet"])
    rh, rw = geo.resized
    assert (rh, rw) == (256, 341)
    assert geo.model == (224, 224)
    top, left, h, w = geo.box
    assert top == pytest.approx(16 * 300 / 256) and left == pytest.approx(58 * 400 / 341)
    assert h == pytest.approx(224 * 300 / 256) and w == pytest.approx(224 * 400 / 341)
    full = map_to_original(np.ones((1, 224, 224)), geo)[0]
    t, l, b, r = geo.pixel_box()
    assert np.all(np.isnan(full[:t])) and np.all(np.isnan(full[:, :l])) and np.all(np.isnan(full[b:]))
    assert np.all(full[t:b, l:r] == 1.0)


def test_apply_preprocess_crop_matches_geometry():
    pixels = torch.rand(3, 300, 400)
    prepared = apply_preprocess(pixels, PRESETS["imagenet"])
    assert prepared.x.shape == (3, 224, 224)
    mean = torch.tensor(PRESETS["imagenet"].mean).view(3, 1, 1)
    std = torch.tensor(PRESETS["imagenet"].std).view(3, 1, 1)
    torch.testing.assert_close(prepared.x * std + mean, prepared.pixels)


def test_size_option_and_precedence():
    spec = resolve_preprocess("imagenet", model_default=None, input_kind="image", size=(100, 120), mean=(0.5,))
    assert spec.size == (100, 120) and spec.crop is None and spec.mean == (0.5,)
    assert resolve_preprocess("auto", model_default=None, input_kind="tensor").name == "none"
    with pytest.raises(ExplainError, match="preprocess must be one of"):
        resolve_preprocess("fancy", model_default=None, input_kind="image")


def test_segmentation_ids_contiguous_and_grid_exact():
    labels = segment(np.random.default_rng(0).random((20, 21, 3)), "felzenszwalb", scale=10).labels
    assert set(np.unique(labels)) == set(range(labels.max() + 1))
    quadrants = np.zeros((20, 21, 3))
    quadrants[:10, :10] = 1.0
    quadrants[10:, 10:] = [1.0, 0.0, 0.0]
    seg = segment(quadrants, "slic", n_segments=4, compactness=1)
    assert len(np.unique(seg.labels[:10, :10])) == 1
    assert np.array_equal(grid_labels((4, 4), 4), np.array([[0, 0, 1, 1]] * 2 + [[2, 2, 3, 3]] * 2))


def test_default_weights_offline_is_a_clear_error(cli, tmp_path, small_image, monkeypatch):
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    result = cli("run", "torchvision:resnet18", small_image, "--weights", "DEFAULT", "--out", tmp_path)
    assert_refused(result, "cannot download pretrained weights for resnet18")
    assert "--weights FILE" in result.stderr
