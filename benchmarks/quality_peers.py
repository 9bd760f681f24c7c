"""Peer explainers for benchmarks/quality.py (the optional ``bench`` extra: captum, lime, grad-cam).

Each peer turns one image into a (H, W) map at the model's resolution for one class, and says
how many model evaluations it spent (images pushed through the model, counted by a forward
pre-hook). quality.py then scores the map with the same explain_cli.metrics code as its own
rows. Perturbation peers get explain_cli's SLIC superpixels and its baseline (blur by default);
the model they see outputs softmax probabilities, like explain_cli's default ``output probs``.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")  # lime and pytorch-grad-cam draw progress bars per image

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "sample_models"

#: Evaluations given to peers that take a budget (captum Lime/KernelShap, the lime package).
PEER_BUDGET = 1000


@dataclass
class Case:
    x: "torch.Tensor"  # (C, H, W) preprocessed input
    baseline: "torch.Tensor"  # (C, H, W), explain_cli's baseline for this input
    segments: np.ndarray  # (H, W) int superpixels, explain_cli's segmentation
    target: int
    seed: int
    budget: int = PEER_BUDGET


class Counted:
    """The rebuilt ShapesCNN nn.Module, with a forward pre-hook counting the images it sees."""

    def __init__(self, scripted: "torch.nn.Module") -> None:
        """``scripted``: the TorchScript sample model as explain_cli loaded it (its weights are reused,
        like sample_models/export_shapes.py)."""
        import torch

        sys.path.insert(0, str(SAMPLES))
        from train_shapes import ShapesCNN

        self.module = ShapesCNN()
        self.module.load_state_dict(scripted.state_dict())
        self.module.eval()
        self.evaluations = 0
        self.module.register_forward_pre_hook(self._count)
        # the last conv block's output (its conv, BN, ReLU): the raw conv output before BN is mostly
        # negative, and ScoreCAM's ReLU of it leaves an all-zero map
        assert isinstance(self.module.features[-3], torch.nn.Conv2d)
        self.target_layer = self.module.features[-1]

    def _count(self, module, inputs) -> None:
        self.evaluations += int(inputs[0].shape[0])

    def probs(self, batch: "torch.Tensor") -> "torch.Tensor":
        import torch

        with torch.no_grad():
            return torch.softmax(self.module(batch), dim=1)


def _segment_map(segments: np.ndarray, weights: dict[int, float]) -> np.ndarray:
    out = np.zeros(segments.shape, dtype=np.float64)
    for seg, w in weights.items():
        out[segments == seg] = w
    return out


def _captum(cls_name: str, net: Counted, case: Case) -> np.ndarray:
    import captum.attr as ca
    import torch

    torch.manual_seed(case.seed)
    method = getattr(ca, cls_name)(net.probs)
    mask = torch.as_tensor(case.segments, dtype=torch.long)[None, None].expand(1, *case.x.shape)
    kwargs = dict(inputs=case.x[None], baselines=case.baseline[None], target=case.target, feature_mask=mask)
    if cls_name in ("Lime", "KernelShap"):
        kwargs.update(n_samples=case.budget, perturbations_per_eval=50)
    else:
        kwargs.update(perturbations_per_eval=50)
    attr = method.attribute(**kwargs)
    return attr[0, 0].double().numpy()  # constant over channels and within a segment


def _lime_pkg(net: Counted, case: Case) -> np.ndarray:
    import torch
    from lime import lime_image

    hwc = case.x.permute(1, 2, 0).double().numpy()
    hide = case.baseline.permute(1, 2, 0).double().numpy()  # lime fills off segments with hide_color (broadcast)

    def classify(images: np.ndarray) -> np.ndarray:
        batch = torch.as_tensor(np.asarray(images), dtype=torch.float32).permute(0, 3, 1, 2)
        return net.probs(batch).double().numpy()

    explainer = lime_image.LimeImageExplainer(random_state=case.seed)
    exp = explainer.explain_instance(hwc, classify, labels=(case.target,), top_labels=None, hide_color=hide,
                                     num_features=int(case.segments.max()) + 1, num_samples=case.budget,
                                     batch_size=50, segmentation_fn=lambda image: case.segments,
                                     random_seed=case.seed)
    return _segment_map(case.segments, dict(exp.local_exp[case.target]))


def _cam(cls_name: str, net: Counted, case: Case) -> np.ndarray:
    import pytorch_grad_cam as pgc
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    torch.manual_seed(case.seed)
    cam = getattr(pgc, cls_name)(model=net.module, target_layers=[net.target_layer])
    cam.batch_size = 32
    out = cam(input_tensor=case.x[None].clone(), targets=[ClassifierOutputSoftmaxTarget(case.target)])
    return np.asarray(out[0], dtype=np.float64)  # upsampled to the input, min-max scaled


#: name -> (module needed, run(net, case) -> (H, W) map)
PEERS = {
    "captum-lime": ("captum", lambda net, case: _captum("Lime", net, case)),
    "captum-kernelshap": ("captum", lambda net, case: _captum("KernelShap", net, case)),
    "captum-ablation": ("captum", lambda net, case: _captum("FeatureAblation", net, case)),
    "lime-pkg": ("lime", _lime_pkg),
    "scorecam": ("pytorch_grad_cam", lambda net, case: _cam("ScoreCAM", net, case)),
    "ablationcam": ("pytorch_grad_cam", lambda net, case: _cam("AblationCAM", net, case)),
}
PIP_NAMES = {"captum": "captum", "lime": "lime", "pytorch_grad_cam": "grad-cam"}


def available(name: str) -> str | None:
    """None when the peer's package imports; else a note saying what to install."""
    module = PEERS[name][0]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return f"skipping {name}: {module} is not installed ({exc}); pip install '.[bench]' or pip install {PIP_NAMES[module]}"
    return None


def run_peer(name: str, net: Counted, case: Case) -> tuple[np.ndarray, int]:
    """The peer's (H, W) map for ``case.target`` and the model evaluations it spent."""
    before = net.evaluations
    saliency = PEERS[name][1](net, case)
    if saliency.shape != tuple(case.x.shape[1:]):
        raise RuntimeError(f"{name} gave a map of shape {saliency.shape}, expected {tuple(case.x.shape[1:])}")
    return np.nan_to_num(saliency), net.evaluations - before
