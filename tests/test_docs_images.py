"""The pictures in docs/ are what `make docs-images` makes from today's code (item 8 of issue 24)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import ROOT


def _images_module():
    spec = importlib.util.spec_from_file_location("docs_images", ROOT / "docs" / "images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_docs_pictures_are_current(tmp_path):
    images = _images_module()
    images.build(tmp_path)
    assert images.stale(tmp_path) == {}, "run `make docs-images` and commit docs/*.png"


def test_the_check_sees_a_changed_picture(tmp_path):
    """A bar's scale redrawn (±0.25 where the docs show ±0.1) is stale; a re-encoded copy is not."""
    from PIL import Image

    images = _images_module()
    name = images.PICTURES[0]
    with Image.open(ROOT / "docs" / name) as picture:
        picture.convert("RGB").save(tmp_path / name, compress_level=1)
        assert images.differs(tmp_path / name, ROOT / "docs" / name) is None
        changed = picture.convert("RGB")
    changed.paste((255, 255, 255), (0, changed.height - 60, changed.width, changed.height))  # the bar and ticks
    changed.save(tmp_path / name)
    assert images.differs(tmp_path / name, ROOT / "docs" / name) is not None
