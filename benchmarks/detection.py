"""Explaining a detector: explain_cli's engines against xaitk-saliency's D-RISE at equal forward passes.

On the sample detector's evaluation set (``sample_models/shapes_detector.pt``, 128², and
``sample_models/det_eval/``: scenes, instance masks, ground-truth boxes), every row explains
every box the detector finds on the clean image (score >= 0.5: exactly the set's objects) and
is scored by the same code:

* explain_cli rows (``kernelshap@1000``, ``partition@1000``, ``rise@1000``, ``ablation``, ...):
  ``explain_cli.explain(model, image, task="detection", method=..., samples=N)``, all boxes from
  one set of evaluations; its defaults otherwise (SLIC ~50 superpixels, blur baseline; rise is
  D-RISE on explain_cli's core: grid 16, p1 0.5);
* ``xaitk@N``: xaitk-saliency's ``DRISEStack`` (grid 16, p1 0.5, N masks = N forward passes)
  through an adapter to its ``DetectImageObjects`` interface, given the same reference
  detections (boxes and class probabilities) and, as fill, the same blurred image that
  explain_cli uses as its baseline; ``xaitk-black@N`` keeps xaitk's own default fill (black).

Both tools score a perturbed image by D-RISE's similarity max_j IoU · cos(P_t, P_j) · O_j; the
sample detector gives class probabilities, so O_j = 1 in both.

Metrics per ground-truth object (matched to the clean image's detection of its class with the
highest IoU), all from ``explain_cli.metrics`` on the map at the model's resolution:

* pointing: the map's maximum lies on the object's pixels (``NAME.mask.png``, tolerance 0 px);
* energy in box: share of the positive attribution inside the ground-truth box;
* deletion AUC (ROAD imputation, lower is better) and insertion AUC (from a blurred copy,
  higher is better) of the box's D-RISE score, each map ranking its own box; the random
  order's deletion AUC beside them (one random order per image, the same for every row).

Speed and memory: each row runs in a fresh process (one torch thread and one BLAS thread,
batch 64). For every image the explanation is timed from the image file to the maps (reading,
segmentation, baseline, f(x), every forward pass, the estimate), then the detector alone on
ready-made batches of the same image for the same number of forward passes ("bare": the
floor of any method; this detector's forward time does not depend on the image's content,
its top-K decoding is fixed-size). The ratio of the sums is the row's overhead, measured
interleaved so load on the machine hits both sides alike, in the process's CPU time
(everything runs on one thread, and CPU time barely moves when other processes share the
cores) and in wall time. Peak RSS is the process's high-water mark (``getrusage``) after the
row; compare it between two budgets of one method (the process's imports and model are the
same).

    python benchmarks/detection.py                                   # the default rows, 24 images (5,000-mask rows on 12)
    python benchmarks/detection.py --rows kernelshap@1000,xaitk@1000 --limit 6
    python benchmarks/detection.py --model PATH.pt --eval-dir DIR    # another detector and set (same layout)

Needs the ``bench`` extra (``pip install '.[bench]'``: xaitk-saliency); a missing package skips
its rows with a note. Explanations are cached in ``benchmarks/.cache/detection/`` (per row and
image list); ``--fresh`` recomputes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = ROOT / "sample_models" / "shapes_detector.pt"
EVAL = ROOT / "sample_models" / "det_eval"
CACHE = ROOT / "benchmarks" / ".cache" / "detection"
DEFAULT_ROWS = ("kernelshap@500,kernelshap@1000,partition@1000,rise@1000,ablation,"
                "xaitk@500,xaitk@1000,xaitk-black@1000,xaitk@5000")
#: D-RISE's settings (Petsiuk et al. 2021), for xaitk and for explain_cli's rise alike.
GRID, P1 = 16, 0.5
#: Rows with at least this many forward passes run on the first ``--reference-limit`` images.
REFERENCE_BUDGET = 5000
CACHE_VERSION = 2  # bump when a row's explanations change
BUDGET_OPTION = {"kernelshap": "samples", "partition": "samples", "lime": "samples", "rise": "masks"}


@dataclass(frozen=True)
class Row:
    """One configuration: ``kernelshap@1000``, ``ablation``, ``xaitk@5000``, ``xaitk-black@1000``."""

    spec: str

    @property
    def method(self) -> str:
        return self.spec.partition("@")[0]

    @property
    def budget(self) -> int | None:
        tail = self.spec.partition("@")[2]
        return int(tail) if tail else None

    @property
    def xaitk(self) -> bool:
        return self.method.startswith("xaitk")

    @property
    def label(self) -> str:
        if self.xaitk:
            fill = "black fill" if self.method == "xaitk-black" else "blur fill"
            return f"xaitk DRISEStack, {self.budget} masks ({fill})"
        if self.method == "rise":
            return f"explain_cli rise (D-RISE), {self.budget} masks"
        return f"explain_cli {self.method}" + (f", {self.budget} samples" if self.budget else "")


def check_row(spec: str) -> Row:
    row = Row(spec.strip())
    from explain_cli.engines import ENGINES

    if row.xaitk:
        if row.method not in ("xaitk", "xaitk-black") or not row.budget:
            raise SystemExit(f"row {spec!r}: xaitk rows are xaitk@N or xaitk-black@N (N masks)")
    elif row.method not in ENGINES or (row.budget is not None and row.method not in BUDGET_OPTION):
        raise SystemExit(f"row {spec!r}: METHOD[@N] with METHOD one of {', '.join(ENGINES)} (N for "
                         f"{', '.join(BUDGET_OPTION)}), or xaitk@N / xaitk-black@N")
    return row


# ---------------------------------------------------------------------------------------------
# The evaluation set.
# ---------------------------------------------------------------------------------------------

def load_set(eval_dir: Path) -> dict:
    index = json.loads((eval_dir / "boxes.json").read_text())
    return {item["image"]: item for item in index["items"]} | {"__classes__": index["classes"]}


def read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).copy()


def read_instances(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img).copy()


# ---------------------------------------------------------------------------------------------
# The detector as both tools see it.
# ---------------------------------------------------------------------------------------------

class Detector:
    """The sample detector (any model explain_cli loads) with its declared preprocessing."""

    def __init__(self, path: Path) -> None:
        import torch

        from explain_cli.models import load_model

        self.loaded = load_model(str(path), device="cpu")
        self.module = self.loaded.module
        spec = self.loaded.preprocess
        self.mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.labels = list(self.loaded.labels or [])

    def normalise(self, pixels: np.ndarray) -> "torch.Tensor":
        """(N, H, W, 3) uint8 -> (N, 3, H, W) model input."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255.0
        return ((x - self.mean) / self.std).contiguous()

    def to_pixels(self, x: "torch.Tensor") -> np.ndarray:
        """(3, H, W) model input -> (H, W, 3) uint8."""
        pixels = (x[None].float() * self.std + self.mean)[0].clamp(0, 1) * 255.0
        return pixels.round().to(dtype=__import__("torch").uint8).permute(1, 2, 0).numpy()

    def bare(self, x: "torch.Tensor", evaluations: int, batch_size: int) -> float:
        """Seconds for the detector alone on ready-made batches of ``x`` (C, H, W): the floor of any method."""
        from _common import time_forward

        return time_forward(self.module, x, evaluations, batch_size)


