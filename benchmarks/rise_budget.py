"""RISE: do fewer masks or a coarser grid give the same top 5 as 10x today's default?

    PYTHONPATH=. python benchmarks/rise_budget.py [--images sample|eval|all] [--limit N]
        [--grids 7,5,4] [--masks 1000,2000,4000]

With sample_models/shapes_cnn.pt, for each image: the reference is RISE at 10x the default
masks (40,000) on the default grid (7); each (grid, masks) pair is compared with it by the
top-5 segments (as a set, segments = the default SLIC superpixels). Prints how many images
each pair gets right and its evaluations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from auto_samples import image_set, top5  # noqa: E402


def main() -> None:
    import explain_cli

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default="sample", choices=("sample", "eval", "all"))
    ap.add_argument("--limit", type=int, default=0, help="Only the first N images (0: all).")
    ap.add_argument("--grids", default="7,5,4")
    ap.add_argument("--masks", default="1000,2000,4000")
    args = ap.parse_args()
    model = str(ROOT / "sample_models" / "shapes_cnn.pt")
    images = image_set(args.images)[: args.limit or None]
    pairs = [(int(g), int(n)) for g in args.grids.split(",") for n in args.masks.split(",")]
    hits = {pair: 0 for pair in pairs}
    print(f"command: PYTHONPATH=. python benchmarks/rise_budget.py --images {args.images} --limit {args.limit} "
          f"--grids {args.grids} --masks {args.masks}\n")
    for image in images:
        def go(grid: int, masks: int):
            return explain_cli.explain(model, str(image), method="rise", seed=0, device="cpu", grid=grid, masks=masks)[0]

        ref = top5(go(7, 40_000).scores)
        row = []
        for pair in pairs:
            same = top5(go(*pair).scores) == ref
            hits[pair] += same
            row.append(f"grid {pair[0]} × {pair[1]}: {'✓' if same else '✗'}")
        print(f"{image.name}: " + ", ".join(row), flush=True)
    print("\n| grid | masks | top-5 = 10x default (of %d) |" % len(images))
    print("|---:|---:|---:|")
    for (grid, masks), n in hits.items():
        print(f"| {grid} | {masks} | {n} |")


if __name__ == "__main__":
    main()
