"""torchvision segmenters by name: random weights, weights files, and end to end through the segmentation task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain_cli.core import Evaluator, Problem
from explain_cli.engines import build_params, get_engine
from explain_cli.errors import ExplainError
from explain_cli.models import load_model
from explain_cli.models.segmenters import RANDOM_SEGMENTER_NOTE, as_segmenter, load_segmenter
from explain_cli.preprocess import IMAGENET_MEAN, Preprocess, apply_preprocess
from explain_cli.tasks import SegmentationTask, TargetRequest, reference_targets

CPU = torch.device("cpu")
NAMES = ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"]
SMALL = Preprocess("custom", size=(48, 48), mean=IMAGENET_MEAN, std=(0.229, 0.224, 0.225))


def quadrants(side: int) -> torch.Tensor:
    half = torch.arange(side) // (side // 2)
    return (half[:, None] * 2 + half[None, :]).long()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_each_segmenter_runs_through_the_task_with_a_region_at_the_image_resolution(name):
    model = load_model(f"torchvision:{name}", device="cpu", seed=0)
    assert model.task == "segmentation" and RANDOM_SEGMENTER_NOTE in model.notes and model.weights is None
    assert model.labels is not None and len(model.labels) == 21 and model.labels[0] == "__background__"
    assert model.preprocess.resize == 520 and model.preprocess.crop is None and model.preprocess.mean == IMAGENET_MEAN
    pixels = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    prepared = apply_preprocess(pixels, SMALL)  # 64 x 64 image -> 48 x 48 model input
    region = np.zeros((64, 64), dtype=np.uint8)
    region[8:40, 16:56] = 255  # a PNG-style 0/255 mask at the image's resolution
    evaluator = Evaluator(model.module, CPU, batch_size=8)
    request = TargetRequest(labels=model.labels, labels_source="model", geometry=prepared.geometry, size=(48, 48))
    task = SegmentationTask(region=region)
    (target,) = reference_targets(task, evaluator, prepared.x[None], request)[0]
    with torch.inference_mode():
        out = model.module(prepared.x[None].clone())
    assert out.shape == (1, 21, 48, 48)  # a tensor: the wrapper returns torchvision's `out`
    probs = torch.softmax(out[0].double(), dim=0)
    means = probs[:, torch.from_numpy(target.grid)].mean(dim=1)
    assert target.index == int(means.argmax()) and target.score == pytest.approx(float(means.max()), abs=1e-9)
    assert target.cells == 24 * 30 and target.describe()["region"]["bbox"] == [16, 8, 56, 40]  # the mask as drawn
    problem = Problem(x=prepared.x, baseline=torch.zeros_like(prepared.x), segments=quadrants(48),
                      evaluator=evaluator, reference=torch.tensor([target.score], dtype=torch.float64))
    engine = get_engine("ablation")
    result = engine.run(problem, build_params(engine, {}), torch.Generator().manual_seed(0))
    assert result.scores.shape == (1, 4) and np.isfinite(result.scores).all() and evaluator.evaluations == 1 + 1 + 4


@pytest.mark.slow
def test_weights_files_load_with_their_head_and_the_aux_head_is_dropped(tmp_path):
    torch.manual_seed(3)
    import torchvision

    source = torchvision.models.get_model("deeplabv3_mobilenet_v3_large", weights=None, weights_backbone=None,
                                          num_classes=5, aux_loss=True).eval()
    path = tmp_path / "deeplab.pt"
    torch.save(source.state_dict(), path)
    model = load_segmenter("torchvision:deeplabv3_mobilenet_v3_large", str(path), CPU, 0)
    assert model.labels is None and model.sha256 is not None and not model.notes  # 5 classes: not VOC's names
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        torch.testing.assert_close(model.module(x), source(x)["out"])
    assert model.module.model.aux_classifier is None
    with pytest.raises(ExplainError, match="do not fit torchvision:lraspp_mobilenet_v3_large"):
        load_segmenter("torchvision:lraspp_mobilenet_v3_large", str(path), CPU, 0)


def test_unknown_names_and_other_modules():
    with pytest.raises(ExplainError, match="did you mean lraspp_mobilenet_v3_large"):
        load_segmenter("torchvision:lraspp_mobilenet_v3", None, CPU, 0)
    plain = torch.nn.Identity()
    assert as_segmenter(plain) is plain