def xaitk_blackbox(detector: Detector, batch_size: int):
    """The detector behind smqtk-detection's ``DetectImageObjects``, as xaitk's DRISEStack calls it."""
    import torch
    from smqtk_detection.interfaces.detect_image_objects import DetectImageObjects
    from smqtk_image_io.bbox import AxisAlignedBoundingBox

    class SampleDetector(DetectImageObjects):
        """Images (H, W, 3) uint8 in; per image [(box, {label: probability})] out, in batches."""

        forwards = 0

        def detect_objects(self, img_iter):
            out, batch = [], []
            for img in img_iter:
                batch.append(img)
                if len(batch) == batch_size:
                    out.extend(self._run(batch))
                    batch = []
            if batch:
                out.extend(self._run(batch))
            return out

        def _run(self, batch):
            with torch.inference_mode():
                raw = detector.module(detector.normalise(np.stack(batch)))
            SampleDetector.forwards += len(batch)
            names = detector.labels
            result = []
            for d in raw:
                boxes = d["boxes"].double().numpy()
                probs = d["probs"].double().numpy() if "probs" in d else None
                if probs is None:  # one-hot × score: xaitk then moves the score into the objectness
                    probs = np.zeros((len(boxes), len(names)))
                    probs[np.arange(len(boxes)), d["labels"].numpy()] = d["scores"].double().numpy()
                result.append([(AxisAlignedBoundingBox(b[:2], b[2:]), dict(zip(names, p.tolist())))
                               for b, p in zip(boxes, probs)])
            return result

        def get_config(self):
            return {}

    return SampleDetector()


