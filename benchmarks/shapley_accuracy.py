"""Kernel SHAP accuracy against reference Shapley values, per model evaluation.

Four image games (the first target's output as a function of the superpixels kept):

* ``sample-grid16`` / ``resnet18-grid16``: a 4×4 grid (M = 16); the exact Shapley values come
  from the full 2^16 value table (computed once, cached in benchmarks/.cache);
* ``sample-slic50`` / ``resnet18-slic50``: SLIC with n_segments=50 (M = 44 / 43); the
  reference is antithetic permutation sampling (``--ref-pairs`` permutation pairs, cached),
  whose own relative error (from its spread) is printed next to the estimators'.

Every estimator sees the same cached game, so repeated coalitions cost no forward pass. Rows:
explain_cli's default and variants, shapiq 1.8's OddSHAP, RegressionMSR (XGBoost proxy),
LeverageSHAP and KernelSHAP when a Python with shapiq is given (``--shapiq-python`` or
$SHAPIQ_PYTHON; shapiq runs in that interpreter, fed coalition by coalition through a pipe,
benchmarks/_shapiq_runner.py), and shap's KernelExplainer when the `bench` extra is installed.
Printed: a markdown table of the mean relative L2 error ||φ − φ*|| / ||φ*|| over seeds at each
budget, the ratio of the default to the best shapiq estimator, the default's stderr check
(RMS of (φ − φ*)/stderr, 1 = honest; for permutation references the reference's own variance
is added) and its CPU time per run without the model's forwards.

    python benchmarks/shapley_accuracy.py --shapiq-python /work/wt/shapiq-venv/bin/python
    python benchmarks/shapley_accuracy.py --problems sample-grid16 --seeds 2 --no-stability
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from _common import IMAGE, SAMPLE_MODEL, build_problem  # noqa: E402
from _games import Game, load_game, permutation_reference  # noqa: E402
from _shapiq_client import shapiq_shapley  # noqa: E402

from explain_cli.core import Problem  # noqa: E402
from explain_cli.engines import build_params, get_engine  # noqa: E402
from tests.oracles import exact_shapley  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
MODELS = {
    # name: (MODEL argument, output space, input size or None for the model's own preprocessing)
    "sample": (SAMPLE_MODEL, "probs", None),
    # random weights, logits (a random-weight softmax is flat); 112² keeps the 2^M exact evaluations
    # quick on a CPU. (A random mobilenet_v3_small outputs ~1e-10 logits: too degenerate to compare.)
    "resnet18": ("torchvision:resnet18", "logits", "112"),
}
BUDGETS = (512, 2048)
PROBLEMS = {
    # name: (model, segmentation, n_segments, exact)
    "sample-grid16": ("sample", "grid", 16, True),
    "resnet18-grid16": ("resnet18", "grid", 16, True),
    "sample-slic50": ("sample", "slic", 50, False),
    "resnet18-slic50": ("resnet18", "slic", 50, False),
}
SHAPIQ = ("OddSHAP", "RegressionMSR", "LeverageSHAP", "KernelSHAP")


def make_problem(name: str, n_segments: int, image: Path = IMAGE, algorithm: str = "slic") -> Problem:
    source, output, size = MODELS[name]
    return build_problem(source, output=output, size=size, n_segments=n_segments, batch_size=256, image=image,
                         algorithm=algorithm)[1]


def make_game(problem_name: str, image: Path, ref_pairs: int) -> tuple[Game, np.ndarray, np.ndarray]:
    """(game, reference φ, reference stderr) of a benchmark problem."""
    model, algorithm, n, exact = PROBLEMS[problem_name]
    problem = make_problem(model, n, image, algorithm)
    key = f"{problem_name}-{MODELS[model][2] or 'own'}-{image.stem}"
    game = load_game(problem, key, full_table=exact)
    if exact:
        return game, exact_shapley(game.table), np.zeros(game.m)
    phi, stderr = permutation_reference(game, ref_pairs)
    game.save()
    return game, phi, stderr


def ours(game: Game, budget: int, seed: int, **options: object) -> tuple[np.ndarray, np.ndarray, float]:
    """(φ, stderr, CPU seconds of the estimator without forwards) for the first target."""
    engine = get_engine("kernelshap")
    problem = game.as_problem()
    forward_before = game.forward_s
    start = time.process_time()
    result = engine.run(problem, build_params(engine, {"samples": budget, **options}),
                        torch.Generator().manual_seed(seed))
    cpu = time.process_time() - start - (game.forward_s - forward_before)
    return result.scores[0], result.stderr[0], cpu


def shap_kernel(game: Game, budget: int, seed: int) -> np.ndarray:
    import shap

    m = game.m
    np.random.seed(seed)
    explainer = shap.KernelExplainer(lambda z: game.values(z > 0.5), np.zeros((1, m)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = explainer.shap_values(np.ones((1, m)), nsamples=budget - 2, l1_reg=False, silent=True)
    return np.asarray(values).reshape(-1)[:m]


def available(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def accuracy_table(problems: list[str], seeds: int, image: Path, budgets: tuple[int, ...], ref_pairs: int,
                   shapiq_python: str | None, variants: bool, shapiq_methods: tuple[str, ...] = SHAPIQ,
                   reuse: bool = True) -> None:
    methods: dict[str, object] = {"**explain_cli** (default)": lambda g, b, s: ours(g, b, s)}
    if variants:
        methods["explain_cli `--proxy generic`"] = lambda g, b, s: ours(g, b, s, proxy="generic")
        methods["explain_cli `--interactions 1`"] = lambda g, b, s: ours(g, b, s, interactions=1)
    if shapiq_python:
        for name in shapiq_methods:
            methods[f"shapiq {name}"] = (lambda n: lambda g, b, s: (shapiq_shapley(shapiq_python, n, g.values, g.m, b, s)[0],
                                                                    None, None))(name)
    if available("shap"):
        methods["shap KernelExplainer"] = lambda g, b, s: (shap_kernel(g, b, s), None, None)
    head = " | ".join(f"{b}" for b in budgets)
    print(f"\n| problem | method | {head} |\n|---|---|" + "---:|" * len(budgets))
    for problem_name in problems:
        game, ref, ref_se = make_game(problem_name, image, ref_pairs)
        ref_err = float(np.sqrt((ref_se ** 2).sum()) / np.linalg.norm(ref))
        label = f"{problem_name} (M={game.m}, " + ("exact" if not ref_se.any() else
                                                    f"{ref_pairs} antithetic permutation pairs, own error {ref_err:.4f}") + ")"
        errors: dict[str, list[float]] = {}
        zrms, cpu = [], []
        saved_path = CACHE / f"{game.key}-estimates.npz"  # shapiq's runs are slow: keep every φ by method, budget, seed
        saved = dict(np.load(saved_path)) if saved_path.exists() and reuse else {}
        for method, fn in methods.items():
            row = []
            for budget in budgets:
                errs, zs, ts = [], [], []
                for seed in range(seeds):
                    tag = f"{method}|{budget}|{seed}"
                    if tag in saved and not method.startswith("**"):
                        phi, stderr, seconds = saved[tag], None, None
                    else:
                        phi, stderr, seconds = fn(game, budget, seed)
                        saved[tag] = phi
                    errs.append(np.linalg.norm(phi - ref) / np.linalg.norm(ref))
                    if stderr is not None and method.startswith("**"):
                        zs.append((phi - ref) / np.sqrt(np.maximum(stderr ** 2 + ref_se ** 2, 1e-300)))
                        ts.append(seconds)
                row.append(float(np.mean(errs)))
                if zs:
                    zrms.append(float(np.sqrt(np.mean(np.concatenate(zs) ** 2))))
                    cpu.append(float(np.mean(ts)))
            errors[method] = row
            print(f"| {label} | {method} | " + " | ".join(f"{e:.4f}" for e in row) + " |", flush=True)
            label = ""
        peers = [m for m in errors if m.startswith("shapiq") and not m.endswith(("LeverageSHAP", "KernelSHAP"))]
        if peers:
            best = [min(errors[m][i] for m in peers) for i in range(len(budgets))]
            ratio = [a / b for a, b in zip(errors["**explain_cli** (default)"], best)]
            print("| | ratio default ÷ best of OddSHAP, RegressionMSR | " + " | ".join(f"**{r:.2f}**" for r in ratio) + " |")
        print("| | default stderr check: RMS (φ − φ*)/stderr | " + " | ".join(f"{z:.2f}" for z in zrms) + " |")
        print("| | default estimator CPU s per run (no forwards) | " + " | ".join(f"{c:.3f}" for c in cpu) + " |")
        game.save()
        np.savez(saved_path, **saved)
    print("\ncommand: python " + " ".join(sys.argv))


def jaccard_top5(scores: list[np.ndarray]) -> float:
    tops = [set(np.argsort(-s)[:5].tolist()) for s in scores]
    return statistics.mean(len(a & b) / len(a | b) for a, b in itertools.combinations(tops, 2))


def stability_table() -> None:
    problem = make_problem("sample", n_segments=25)
    print(f"\nseed stability on sample model, M = {problem.n_segments}, 1000 evaluations, 6 seeds")
    for method in ("kernelshap", "lime"):
        engine = get_engine(method)
        params = build_params(engine, {"samples": 1000})
        scores = [engine.run(problem, params, torch.Generator().manual_seed(s)).scores[0] for s in range(6)]
        print(f"{method:12} mean pairwise Jaccard of top-5 segments: {jaccard_top5(scores):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", default=",".join(PROBLEMS), help=f"comma-separated, from {', '.join(PROBLEMS)}")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--image", default=IMAGE.name, help="a file in sample_models/images, or a path")
    parser.add_argument("--ref-pairs", type=int, default=1000, help="antithetic permutation pairs of the M≈50 references")
    parser.add_argument("--shapiq-python", default=os.environ.get("SHAPIQ_PYTHON"),
                        help="a Python with shapiq 1.8 (e.g. from /work/shared/tools/shapiq-py311.sh)")
    parser.add_argument("--shapiq-methods", default=",".join(SHAPIQ))
    parser.add_argument("--rerun", action="store_true", help="rerun the peers instead of reusing their cached estimates")
    parser.add_argument("--no-variants", action="store_true", help="only the default among explain_cli's rows")
    parser.add_argument("--no-stability", action="store_true", help="skip the seed-stability table")
    args = parser.parse_args()
    image = Path(args.image) if Path(args.image).exists() else IMAGE.parent / args.image
    torch.manual_seed(0)
    accuracy_table(args.problems.split(","), args.seeds, image, tuple(int(b) for b in args.budgets.split(",")),
                   args.ref_pairs, args.shapiq_python, not args.no_variants,
                   tuple(args.shapiq_methods.split(",")), not args.rerun)
    if not args.no_stability:
        stability_table()


if __name__ == "__main__":
    main()
