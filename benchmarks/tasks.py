"""Segmenters and embedding models: faithfulness on the shipped evaluation sets, against their peers.

    PYTHONPATH=. python benchmarks/tasks.py [--tasks segmentation,similarity] [--methods ...]
        [--budget 1000] [--limit N] [--seed 0]

**segmentation**: sample_models/shapes_segmenter.pt (128², half-resolution logits) on
sample_models/seg_eval/ (16 scenes, 29 objects; 25 (class, region) targets, since the masks are
semantic and several objects of one class in a scene make one region): explain the class over its
ground-truth region (``task="segmentation", region=`` the class's mask, ``target=`` the class),
the region also being the metrics' mask.
**similarity**: sample_models/shapes_embedder.pt on sample_models/sim_eval/ (32 single-object
scenes, none where a distractor alone carries the class): the cosine similarity to the object's
class prompt (a row of sample_models/shapes_prompts.npy as ``reference``), its mask for the
metrics; ``--zero-shot`` explains softmax(100 · cos) over the four prompts instead (a score that
saturates near 1, so deletion barely moves it until the object is gone).

Every row is scored by the same functions (explain_cli.metrics: pointing with the default
tolerance, energy in mask, ROAD deletion and insertion at step 0.05, each beside a random
order) on the same score: explain_cli's rows through ``evaluate=True``, the peers through a
score function checked against explain_cli's f(x) for every case (to 1e-5).

Rows (``--methods``):

* ``kernelshap``, ``partition`` (``--budget`` evaluations), ``ablation`` (one per segment);
* ``rise``: RISE with ``--budget`` masks on the task's score — for segmentation, SegmentationRISE
  (the mean of the class over the region, Dardouillet et al. 2023);
* ``ablationcam`` (segmentation; ``bench`` extra): pytorch-grad-cam's AblationCAM with its
  ``SemanticSegmentationTarget`` (class logits summed over the region) on the segmenter's last
  decoder block, rebuilt as a Python module from the TorchScript weights; one forward per channel;
* ``occlusion`` (similarity): xaitk-saliency SBSM's sliding-window occlusion (window a quarter
  of the side, stride ``--stride``, blur fill), each pixel's saliency the mean score drop of the
  windows covering it, on the same score as explain_cli's rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam draws a progress bar per image
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sample_models"))

from explain_cli.api import Explainer  # noqa: E402

MODELS = ROOT / "sample_models"
SETS = {"segmentation": MODELS / "seg_eval", "similarity": MODELS / "sim_eval"}
STEP = 0.05
TEMPERATURE = 100.0


@dataclass
class Case:
    """One explained target: an image, its object's mask (the region) and its class."""

    image: Path
    mask: np.ndarray  # (H, W) bool at the image's resolution
    target: str  # the class, as --target takes it
    index: int  # its output column (segmentation: class index; similarity: prompt index)


def cases(task: str, limit: int | None) -> list[Case]:
    folder = SETS[task]
    from PIL import Image

    out = []
    if task == "segmentation":
        index = json.loads((folder / "index.json").read_text())
        for item in index["items"]:
            mask = np.asarray(Image.open(folder / item["mask"]))
            # the mask is semantic: objects of one class share a value, so a class is one case (its whole region)
            for value in sorted({obj["value"] for obj in item["objects"]}):
                out.append(Case(folder / item["image"], mask == value, str(value), int(value)))
    else:
        prompts = (MODELS / "shapes_prompts.txt").read_text().split()
        for image in sorted(p for p in folder.glob("*.png") if not p.name.endswith(".mask.png")):
            mask = np.asarray(Image.open(image.with_name(image.stem + ".mask.png"))) > 0
            label = image.stem.rsplit("_", 1)[0]
            out.append(Case(image, mask, label, prompts.index(label)))
    return out[:limit] if limit else out


def prompt_file(index: int) -> Path:
    """One prompt's (D,) row as its own .npy (the cosine target), written once beside the benchmark's cache."""
    path = ROOT / "benchmarks" / ".cache" / "tasks" / f"prompt_{index}.npy"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.load(MODELS / "shapes_prompts.npy", allow_pickle=False)[index], allow_pickle=False)
    return path


def task_options(task: str, case: Case, zero_shot: bool) -> dict:
    if task == "segmentation":
        return {"task": "segmentation", "region": case.mask.astype(np.uint8), "target": [case.target]}
    if zero_shot:
        return {"task": "similarity", "reference": str(MODELS / "shapes_prompts.npy"),
                "labels": str(MODELS / "shapes_prompts.txt"), "target": [case.target]}
    return {"task": "similarity", "reference": str(prompt_file(case.index))}