# ---------------------------------------------------------------------------------------------
# One row in a fresh process: explanations, timings and peak memory.
# ---------------------------------------------------------------------------------------------

def api_has_detection() -> bool:
    from explain_cli.options import schema

    return "task" in schema.OPTIONS


def explain_cli_maps(detector: Detector, explainer, path: Path, row: Row, seed: int, batch_size: int):
    """(maps (K, H, W), boxes (K, 4), forward passes) from explain_cli for every box of the image."""
    values = {BUDGET_OPTION[row.method]: row.budget} if row.budget else {}
    if api_has_detection():
        e = explainer.explain([str(path)], method=row.method, seed=seed, batch_size=batch_size, **values)[0]
        return e.segment_maps(), np.array([t.box for t in e.details], dtype=np.float64), e.evaluations
    # Until `task` is an option: the same wiring by hand (explain_cli.api's make_evaluator and make_problem).
    import torch

    from explain_cli.api import make_evaluator, make_problem
    from explain_cli.tasks import DetectionTask, TargetRequest, reference_targets

    if row.method == "rise":
        values.update(grid=GRID, p1=P1)  # DetectionTask.engine_defaults, which the front door applies
    cfg = explainer.settings(method=row.method, seed=seed, batch_size=batch_size, **values)
    first = explainer.prepare([str(path)], method=row.method)[0]
    x = first.prepared.x
    evaluator = make_evaluator(explainer.model, cfg)
    targets, reference = reference_targets(DetectionTask(), evaluator, x[None],
                                           TargetRequest(size=tuple(x.shape[1:]), labels=detector.labels))
    problem = make_problem(cfg, x, first, evaluator, reference[0])
    attribution = cfg.engine.run(problem, cfg.params, torch.Generator().manual_seed(seed))
    maps = attribution.pixel_maps if attribution.pixel_maps is not None \
        else attribution.scores[:, first.segmentation.labels]
    return maps, np.array([t.box for t in targets], dtype=np.float64), evaluator.evaluations


def xaitk_maps(detector: Detector, path: Path, row: Row, seed: int, batch_size: int):
    """(maps, boxes, forward passes) from xaitk's DRISEStack for every box the detector finds (score >= 0.5)."""
    import torch
    from xaitk_saliency.impls.gen_object_detector_blackbox_sal.drise import DRISEStack

    from explain_cli.baselines import make_baseline
    from explain_cli.options.parse import parse_baseline
    from explain_cli.tasks import DetectionTask, TargetRequest

    image = read_image(path)
    x = detector.normalise(image[None])[0]
    with torch.inference_mode():  # the reference detections: one forward on the clean image
        raw = detector.module(x[None])
    task = DetectionTask()
    targets = task.targets(task.decode(raw, tuple(x.shape[1:])), TargetRequest(size=tuple(x.shape[1:])))
    boxes = np.array([t.box for t in targets], dtype=np.float64)
    scores = np.array([t.class_vector for t in targets], dtype=np.float64)
    fill = None
    if row.method == "xaitk":  # explain_cli's default baseline, the blurred image, in pixels
        fill = detector.to_pixels(make_baseline(parse_baseline("blur"), x, detector.loaded.preprocess))
    blackbox = xaitk_blackbox(detector, batch_size)
    saliency = DRISEStack(n=row.budget, s=GRID, p1=P1, seed=seed, fill=fill, threads=0)
    maps = saliency.generate(image, boxes, scores, blackbox)
    if len(maps) == 0:  # xaitk returns nothing when no perturbed image had any detection
        maps = np.zeros((len(boxes), *image.shape[:2]))
    return np.asarray(maps, dtype=np.float64), boxes, 1 + blackbox.forwards


