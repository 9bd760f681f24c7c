"""Engine overhead: wall time of an engine ÷ pure batched forward time at the same evaluations.

For each model and engine, one run of the engine (sampling, composing perturbed batches,
forwards, estimation) is timed against the model alone on pre-built batches of the same size
and count. Runs are interleaved (engine, forward, engine, forward, ...) so drift hits both
sides alike; the ratio printed is median(engine) ÷ median(forward).

    python benchmarks/overhead.py                     # resnet18 (random weights, 224²) and the sample model
    python benchmarks/overhead.py --methods lime --repeats 5
    python benchmarks/overhead.py --runtime auto      # against the fastest runtime's forward passes

It ends with Kernel SHAP's estimator alone on the sample model (M ≈ 50 superpixels, 2,048
evaluations): the seconds spent planning the coalitions and fitting the estimate, without the
forwards or composing the batches, median of 7 runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import SAMPLE_MODEL, build_problem, time_forward  # noqa: E402

from explain_cli.core import Problem  # noqa: E402
from explain_cli.engines import ENGINES, build_params, get_engine  # noqa: E402

# Evaluations per engine run: enough that fixed costs are amortised as in real use.
BUDGETS = {"resnet18": 256, "sample": 2000}
ENGINE_VALUES = {
    "lime": lambda n: {"samples": n},
    "kernelshap": lambda n: {"samples": n},
    "partition": lambda n: {"samples": n},
    "rise": lambda n: {"masks": n},
    "ablation": lambda n: {},
}


def time_engine(problem: Problem, method: str, values: dict, seed: int) -> tuple[float, int]:
    engine = get_engine(method)
    params = build_params(engine, values)
    problem.evaluator.evaluations = 0
    start = time.perf_counter()
    engine.run(problem, params, torch.Generator().manual_seed(seed))
    return time.perf_counter() - start, problem.evaluator.evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(m for m in ENGINE_VALUES if m in ENGINES))
    parser.add_argument("--models", default="resnet18,sample")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--runtime", default="eager", help="eager | onnxruntime | compile | auto (the fastest that matches)")
    args = parser.parse_args()
    sources = {"resnet18": "torchvision:resnet18", "sample": SAMPLE_MODEL}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch size {args.batch_size}, "
          f"median of {args.repeats} interleaved runs")
    print(f"{'model':10} {'runtime':12} {'method':11} {'evals':>6} {'engine s':>9} {'forward s':>9} {'ratio':>6}")
    for name in args.models.split(","):
        model, problem = build_problem(sources[name], batch_size=args.batch_size)
        if args.runtime != "eager":
            from explain_cli.models import select_runtime

            model = select_runtime(model, problem.x, args.runtime)  # both sides run on the chosen runtime
            problem.evaluator.model = model.module
        for method in args.methods.split(","):
            values = ENGINE_VALUES[method](BUDGETS[name])
            time_engine(problem, method, values, seed=0)  # warm-up (allocator, caches)
            engine_times, forward_times = [], []
            for r in range(args.repeats):
                t, evals = time_engine(problem, method, values, seed=r)
                engine_times.append(t)
                forward_times.append(time_forward(model.module, problem.x, evals, args.batch_size,
                                                  head=lambda out: torch.softmax(out, dim=1)))
            e, f = statistics.median(engine_times), statistics.median(forward_times)
            print(f"{name:10} {model.runtime:12} {method:11} {evals:>6} {e:>9.3f} {f:>9.3f} {e / f:>6.3f}")
        if name == "sample" and "kernelshap" in args.methods.split(","):
            plan_s, fit_s = estimator_seconds(problem)
            print(f"kernelshap estimator alone, M = {problem.n_segments}, 2048 evaluations: plan {plan_s:.3f} s + "
                  f"fit {fit_s:.3f} s = {plan_s + fit_s:.3f} s")


def estimator_seconds(problem: Problem, samples: int = 2048, runs: int = 7) -> tuple[float, float]:
    """Median seconds of Kernel SHAP's plan() and estimate() inside real engine runs (forwards excluded)."""
    from explain_cli.engines.kernelshap import engine as kernelshap  # run() looks plan and estimate up here

    spent: dict[str, list[float]] = {"plan": [], "estimate": []}
    originals = {name: getattr(kernelshap, name) for name in spent}

    def timed(name: str):
        def call(*args, **kwargs):
            start = time.perf_counter()
            out = originals[name](*args, **kwargs)
            spent[name].append(time.perf_counter() - start)
            return out
        return call

    try:
        for name in spent:
            setattr(kernelshap, name, timed(name))
        engine = get_engine("kernelshap")
        for seed in range(runs + 1):  # the first is a warm-up
            engine.run(problem, build_params(engine, {"samples": samples}), torch.Generator().manual_seed(seed))
    finally:
        for name, fn in originals.items():
            setattr(kernelshap, name, fn)
    return statistics.median(spent["plan"][1:]), statistics.median(spent["estimate"][1:])


if __name__ == "__main__":
    main()