def region_cells(mask: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The (h, w) output cells of an input-resolution mask, by the documented centre rule (written here
    independently of explain_cli, so the peers' score checks explain_cli's)."""
    (H, W), (h, w) = mask.shape, out_hw
    rows = [(2 * i + 1) * H // (2 * h) for i in range(h)]
    cols = [(2 * j + 1) * W // (2 * w) for j in range(w)]
    return mask[np.ix_(rows, cols)]


def score_fn(task: str, net: Callable, case: Case, zero_shot: bool) -> Callable:
    """The task's score for ``case`` on a batch of model inputs, (B, 1): what explain_cli's task computes."""
    import torch

    if task == "segmentation":
        def score(batch: "torch.Tensor") -> "torch.Tensor":
            with torch.no_grad():
                probs = torch.softmax(net(batch).double(), dim=1)[:, case.index]  # (B, h, w)
            h, w = probs.shape[-2:]
            region = torch.from_numpy(region_cells(case.mask, (h, w)))
            return probs[:, region].mean(dim=1, keepdim=True)
        return score
    prompts = torch.from_numpy(np.load(MODELS / "shapes_prompts.npy", allow_pickle=False)).double()
    prompts = prompts / prompts.norm(dim=1, keepdim=True)

    def similarity(batch: "torch.Tensor") -> "torch.Tensor":
        with torch.no_grad():
            e = net(batch).double()
        cos = (e / e.norm(dim=1, keepdim=True)) @ prompts.T
        if not zero_shot:
            return cos[:, case.index : case.index + 1]
        return torch.softmax(TEMPERATURE * cos, dim=1)[:, case.index : case.index + 1]
    return similarity


def ablationcam(net_py, x, case: Case, seed: int) -> tuple[np.ndarray, int]:
    import pytorch_grad_cam as pgc
    import torch
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    torch.manual_seed(seed)
    with torch.no_grad():
        h, w = net_py(x[None]).shape[-2:]
    region = region_cells(case.mask, (h, w)).astype(np.float32)
    calls = [0]
    handle = net_py.register_forward_hook(lambda m, i, o: calls.__setitem__(0, calls[0] + len(i[0])))
    cam = pgc.AblationCAM(model=net_py, target_layers=[net_py.d2])
    cam.batch_size = 32
    out = cam(input_tensor=x[None].clone(), targets=[SemanticSegmentationTarget(case.index, region)])
    handle.remove()
    return np.asarray(out[0], dtype=np.float64), calls[0]


def occlusion(score: Callable, x, fill, stride: int) -> tuple[np.ndarray, int]:
    """SBSM-style sliding-window occlusion: the mean score drop of the windows covering each pixel."""
    _, h, w = x.shape
    win = max(1, h // 4)
    corners = [(i, j) for i in range(0, h - win + 1, stride) for j in range(0, w - win + 1, stride)]
    base = float(score(x[None])[0, 0])
    drop, cover = np.zeros((h, w)), np.zeros((h, w))
    for a in range(0, len(corners), 64):
        chunk = corners[a : a + 64]
        batch = x[None].repeat(len(chunk), 1, 1, 1)
        for n, (i, j) in enumerate(chunk):
            batch[n, :, i : i + win, j : j + win] = fill[:, i : i + win, j : j + win]
        s = score(batch)[:, 0].numpy()
        for n, (i, j) in enumerate(chunk):
            drop[i : i + win, j : j + win] += base - s[n]
            cover[i : i + win, j : j + win] += 1
    return drop / np.maximum(cover, 1), len(corners) + 1


def python_segmenter(scripted):
    """The shipped TorchScript segmenter as its Python class (AblationCAM needs forward hooks)."""
    from train_segmenter import TinyUNet

    net = TinyUNet()
    net.load_state_dict(scripted.state_dict())
    return net.eval()


def peer_row(task: str, method: str, explainer: Explainer, case: Case, args, nets: dict) -> dict:
    import torch

    from explain_cli.baselines import make_baseline
    from explain_cli.metrics import curves
    from explain_cli.metrics.localisation import energy_in_mask, pointing_hit

    options = task_options(task, case, args.zero_shot)
    cfg = explainer.settings(seed=args.seed, evaluate=True, **options)
    started = time.perf_counter()
    first = explainer.prepare([str(case.image)], **options)[0]
    x = first.prepared.x
    baseline = make_baseline(cfg.baseline, x, first.spec, input_kind=first.item.kind)
    net = explainer.model.module
    score = score_fn(task, net, case, args.zero_shot)
    if method == "ablationcam":
        saliency, evals = ablationcam(nets.setdefault("py", python_segmenter(net)), x, case, args.seed)
    else:
        saliency, evals = occlusion(score, x, baseline, args.stride)
    maps = torch.from_numpy(saliency[None].astype(np.float32))
    metrics = cfg.evaluation
    opts = {"step": STEP, "seed": metrics.seed, "batch_size": 64}
    dele = curves.deletion_curve(score, x, maps, replacement=metrics.deletion, baseline=baseline, **opts)
    ins = curves.insertion_curve(score, x, maps, **opts)
    rdel = curves.random_deletion_curve(score, x, replacement=metrics.deletion, baseline=baseline, **opts)
    rins = curves.random_insertion_curve(score, x, **opts)
    return {"method": method, "image": case.image.name, "target": case.target, "evals": evals,
            "pointing": float(pointing_hit(saliency, case.mask, metrics.tolerance)),
            "energy": float(energy_in_mask(saliency, case.mask)),
            "deletion": float(dele.auc[0]), "random_deletion": float(rdel.auc[0]),
            "insertion": float(ins.auc[0]), "random_insertion": float(rins.auc[0]),
            "seconds": time.perf_counter() - started, "check": float(score(x[None])[0, 0])}


BUDGETED = {"kernelshap": "samples", "partition": "samples", "rise": "masks"}


def own_row(task: str, method: str, explainer: Explainer, case: Case, args) -> dict:
    options = task_options(task, case, args.zero_shot)
    if method in BUDGETED:
        options[BUDGETED[method]] = args.budget
    started = time.perf_counter()
    if task == "similarity":  # segmentation: the region is the metrics' mask by default
        options["mask"] = str(case.image.with_name(case.image.stem + ".mask.png"))
    e = explainer.explain([str(case.image)], method=method, seed=args.seed, evaluate=True, eval_step=STEP,
                          **options)[0]
    ev = e.evaluation
    return {"method": method, "image": case.image.name, "target": case.target, "evals": e.evaluations,
            "pointing": float(ev["pointing_hit"][0]), "energy": ev["energy_in_mask"][0],  # None: no positive attribution
            "deletion": float(ev["deletion_auc"][0]), "random_deletion": float(ev["random_deletion_auc"][0]),
            "insertion": float(ev["insertion_auc"][0]), "random_insertion": float(ev["random_insertion_auc"][0]),
            "seconds": time.perf_counter() - started, "reference": float(e.target_scores[0])}


def mean(values) -> float:
    values = [float(v) for v in values if v is not None]
    return statistics.fmean(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="segmentation,similarity")
    parser.add_argument("--methods", default="kernelshap,partition,rise,ablation,ablationcam,occlusion")
    parser.add_argument("--budget", type=int, default=1000, help="Evaluations of kernelshap/partition, RISE's masks.")
    parser.add_argument("--stride", type=int, default=8, help="occlusion's window stride, px (window: side / 4).")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zero-shot", action="store_true",
                        help="similarity: softmax(100 cos) over the four prompts (saturates near 1) instead of cos to "
                             "the object's own prompt.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    peers = {"segmentation": ("ablationcam",), "similarity": ("occlusion",)}
    for task in args.tasks.split(","):
        model = MODELS / ("shapes_segmenter.pt" if task == "segmentation" else "shapes_embedder.pt")
        explainer = Explainer(str(model), device="cpu", quiet=True)
        methods = [m for m in args.methods.split(",") if m in BUDGETED or m == "ablation" or m in peers[task]]
        todo, rows, nets, checks = cases(task, args.limit), [], {}, {}
        for method in methods:
            for case in todo:
                if method in peers[task]:
                    try:
                        row = peer_row(task, method, explainer, case, args, nets)
                    except ImportError as error:
                        print(f"{method}: skipped ({error}; pip install '.[bench]')", file=sys.stderr)
                        break
                else:
                    row = own_row(task, method, explainer, case, args)
                    checks[(case.image.name, case.target)] = row["reference"]
                rows.append(row)
                print(f"  {task} {method:11s} {case.image.name:14s} {case.target:9s} pointing {row['pointing']:.0f} "
                      f"del {row['deletion']:.3f} ins {row['insertion']:.3f} {row['seconds']:.1f}s",
                      file=sys.stderr, flush=True)
        for row in rows:  # the peers' score function is explain_cli's score
            ref = checks.get((row["image"], row["target"]))
            if "check" in row and ref is not None and abs(row["check"] - ref) > 1e-5:
                raise SystemExit(f"{task}: the peer's score {row['check']} differs from explain_cli's {ref} "
                                 f"on {row['image']} {row['target']}")
        print(f"\n{task}: {model.name}, {len(todo)} targets on {SETS[task].relative_to(ROOT)}; mean per target; "
              f"deletion ROAD and insertion at step {STEP}; torch {torch.__version__}, {args.threads} thread(s)\n")
        print("| method | evaluations | pointing | energy in mask | deletion AUC ↓ | random deletion | del ÷ random "
              "| insertion AUC ↑ | random insertion | s/target |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for method in methods:
            r = [row for row in rows if row["method"] == method]
            if not r:
                continue
            dele, rand = mean(x["deletion"] for x in r), mean(x["random_deletion"] for x in r)
            print(f"| {method} | {mean(x['evals'] for x in r):.0f} | {mean(x['pointing'] for x in r):.3f} "
                  f"| {mean(x['energy'] for x in r):.3f} | {dele:.3f} | {rand:.3f} | {dele / rand:.2f} "
                  f"| {mean(x['insertion'] for x in r):.3f} | {mean(x['random_insertion'] for x in r):.3f} "
                  f"| {mean(x['seconds'] for x in r):.2f} |")
    print("\n    python " + " ".join(shlex.quote(a) for a in ["benchmarks/tasks.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
