"""samples auto vs the default fixed budget vs a 10x budget: evaluations and top-5 agreement.

    PYTHONPATH=. python benchmarks/auto_samples.py [--methods lime,kernelshap,rise] [--images all]
        [--tolerances 0.02,0.03] [--jsonl results.jsonl] [--model sample|resnet18] [--limit N]

With sample_models/shapes_cnn.pt on the sample images (sample_models/images/*.png) and the 45
ground-truth images (sample_models/eval/*.png; ``--images sample|eval|all``), for each method:
``samples auto`` (RISE: ``masks auto``) at the default tolerance (or each of ``--tolerances``),
the default fixed budget, and 10x that budget (the reference). Prints one markdown row per
image (evaluations used, whether the top-5 segments as a set equal the 10x run's), then a
summary per method and tolerance with the issue's rule: auto may become the default where it
reaches the 10x top 5 at least as often as the fixed default, with fewer evaluations on average.
``--jsonl`` appends each row to a file and skips rows already there, so a long run can resume.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# The fixed budgets that were the defaults when this benchmark decided the `auto` defaults.
DEFAULTS = {"lime": ("samples", 1000), "kernelshap": ("samples", 2048), "rise": ("masks", 4000)}


def top5(scores: np.ndarray) -> frozenset[int]:
    return frozenset(int(j) for j in np.argsort(-scores[0], kind="stable")[:5])


def image_set(which: str) -> list[Path]:
    sample = sorted((ROOT / "sample_models" / "images").glob("*.png"))
    truth = sorted(p for p in (ROOT / "sample_models" / "eval").glob("*.png") if not p.name.endswith(".mask.png"))
    return {"sample": sample, "eval": truth, "all": sample + truth}[which]


def model_options(name: str) -> dict:
    """``sample`` (the shipped CNN) or ``resnet18`` (random weights, seed 0, from a file: see benchmarks/wall.py)."""
    if name == "sample":
        return {"model": str(ROOT / "sample_models" / "shapes_cnn.pt")}
    from wall import resnet_weights

    return {"model": "torchvision:resnet18", "weights": str(resnet_weights())}


def measure(model: dict, image: Path, method: str, tolerances: list[float | None]) -> list[dict]:
    """One row per tolerance: the auto run, the fixed default and the 10x reference on one image."""
    import explain_cli

    key, default = DEFAULTS[method]
    where = {k: v for k, v in model.items() if k != "model"}

    def go(value, **extra):
        start = time.perf_counter()
        expl = explain_cli.explain(model["model"], str(image), method=method, seed=0, device="cpu",
                                   **{key: value}, **where, **extra)[0]
        return expl, time.perf_counter() - start

    (ref, ref_s), (fixed, fixed_s) = go(10 * default), go(default)
    rows = []
    for tol in tolerances:
        auto, auto_s = go("auto", **({"auto_tolerance": tol} if tol is not None else {}))
        rec = auto.attribution.extra["auto"]
        rows.append({
            "method": method, "image": image.name, "tolerance": rec.get("tolerance", tol),
            "auto_evals": int(auto.evaluations), "auto_stopped": rec["stopped"], "auto_ratio": rec["max_stderr_ratio"],
            "auto_top5": top5(auto.scores) == top5(ref.scores), "auto_s": auto_s,
            "default_evals": int(fixed.evaluations), "default_top5": top5(fixed.scores) == top5(ref.scores),
            "default_s": fixed_s, "ref_evals": int(ref.evaluations), "ref_s": ref_s,
        })
    return rows


def summary(rows: list[dict]) -> list[str]:
    """Per method and tolerance: matches, mean evaluations, and whether auto passes the rule."""
    lines = ["| method | tolerance | images | auto top-5 = 10x | default top-5 = 10x | mean auto evals "
             "| mean default evals | auto passes the rule |", "|---|---|---:|---:|---:|---:|---:|---|"]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["tolerance"]), []).append(row)
    for (method, tol), group in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        auto_hits = sum(r["auto_top5"] for r in group)
        fixed_hits = sum(r["default_top5"] for r in group)
        auto_mean = float(np.mean([r["auto_evals"] for r in group]))
        fixed_mean = float(np.mean([r["default_evals"] for r in group]))
        passes = auto_hits >= fixed_hits and auto_mean < fixed_mean
        lines.append(f"| {method} | {tol} | {len(group)} | {auto_hits} | {fixed_hits} | {auto_mean:.0f} "
                     f"| {fixed_mean:.0f} | {'yes' if passes else 'no'} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="lime,kernelshap,rise")
    ap.add_argument("--images", default="all", choices=("sample", "eval", "all"))
    ap.add_argument("--tolerances", default="", help="Comma-separated auto_tolerance values to try (default: each method's).")
    ap.add_argument("--jsonl", type=Path, help="Append each row here; rows already there are not measured again.")
    ap.add_argument("--model", default="sample", choices=("sample", "resnet18"))
    ap.add_argument("--limit", type=int, default=0, help="Only the first N images (0: all).")
    args = ap.parse_args()
    tolerances = [float(t) for t in args.tolerances.split(",") if t.strip()] or [None]
    model = model_options(args.model)
    done: list[dict] = []
    if args.jsonl and args.jsonl.is_file():
        done = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line.strip()]
    print(f"command: PYTHONPATH=. python benchmarks/auto_samples.py --model {args.model} --methods {args.methods} "
          f"--images {args.images} --limit {args.limit}"
          + (f" --tolerances {args.tolerances}" if args.tolerances else "") + "\n")
    print("| method | image | tolerance | auto evals (stopped, stderr/range) | auto top-5 = 10x | default evals "
          "| default top-5 = 10x | 10x evals |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for image in image_set(args.images)[: args.limit or None]:  # image by image: a partial run covers every method
        for method in args.methods.split(","):
            have = [r for r in done if r["method"] == method and r["image"] == image.name]
            have = [r for i, r in enumerate(have) if r["tolerance"] not in [h["tolerance"] for h in have[:i]]]
            new = [] if have else measure(model, image, method, tolerances)
            if args.jsonl:
                with args.jsonl.open("a") as fh:
                    fh.writelines(json.dumps(r) + "\n" for r in new)
            for r in have or new:
                rows.append(r)
                print(f"| {method} | {image.name} | {r['tolerance']} | {r['auto_evals']} ({r['auto_stopped']}, "
                      f"{r['auto_ratio']:.4f}) | {r['auto_top5']} | {r['default_evals']} | {r['default_top5']} "
                      f"| {r['ref_evals']} |", flush=True)
    print()
    print("\n".join(summary(rows)))


if __name__ == "__main__":
    main()
