"""The shipped similarity evaluation set is what its script's documented rule writes, pixel for pixel."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT

SIM_EVAL = ROOT / "sample_models" / "sim_eval"


@pytest.fixture(scope="module")
def train_embedder():
    sys.path.insert(0, str(ROOT / "sample_models"))
    try:
        import train_embedder

        yield train_embedder
    finally:
        sys.path.remove(str(ROOT / "sample_models"))


def test_every_shipped_scene_meets_the_selection_rule(train_embedder) -> None:
    """Right zero-shot class, and no distractor carries the class by itself (the rule that makes the mask ground truth)."""
    index = json.loads((SIM_EVAL / "labels.json").read_text())
    assert len(index["items"]) == 32 and index["misclassified"] + index["distracted"] + 32 <= index["candidates"]
    for item in index["items"]:
        assert int(np.argmax(item["cosine"])) == item["class_index"], item["image"]
        assert item["cosine_without_object"][item["class_index"]] < train_embedder.BACKDROP_MAX_COSINE, item["image"]


@pytest.mark.slow
def test_sim_eval_regenerates_identically(train_embedder, tmp_path) -> None:
    """write_eval_set with the shipped model and prompts gives the shipped images, masks and cosines."""
    import torch

    model = torch.jit.load(str(ROOT / "sample_models" / "shapes_embedder.pt"))
    prompts = torch.from_numpy(np.load(ROOT / "sample_models" / "shapes_prompts.npy", allow_pickle=False))
    train_embedder.write_eval_set(model, prompts, ROOT / "sample_models" / "shapes_embedder.pt", tmp_path, 8)
    shipped = json.loads((SIM_EVAL / "labels.json").read_text())
    fresh = json.loads((tmp_path / "labels.json").read_text())
    assert [it["image"] for it in fresh["items"]] == [it["image"] for it in shipped["items"]]
    for new, old in zip(fresh["items"], shipped["items"]):
        assert np.allclose(new["cosine"], old["cosine"], atol=2e-4) and np.allclose(
            new["cosine_without_object"], old["cosine_without_object"], atol=2e-4), new["image"]
        for name in (new["image"], new["mask"]):
            assert np.array_equal(np.asarray(Image.open(tmp_path / name)), np.asarray(Image.open(SIM_EVAL / name))), name