def worker(args: argparse.Namespace) -> None:
    """Explain the images with one row; write maps, timings and peak RSS to ``--out``."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    # numpy's and scipy's BLAS too (OpenBLAS starts one thread per core): both tools' own numpy
    # work then runs on the threads the row is given, like the detector
    threadpool_limits(limits=args.threads, user_api="blas")
    row = check_row(args.worker)
    detector = Detector(Path(args.model))
    explainer = None
    if not row.xaitk:
        from explain_cli.api import Explainer

        options = {"task": "detection"} if api_has_detection() else {}
        explainer = Explainer(detector.loaded, device="cpu", **options)
    names = args.images.split(",")
    eval_dir = Path(args.eval_dir)

    def explain(path: Path, row: Row):
        if row.xaitk:
            return xaitk_maps(detector, path, row, args.seed, args.batch_size)
        return explain_cli_maps(detector, explainer, path, row, args.seed, args.batch_size)

    # Warm-up, untimed: imports, TorchScript's profiling runs, first-call costs of either tool.
    # At most 1,000 forward passes, on the first image; what it allocates counts in the peak RSS
    # as every explanation's does.
    first = detector.normalise(read_image(eval_dir / names[0])[None])[0]
    detector.bare(first, 2 * args.batch_size, args.batch_size)
    explain(eval_dir / names[0], Row(row.spec if (row.budget or 0) <= 1000 else f"{row.method}@1000"))
    if explainer is not None:
        explainer._cache.clear()  # the first image pays its segmentation and baseline like the others
    out: dict = {"row": row.spec, "images": {}, "api": api_has_detection() and not row.xaitk}
    maps_out = {}
    for name in names:
        path = eval_dir / name
        start, cpu = time.perf_counter(), time.process_time()
        maps, boxes, evaluations = explain(path, row)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        x = detector.normalise(read_image(path)[None])[0]
        bare_cpu = time.process_time()
        bare = detector.bare(x, evaluations, args.batch_size)
        bare_cpu = time.process_time() - bare_cpu
        out["images"][name] = {"seconds": seconds, "bare_seconds": bare, "cpu_seconds": cpu,
                               "bare_cpu_seconds": bare_cpu, "evaluations": int(evaluations), "boxes": boxes.tolist()}
        maps_out[name] = np.asarray(maps, dtype=np.float32)
        print(f"  {row.spec:16s} {name:14s} {evaluations:5d} passes {seconds:7.2f} s (bare {bare:6.2f} s); "
              f"CPU {cpu:6.2f} s (bare {bare_cpu:6.2f} s)", file=sys.stderr, flush=True)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    np.savez_compressed(Path(args.out).with_suffix(".npz"), **{n: m for n, m in maps_out.items()})
    Path(args.out).with_suffix(".json").write_text(json.dumps(out, indent=1))


def cache_stem(row: Row, names: list[str], args: argparse.Namespace) -> Path:
    """Where a row's explanations are cached: by row, images, seed, batch size, threads, model and version."""
    key = json.dumps([CACHE_VERSION, not row.xaitk and api_has_detection(), row.spec, names, args.seed,
                      args.batch_size, args.threads, _file_hash(Path(args.model))])
    return CACHE / f"{row.spec.replace('@', '_')}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def run_row(row: Row, names: list[str], args: argparse.Namespace) -> tuple[dict, dict]:
    """The row's worker output, from the cache when it is there."""
    CACHE.mkdir(parents=True, exist_ok=True)
    stem = cache_stem(row, names, args)
    if args.fresh or not stem.with_suffix(".json").exists():
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", row.spec, "--images", ",".join(names),
                   "--out", str(stem), "--model", str(args.model), "--eval-dir", str(args.eval_dir),
                   "--seed", str(args.seed), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        result = subprocess.run(command, env=env)
        if result.returncode != 0:
            raise SystemExit(f"row {row.spec} failed (exit {result.returncode})")
    out = json.loads(stem.with_suffix(".json").read_text())
    with np.load(stem.with_suffix(".npz")) as data:
        maps = {n: data[n] for n in data.files}
    out["stem"] = str(stem)
    return out, maps


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Metrics: one harness for every row.
# ---------------------------------------------------------------------------------------------

class Scorer:
    """The box scores of one image's detections (D-RISE similarity), on explain_cli's evaluator."""

    def __init__(self, detector: Detector, image: np.ndarray, batch_size: int) -> None:
        from explain_cli.core import Evaluator
        from explain_cli.tasks import DetectionTask, TargetRequest, reference_targets

        self.x = detector.normalise(image[None])[0]
        self.evaluator = Evaluator(detector.module, __import__("torch").device("cpu"), batch_size=batch_size)
        self.targets, self.reference = reference_targets(DetectionTask(), self.evaluator, self.x[None],
                                                         TargetRequest(size=tuple(self.x.shape[1:]),
                                                                       labels=detector.labels))
        self.boxes = np.array([t.box for t in self.targets], dtype=np.float64)
        self.labels = [t.index for t in self.targets]


