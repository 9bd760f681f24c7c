"""samples auto vs the default fixed budget vs a 10x budget: evaluations and top-5 agreement.

    PYTHONPATH=. python benchmarks/auto_samples.py [--methods lime,kernelshap,rise]

On the sample images (sample_models/images/*.png) with sample_models/shapes_cnn.pt, for each
method: `--samples auto` (RISE: `--masks auto`) at the default tolerance, the default fixed
budget, and 10x that budget (the reference). Prints a markdown table: evaluations used and
whether the top-5 segments (as a set) equal the 10x run's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULTS = {"lime": ("samples", 1000), "kernelshap": ("samples", 2048), "rise": ("masks", 4000)}


def top5(scores: np.ndarray) -> frozenset[int]:
    return frozenset(int(j) for j in np.argsort(-scores[0], kind="stable")[:5])


def main() -> None:
    import explain_cli

    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="lime,kernelshap,rise")
    ap.add_argument("--tolerances", default="", help="Comma-separated auto_tolerance values to try (default: each method's).")
    args = ap.parse_args()
    tolerances = [float(t) for t in args.tolerances.split(",") if t.strip()] or [None]
    model = str(ROOT / "sample_models" / "shapes_cnn.pt")
    images = sorted((ROOT / "sample_models" / "images").glob("*.png"))
    print(f"command: PYTHONPATH=. python benchmarks/auto_samples.py --methods {args.methods}"
          + (f" --tolerances {args.tolerances}" if args.tolerances else "") + "\n")
    print("| method | image | tolerance | auto evals (stopped, stderr/range) | auto top-5 = 10x | default evals | default top-5 = 10x | 10x evals |")
    print("|---|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        key, default = DEFAULTS[method]
        for image in images:
            def go(value, **extra):
                return explain_cli.explain(model, str(image), method=method, seed=0, device="cpu",
                                           **{key: value}, **extra)[0]
            ref, fixed = go(10 * default), go(default)
            t_ref = top5(ref.scores)
            for tol in tolerances:
                auto = go("auto", **({"auto_tolerance": tol} if tol is not None else {}))
                rec = auto.attribution.extra["auto"]
                print(f"| {method} | {image.name} | {rec.get('tolerance', tol)} | {rec['evaluations']} ({rec['stopped']}, "
                      f"{rec['max_stderr_ratio']:.4f}) | {top5(auto.scores) == t_ref} | {fixed.evaluations} "
                      f"| {top5(fixed.scores) == t_ref} | {ref.evaluations} |", flush=True)


if __name__ == "__main__":
    main()
