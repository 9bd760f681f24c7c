"""Every method at (roughly) equal evaluation budgets on the ground-truth set sample_models/eval/.

For each image of sample_models/eval/index.json (64×64, one shape, its mask and class), explain
the image's own class with each method through the Python API (``explain_cli.explain`` options,
``evaluate=True`` and ``mask=`` the object's mask) and average over images:

* evals: model evaluations spent on the explanation itself (the evaluation's are not counted);
* pointing: pointing-game hit rate (the map's peak inside the mask, ``tolerance`` px);
* energy in mask: share of the positive attribution inside the object;
* deletion AUC (lower is better; ``deletion`` replacement, ROAD by default) and insertion AUC
  (higher is better), each next to the same curve for a random pixel order;
* s/image: wall time per image, evaluation included.

Runs offline with only the tool installed (the model and the set ship with the repository).

Peer rows (benchmarks/quality_peers.py) need the optional ``bench`` extra (``pip install
'.[bench]'``); a peer whose package is missing is skipped with a note. captum-lime,
captum-kernelshap and lime-pkg get about 1000 evaluations, captum-ablation one per superpixel,
all on explain_cli's SLIC superpixels and baseline; scorecam and ablationcam (pytorch-grad-cam,
last conv layer of the rebuilt ShapesCNN) cost one forward per channel. Their maps go through
the same explain_cli.metrics functions, options and seeds as explain_cli's own rows.

    python benchmarks/quality.py                          # all 45 images, every method, seed 0
    python benchmarks/quality.py --limit 12 --methods kernelshap,rise --seeds 0,1
    python benchmarks/quality.py --limit 12 --methods rise --set grid=5 --set p1=0.3
    python benchmarks/quality.py --methods captum-lime,captum-kernelshap,captum-ablation,lime-pkg,scorecam,ablationcam
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # quality_peers, also when run by path from elsewhere

from explain_cli.api import Explainer  # noqa: E402
from quality_peers import PEERS  # noqa: E402  (imports no peer package until one is run)

EVAL = ROOT / "sample_models" / "eval"
MODEL = ROOT / "sample_models" / "shapes_cnn.pt"
#: Each method's budget option at about 500 model evaluations (ablation: one per segment, M + 2).
BUDGETS = {
    "kernelshap": {"samples": 500},
    "partition": {"samples": 500},
    "lime": {"samples": 500},
    "rise": {"masks": 500},
    "ablation": {},
}


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def balanced(items: list[dict], limit: int | None) -> list[dict]:
    """The first ``limit`` items taken round-robin over classes (a subset keeps the class mix)."""
    by_class: dict[str, list[dict]] = {}
    for item in items:
        by_class.setdefault(item["label"], []).append(item)
    order, queues = [], [list(q) for q in by_class.values()]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order[:limit] if limit else order


def mean(values):
    values = [float(v) for v in values if v is not None]
    return statistics.fmean(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="Images (balanced over classes). [default: all]")
    parser.add_argument("--methods", default=",".join([*BUDGETS, *PEERS]),
                        help=f"Comma-separated methods; peers (bench extra): {', '.join(PEERS)}.")
    parser.add_argument("--seeds", default="0", help="Comma-separated seeds (results averaged over all).")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="Extra option for every method (repeatable), e.g. baseline=blur, n_segments=30.")
    parser.add_argument("--default-budgets", action="store_true",
                        help="Use each method's default budget instead of about 500 evaluations.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the model is tiny). [default: 1]")
    parser.add_argument("--json", default=None, help="Also write the per-image rows to this file.")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in BUDGETS and m not in PEERS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {', '.join([*BUDGETS, *PEERS])}")
    from quality_peers import available

    for name in [m for m in methods if m in PEERS]:
        note = available(name)
        if note:
            print(note, file=sys.stderr)
            methods.remove(name)
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = {}
    for pair in args.set:
        key, _, value = pair.partition("=")
        extra[key.strip()] = parse_value(value.strip())

    index = json.loads((EVAL / "index.json").read_text())
    items = balanced(index["items"], args.limit)
    explainer = Explainer(str(MODEL), device="cpu", quiet=True)

    rows = []
    for method in methods:
        for seed in seeds:
            for item in items:
                if method in PEERS:
                    rows.append(peer_row(explainer, method, seed, item, extra))
                    report(rows[-1])
                    continue
                options = dict({} if args.default_budgets else BUDGETS[method], **extra)
                start = time.perf_counter()
                e = explainer.explain([str(EVAL / item["image"])], method=method, seed=seed,
                                      target=[str(item["class_index"])], evaluate=True,
                                      mask=str(EVAL / item["mask"]), **options)[0]
                seconds = time.perf_counter() - start
                ev = e.evaluation
                rows.append({
                    "method": method, "seed": seed, "image": item["image"], "label": item["label"],
                    "evals": e.evaluations,  # the evaluation block counts its own forwards apart
                    "pointing": float(ev["pointing_hit"][0]),
                    "energy": ev["energy_in_mask"][0],
                    "deletion": ev["deletion_auc"][0], "random_deletion": ev["random_deletion_auc"][0],
                    "insertion": ev["insertion_auc"][0], "random_insertion": ev["random_insertion_auc"][0],
                    "seconds": seconds, "deletion_mode": ev.get("deletion"),
                })
                report(rows[-1])

    mode = rows[0]["deletion_mode"] if rows else "road"
    print()
    print(f"{len(items)} images × {len(seeds)} seed(s); model {MODEL.name}; mean over images"
          + (f"; options {extra}" if extra else ""))
    print()
    print(f"| method | evals | pointing | energy in mask | deletion AUC ({mode.upper()}) ↓ | random deletion "
          "| insertion AUC ↑ | random insertion | s/image |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for method in methods:
        r = [row for row in rows if row["method"] == method]
        print(f"| {method} | {mean(x['evals'] for x in r):.0f} | {mean(x['pointing'] for x in r):.2f} "
              f"| {mean(x['energy'] for x in r):.3f} | {mean(x['deletion'] for x in r):.3f} "
              f"| {mean(x['random_deletion'] for x in r):.3f} | {mean(x['insertion'] for x in r):.3f} "
              f"| {mean(x['random_insertion'] for x in r):.3f} | {mean(x['seconds'] for x in r):.2f} |")
    print()
    print("    python " + " ".join(shlex.quote(a) for a in ["benchmarks/quality.py", *sys.argv[1:]]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def report(row: dict) -> None:
    print(f"  {row['method']:10s} seed {row['seed']} {row['image']:16s} pointing {row['pointing']:.0f} "
          f"energy {row['energy']:.3f} del {row['deletion']:.3f} {row['seconds']:.1f}s", file=sys.stderr, flush=True)


_PEER_STATE: dict = {}


def peer_row(explainer: Explainer, method: str, seed: int, item: dict, extra: dict) -> dict:
    """One peer's map for the image's class, scored exactly like explain_cli's ``evaluate=True`` and
    ``mask=`` block (explain_cli.metrics.suite.run_metrics): same Evaluator output space, deletion
    replacement, step, seed, baseline, pointing tolerance."""
    import torch

    from explain_cli.baselines import make_baseline
    from explain_cli.core import Evaluator, resolve_batch_size
    from explain_cli.metrics import curves
    from explain_cli.metrics.localisation import energy_in_mask, load_mask, pointing_hit
    from quality_peers import Case, Counted, run_peer

    if "net" not in _PEER_STATE:
        _PEER_STATE["net"] = Counted(explainer.model.module)
    net = _PEER_STATE["net"]
    # the options of explain_cli's superpixel rows (lime/kernelshap): its SLIC segments and baseline
    cfg = explainer.settings(method="kernelshap", seed=seed, evaluate=True, **extra)
    start = time.perf_counter()
    first = explainer.prepare([str(EVAL / item["image"])], method="kernelshap", **extra)[0]
    x = first.prepared.x
    baseline = make_baseline(cfg.baseline, x, first.spec, input_kind=first.item.kind)
    target = int(item["class_index"])
    case = Case(x=x, baseline=baseline, segments=first.segmentation.labels, target=target, seed=seed)
    saliency, evals = run_peer(method, net, case)
    device = explainer.model.device
    evaluator = Evaluator(explainer.model.module, device, batch_size=resolve_batch_size(cfg.model.batch_size, device),
                          output=cfg.targets.output)
    evaluator.select_targets([target])
    maps = torch.from_numpy(saliency[None].astype(np.float32))
    xd, bd = x.to(device), baseline.to(device)
    metrics = cfg.evaluation
    opts = {"step": metrics.eval_step, "seed": metrics.seed}
    with torch.inference_mode():
        dele = curves.deletion_curve(evaluator, xd, maps, replacement=metrics.deletion, baseline=bd, **opts)
        ins = curves.insertion_curve(evaluator, xd, maps, **opts)
        rdel = curves.random_deletion_curve(evaluator, xd, replacement=metrics.deletion, baseline=bd, **opts)
        rins = curves.random_insertion_curve(evaluator, xd, **opts)
    mask = load_mask(str(EVAL / item["mask"]))
    if mask.shape != saliency.shape:  # the set is 64×64 like the model; pixel maps are the model maps
        raise SystemExit(f"{item['mask']} is {mask.shape}, the model sees {saliency.shape}")
    return {
        "method": method, "seed": seed, "image": item["image"], "label": item["label"], "evals": evals,
        "pointing": float(pointing_hit(saliency, mask, metrics.tolerance)),
        "energy": float(energy_in_mask(saliency, mask)),
        "deletion": float(dele.auc[0]), "random_deletion": float(rdel.auc[0]),
        "insertion": float(ins.auc[0]), "random_insertion": float(rins.auc[0]),
        "seconds": time.perf_counter() - start, "deletion_mode": metrics.deletion,
    }


if __name__ == "__main__":
    main()
