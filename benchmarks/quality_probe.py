"""Explanation quality on the ground-truth set: pointing, energy in mask, deletion/insertion vs random.

For a few images of sample_models/eval/ (one shape each, with its mask), explain the sample
model's (correct) class with an engine and measure:

* pointing game hit rate (tolerance 0 and 4 px at 64 px, about Zhang et al.'s 15 px at 224),
  and the share of positive attribution inside the object;
* deletion AUC (lower is better) for each replacement (road, blur, zero baseline) and insertion
  AUC (higher is better), for the engine's map, the object mask used as a map (an oracle), and a
  random pixel order. A deletion mode that lets the random order beat the oracle rewards
  scattered out-of-distribution pixels rather than importance.

    python benchmarks/quality_probe.py                   # ablation, 3 images per class
    python benchmarks/quality_probe.py --method lime --per-class 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from _common import ROOT, SAMPLE_MODEL, build_problem  # noqa: E402

from explain_cli.engines import build_params, get_engine  # noqa: E402
from explain_cli.metrics.curves import (  # noqa: E402
    deletion_curve,
    insertion_curve,
    random_deletion_curve,
    random_insertion_curve,
)
from explain_cli.metrics.localisation import energy_in_mask, pointing_hit  # noqa: E402

EVAL = ROOT / "sample_models" / "eval"
MODES = ("road", "blur", "baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="ablation")
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--random-repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a shared machine; the model is tiny

    from PIL import Image

    index = json.loads((EVAL / "index.json").read_text())
    chosen, seen = [], {}
    for item in index["items"]:
        if seen.get(item["label"], 0) < args.per_class:
            seen[item["label"]] = seen.get(item["label"], 0) + 1
            chosen.append(item)
    engine = get_engine(args.method)
    rows = []
    start = time.perf_counter()
    for item in chosen:
        model, problem = build_problem(SAMPLE_MODEL, image=EVAL / item["image"])
        assert int(problem.evaluator.targets[0]) == item["class_index"], "the set holds correctly classified images"
        attribution = engine.run(problem, build_params(engine, {}), torch.Generator().manual_seed(0))
        saliency = (attribution.pixel_maps if attribution.pixel_maps is not None
                    else attribution.scores[:, problem.segments.numpy()])[0]
        mask = np.asarray(Image.open(EVAL / item["mask"])) > 0
        oracle = mask.astype(np.float64)
        ev, x = problem.evaluator, problem.x
        row = {
            "image": item["image"],
            "hit0": pointing_hit(saliency, mask, 0),
            "hit4": pointing_hit(saliency, mask, 4),
            "energy": energy_in_mask(saliency, mask),
            "area": item["area_fraction"],
        }
        for mode in MODES:
            options = dict(replacement=mode, baseline=problem.baseline)
            row[f"del_{mode}_map"] = deletion_curve(ev, x, saliency, **options).auc[0]
            row[f"del_{mode}_oracle"] = deletion_curve(ev, x, oracle, **options).auc[0]
            row[f"del_{mode}_random"] = random_deletion_curve(ev, x, repeats=args.random_repeats, **options).auc[0]
        row["ins_map"] = insertion_curve(ev, x, saliency).auc[0]
        row["ins_oracle"] = insertion_curve(ev, x, oracle).auc[0]
        row["ins_random"] = random_insertion_curve(ev, x, repeats=args.random_repeats).auc[0]
        rows.append(row)
        print(f"{item['image']:>16}  hit@0 {row['hit0']!s:5} hit@4 {row['hit4']!s:5} energy {row['energy']:.2f}  "
              + "  ".join(f"del-{m} {row[f'del_{m}_map']:.3f}/{row[f'del_{m}_oracle']:.3f}/{row[f'del_{m}_random']:.3f}"
                          for m in MODES)
              + f"  ins {row['ins_map']:.3f}/{row['ins_oracle']:.3f}/{row['ins_random']:.3f}", flush=True)

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in rows]))

    n = len(rows)
    print(f"\n{args.method} on {n} images ({time.perf_counter() - start:.0f}s); AUCs map / oracle (mask) / random")
    print(f"pointing hit rate: {mean('hit0'):.2f} (0 px), {mean('hit4'):.2f} (4 px); energy in mask {mean('energy'):.2f} "
          f"(object area {mean('area'):.2f})")
    for mode in MODES:
        beats = sum(r[f"del_{mode}_map"] < r[f"del_{mode}_random"] for r in rows)
        oracle_beats = sum(r[f"del_{mode}_oracle"] < r[f"del_{mode}_random"] for r in rows)
        print(f"deletion {mode:>8}: {mean(f'del_{mode}_map'):.3f} / {mean(f'del_{mode}_oracle'):.3f} / "
              f"{mean(f'del_{mode}_random'):.3f}; map beats random on {beats}/{n}, oracle on {oracle_beats}/{n}")
    beats = sum(r["ins_map"] > r["ins_random"] for r in rows)
    oracle_beats = sum(r["ins_oracle"] > r["ins_random"] for r in rows)
    print(f"insertion    blur: {mean('ins_map'):.3f} / {mean('ins_oracle'):.3f} / {mean('ins_random'):.3f}; "
          f"map beats random on {beats}/{n}, oracle on {oracle_beats}/{n}")


if __name__ == "__main__":
    main()