def match(gt_box, gt_label: int, boxes: np.ndarray, labels: list[int]) -> int | None:
    """The detection of the object's class with the highest IoU (>= 0.5) with its ground-truth box."""
    import torch
    from torchvision.ops import box_iou

    if not len(boxes):
        return None
    iou = box_iou(torch.tensor([gt_box], dtype=torch.float64), torch.from_numpy(boxes))[0].numpy()
    iou = np.where(np.array(labels) == gt_label, iou, 0.0)
    k = int(iou.argmax())
    return k if iou[k] >= 0.5 else None


def image_metrics(scorer: Scorer, item: dict, classes: list[str], maps: np.ndarray, boxes: np.ndarray,
                  instances: np.ndarray, args: argparse.Namespace, random_auc: np.ndarray) -> list[dict]:
    """Per ground-truth object: pointing, energy in box, deletion / insertion AUC and the random deletion AUC."""
    from explain_cli.metrics.curves import deletion_curve, insertion_curve
    from explain_cli.metrics.localisation import energy_in_mask, pointing_hit
    from explain_cli.tasks.boxes import box_mask

    if boxes.shape != scorer.boxes.shape or not np.allclose(boxes, scorer.boxes, atol=1e-3):
        raise SystemExit(f"{item['image']}: the row explained boxes {boxes.round(1).tolist()}, the metrics' "
                         f"detections are {scorer.boxes.round(1).tolist()}")
    opts = {"step": args.eval_step, "seed": args.seed}
    dele = deletion_curve(scorer.evaluator, scorer.x, maps, replacement=args.deletion, **opts).auc
    ins = insertion_curve(scorer.evaluator, scorer.x, maps, **opts).auc
    rows = []
    for obj in item["objects"]:
        label = classes.index(obj["label"])
        k = match(obj["box"], label, scorer.boxes, scorer.labels)
        if k is None:
            print(f"  {item['image']}: object {obj['id']} ({obj['label']}) has no detection; skipped", file=sys.stderr)
            continue
        h, w = maps.shape[1:]
        rows.append({
            "image": item["image"], "object": obj["id"], "label": obj["label"],
            "pointing": float(pointing_hit(maps[k], instances == obj["id"], 0.0)),
            "energy": energy_in_mask(maps[k], box_mask(tuple(float(v) for v in obj["box"]), (h, w))),
            "deletion": float(dele[k]), "insertion": float(ins[k]), "random_deletion": float(random_auc[k]),
        })
    return rows


# ---------------------------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------------------------

def mean(values) -> float:
    values = [float(v) for v in values if v is not None and np.isfinite(v)]
    return statistics.fmean(values) if values else float("nan")


