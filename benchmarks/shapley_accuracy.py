"""Kernel SHAP accuracy against exact Shapley values, per model evaluation.

For each model, ~16 superpixels are made on a sample image; exact Shapley values come from
enumerating all 2^M coalitions (cached in benchmarks/.cache). Then, at each budget, the mean
relative L2 error ||φ − φ*|| / ||φ*|| over seeds is reported for explain_cli (the default
and its variants) and, when the optional `bench` extra is installed (`pip install -e '.[bench]'`),
for captum's KernelShap and shap's KernelExplainer (l1_reg=False) at the same evaluations. The
last row checks the default's standard errors: the RMS of (φ − φ*)/stderr (1 = honest).
A second table gives seed stability: the mean pairwise Jaccard index of the top-5 segments
over 6 seeds at 1000 evaluations (~25 segments), for Kernel SHAP and LIME.

    python benchmarks/shapley_accuracy.py                  # both models, 8 seeds
    python benchmarks/shapley_accuracy.py --models sample --seeds 4
    python benchmarks/shapley_accuracy.py --image cross_circle.png --no-stability
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from _common import IMAGE, SAMPLE_MODEL, build_problem  # noqa: E402

from explain_cli.core import Problem  # noqa: E402
from explain_cli.engines import build_params, get_engine  # noqa: E402
from explain_cli.engines.kernelshap import additive_fit, plan  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
MODELS = {
    # name: (MODEL argument, output space, input size or None for the model's own preprocessing)
    "sample": (SAMPLE_MODEL, "probs", None),
    # random weights, logits (a random-weight softmax is flat); 112² keeps the 2^M exact evaluations
    # quick on a CPU. (A random mobilenet_v3_small outputs ~1e-10 logits: too degenerate to compare.)
    "resnet18": ("torchvision:resnet18", "logits", "112"),
}
BUDGETS = (256, 512, 1024, 2048)


def make_problem(name: str, n_segments: int, image: Path = IMAGE) -> Problem:
    source, output, size = MODELS[name]
    return build_problem(source, output=output, size=size, n_segments=n_segments, batch_size=128, image=image)[1]


def exact_shapley(name: str, problem: Problem, image: Path) -> np.ndarray:
    m = problem.n_segments
    path = CACHE / f"{name}-{MODELS[name][2] or 'own'}-M{m}-{image.stem}.npy"
    if path.exists():
        return np.load(path)
    start = time.perf_counter()
    design = plan(m, 2**m, allocation="kernel", exact=True, generator=torch.Generator())
    f_b = problem.baseline_output().numpy()
    v = problem.segment_outputs(torch.from_numpy(design.z).float()).numpy()
    phi = additive_fit(design, v - f_b, problem.reference.numpy() - f_b).phi[0]
    CACHE.mkdir(exist_ok=True)
    np.save(path, phi)
    print(f"  exact Shapley values for {name} (M={m}): {2**m} evaluations in {time.perf_counter() - start:.0f}s")
    return phi


def ours(problem: Problem, budget: int, seed: int, **options: object) -> tuple[np.ndarray, np.ndarray]:
    """(φ, stderr) for the first target."""
    engine = get_engine("kernelshap")
    result = engine.run(problem, build_params(engine, {"samples": budget, **options}),
                        torch.Generator().manual_seed(seed))
    return result.scores[0], result.stderr[0]


def captum_kernelshap(problem: Problem, budget: int, seed: int) -> np.ndarray:
    from captum.attr import KernelShap

    target = int(problem.evaluator.targets[0])
    space = problem.evaluator.output

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = problem.evaluator.model(x)
        return torch.softmax(out, dim=1) if space == "probs" else out

    torch.manual_seed(seed)
    attr = KernelShap(forward).attribute(
        problem.x[None], baselines=problem.baseline[None], target=target,
        feature_mask=problem.segments[None, None], n_samples=budget, perturbations_per_eval=128,
        return_input_shape=False,
    )
    return attr[0].detach().double().numpy()


def shap_kernel(problem: Problem, budget: int, seed: int) -> np.ndarray:
    import shap

    m = problem.n_segments

    def f(z: np.ndarray) -> np.ndarray:
        return problem.segment_outputs(torch.from_numpy(z).float()).numpy()[:, 0]

    np.random.seed(seed)
    explainer = shap.KernelExplainer(f, np.zeros((1, m)), seed=seed) if "seed" in shap.KernelExplainer.__init__.__code__.co_varnames else shap.KernelExplainer(f, np.zeros((1, m)))
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


def accuracy_table(names: list[str], seeds: int, image: Path, n_segments: int) -> None:
    methods = {"explain_cli": lambda p, b, s: ours(p, b, s),
               "  --allocation kernel": lambda p, b, s: ours(p, b, s, allocation="kernel"),
               "  --interactions 3": lambda p, b, s: ours(p, b, s, interactions=3),
               "  --interactions 1": lambda p, b, s: ours(p, b, s, interactions=1)}
    if available("captum"):
        methods["captum KernelShap"] = lambda p, b, s: (captum_kernelshap(p, b, s), None)
    if available("shap"):
        methods["shap KernelExplainer"] = lambda p, b, s: (shap_kernel(p, b, s), None)
    for name in names:
        problem = make_problem(name, n_segments, image)
        exact = exact_shapley(name, problem, image)
        print(f"\n{name}, {image.name}: M = {problem.n_segments} segments, mean relative L2 error over {seeds} seeds")
        print(f"{'method':22}" + "".join(f"{b:>10}" for b in BUDGETS))
        errors: dict[str, list[float]] = {}
        calibration = []  # RMS of (φ − φ*)/stderr for the default, per budget
        for method, fn in methods.items():
            row = []
            for budget in BUDGETS:
                errs, zs = [], []
                for seed in range(seeds):
                    phi, stderr = fn(problem, budget, seed)
                    errs.append(np.linalg.norm(phi - exact) / np.linalg.norm(exact))
                    if method == "explain_cli":
                        zs.append((phi - exact) / np.maximum(stderr, 1e-300))
                row.append(float(np.mean(errs)))
                if zs:
                    calibration.append(float(np.sqrt(np.mean(np.concatenate(zs) ** 2))))
            errors[method] = row
            print(f"{method:22}" + "".join(f"{e:>10.4f}" for e in row), flush=True)
        for peer in ("captum KernelShap", "shap KernelExplainer"):
            if peer in errors:
                ratios = [a / b for a, b in zip(errors["explain_cli"], errors[peer])]
                print(f"{'ratio to ' + peer.split()[0]:22}" + "".join(f"{r:>10.3f}" for r in ratios))
        print(f"{'stderr RMS z':22}" + "".join(f"{c:>10.2f}" for c in calibration) + "   (1 = honest)")


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
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--image", default=IMAGE.name, help="a file in sample_models/images, or a path")
    parser.add_argument("--n-segments", type=int, default=16, help="SLIC target; exact values need 2^M evaluations")
    parser.add_argument("--no-stability", action="store_true", help="skip the seed-stability table")
    args = parser.parse_args()
    image = Path(args.image) if Path(args.image).exists() else IMAGE.parent / args.image
    torch.manual_seed(0)
    accuracy_table(args.models.split(","), args.seeds, image, args.n_segments)
    if not args.no_stability:
        stability_table()


if __name__ == "__main__":
    main()