def table(rows: list[Row], outputs: dict, metrics: dict, names: list[str]) -> list[str]:
    lines = ["| method | forward passes | pointing | energy in box | deletion AUC ↓ | random deletion "
             "| del ÷ random | insertion AUC ↑ | CPU s/image | × bare forward | wall s/image | × bare (wall) "
             "| peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        out = outputs[row.spec]
        per = [m for m in metrics[row.spec] if m["image"] in names]
        images = [out["images"][n] for n in names]
        passes = mean(i["evaluations"] for i in images)
        seconds = sum(i["seconds"] for i in images)
        bare = sum(i["bare_seconds"] for i in images)
        cpu, bare_cpu = sum(i["cpu_seconds"] for i in images), sum(i["bare_cpu_seconds"] for i in images)
        dele, rand = mean(m["deletion"] for m in per), mean(m["random_deletion"] for m in per)
        lines.append(
            f"| {row.label} | {passes:.0f} | {mean(m['pointing'] for m in per):.3f} "
            f"| {mean(m['energy'] for m in per):.3f} | {dele:.3f} | {rand:.3f} | {dele / rand:.2f} "
            f"| {mean(m['insertion'] for m in per):.3f} | {cpu / len(images):.2f} | {cpu / bare_cpu:.2f} "
            f"| {seconds / len(images):.1f} | {seconds / bare:.2f} "
            f"| {out['peak_rss_mb']:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=DEFAULT_ROWS, help="Comma-separated METHOD[@N], xaitk@N, xaitk-black@N.")
    parser.add_argument("--limit", type=int, default=None, help="First N images of the set. [default: all]")
    parser.add_argument("--reference-limit", type=int, default=12,
                        help=f"Images for rows of >= {REFERENCE_BUDGET} forward passes. [default: 12]")
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--eval-dir", default=str(EVAL))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process. [default: 1]")
    parser.add_argument("--deletion", default="road", help="Deletion replacement: road | blur | baseline.")
    parser.add_argument("--eval-step", type=float, default=0.05,
                        help="Share of the pixels per deletion/insertion step (ROAD costs a solve per step). [default: 0.05]")
    parser.add_argument("--fresh", action="store_true", help="Recompute cached explanations.")
    parser.add_argument("--json", default=None, help="Also write the per-object rows to this file.")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--images", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch

    torch.set_num_threads(args.threads)
    rows = [check_row(s) for s in args.rows.split(",") if s.strip()]
    if any(r.xaitk for r in rows):
        try:
            import xaitk_saliency  # noqa: F401
        except ImportError:
            print("xaitk-saliency is not installed (pip install '.[bench]'): its rows are skipped", file=sys.stderr)
            rows = [r for r in rows if not r.xaitk]
    eval_dir = Path(args.eval_dir)
    dataset = load_set(eval_dir)
    classes = dataset.pop("__classes__")
    names = sorted(dataset)[: args.limit] if args.limit else sorted(dataset)
    reference_names = names[: args.reference_limit]
    per_row = {r.spec: (reference_names if (r.budget or 0) >= REFERENCE_BUDGET else names) for r in rows}

    outputs, maps = {}, {}
    for row in rows:
        outputs[row.spec], maps[row.spec] = run_row(row, per_row[row.spec], args)

    detector = Detector(Path(args.model))
    metrics: dict[str, list[dict]] = {r.spec: [] for r in rows}
    from explain_cli.metrics.curves import random_deletion_curve

    settings = f"{args.deletion}-{args.eval_step}-{args.seed}"
    done = {}  # cached metrics: per row, per image
    for row in rows:
        path = Path(outputs[row.spec]["stem"] + f".metrics-{settings}.json")
        done[row.spec] = json.loads(path.read_text()) if path.exists() and not args.fresh else {}
    for name in names:
        todo = [r for r in rows if name in per_row[r.spec] and name not in done[r.spec]]
        if todo:
            item = dataset[name]
            scorer = Scorer(detector, read_image(eval_dir / name), args.batch_size)
            instances = read_instances(eval_dir / item["mask"])
            random_auc = random_deletion_curve(scorer.evaluator, scorer.x, replacement=args.deletion,
                                               step=args.eval_step, seed=args.seed).auc
            for row in todo:
                boxes = np.array(outputs[row.spec]["images"][name]["boxes"], dtype=np.float64)
                done[row.spec][name] = image_metrics(scorer, item, classes, maps[row.spec][name].astype(np.float64),
                                                     boxes, instances, args, random_auc)
                Path(outputs[row.spec]["stem"] + f".metrics-{settings}.json").write_text(json.dumps(done[row.spec]))
            print(f"  metrics {name}: {', '.join(r.spec for r in todo)}", file=sys.stderr, flush=True)
        for row in rows:
            if name in per_row[row.spec]:
                metrics[row.spec].extend(dict(m, row=row.spec) for m in done[row.spec][name])

    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/detection.py", *sys.argv[1:]])
    n_objects = sum(len(dataset[n]["objects"]) for n in names)
    print(f"\n{Path(args.model).name}, {len(names)} images ({n_objects} objects); mean per object; "
          f"deletion {args.deletion.upper()} and insertion at step {args.eval_step}; torch {torch.__version__}, "
          f"{args.threads} thread(s), batch {args.batch_size}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}\n")
    main_rows = [r for r in rows if per_row[r.spec] == names]
    for line in table(main_rows, outputs, metrics, names):
        print(line)
    if len(reference_names) < len(names) and any(per_row[r.spec] == reference_names for r in rows):
        n_ref = sum(len(dataset[n]["objects"]) for n in reference_names)
        print(f"\nThe first {len(reference_names)} images ({n_ref} objects), every row:\n")
        for line in table(rows, outputs, metrics, reference_names):
            print(line)
    print(f"\n    {command}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": outputs, "metrics": metrics}, indent=1))


if __name__ == "__main__":
    main()
