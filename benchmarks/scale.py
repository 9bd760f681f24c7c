"""`explain batch` throughput: items per second, local backend against Ray with 1 and 2 workers.

One job: the sample model over copies of the sample images (``--items``, default 20), one
method with a small budget, so per-item fixed costs (Ray dispatch, shipping bytes, writing)
show. Every run redoes all items (``force``) into its own folder. Ray runs share one local
Ray started first (its start-up is timed and printed apart); each run still starts its own
actors, so a run's wall time includes loading the model once per worker, as a real run does.
A Ray worker (num_cpus=1) runs torch on one thread, so the overhead is measured against a local
run on one torch thread too.

    python benchmarks/scale.py                       # lime, 200 samples, 20 items
    python benchmarks/scale.py --method kernelshap --samples 256 --items 40 --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain_cli.batch.run import run_batch  # noqa: E402


def make_config(folder: Path, items: int, method: str, samples: int) -> Path:
    images = sorted((ROOT / "sample_models" / "images").glob("*.png"))
    inputs = folder / "inputs"
    inputs.mkdir()
    for i in range(items):
        shutil.copy(images[i % len(images)], inputs / f"img{i:03d}.png")
    config = {"defaults": {"seed": 0, "out": str(folder / "out")},
              "jobs": [{"model": str(ROOT / "sample_models" / "shapes_cnn.pt"), "inputs": [str(inputs)],
                        "out": str(folder / "out" / "job"), "methods": [{"method": method, "samples": samples}]}]}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def timed(config: Path, **backend) -> float:
    start = time.perf_counter()
    rows, _ = run_batch(config, force=True, **backend)
    wall = time.perf_counter() - start
    failed = [r for r in rows if r.status != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} items failed: {failed[0].error}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--method", default="lime")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1, help="runs per row; the median wall time is shown")
    args = parser.parse_args()

    import ray

    folder = Path(tempfile.mkdtemp(prefix="explain-scale-"))
    try:
        config = make_config(folder, args.items, args.method, args.samples)
        import torch

        walls = {"local": [timed(config) for _ in range(args.repeats)]}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as a Ray worker with num_cpus=1 runs (Ray sets OMP_NUM_THREADS=1)
        walls["local, 1 torch thread"] = [timed(config) for _ in range(args.repeats)]
        torch.set_num_threads(threads)
        start = time.perf_counter()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        ray_start = time.perf_counter() - start
        for workers in (1, 2):
            walls[f"ray, {workers} worker{'s' * (workers > 1)}"] = [
                timed(config, backend="ray", workers=workers) for _ in range(args.repeats)]
        ray.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    median = {name: statistics.median(w) for name, w in walls.items()}
    command = "python benchmarks/scale.py " + " ".join(sys.argv[1:])
    print(f"`{command.strip()}`: {args.items} items, {args.method} with {args.samples} samples, sample model, "
          f"{os.cpu_count()} CPUs, median of {args.repeats}\n")
    print("| backend | wall s | items/s | vs local |")
    print("|---|---:|---:|---:|")
    for name, wall in median.items():
        print(f"| {name} | {wall:.1f} | {args.items / wall:.2f} | {median['local'] / wall:.2f}x |")
    overhead = (median["ray, 1 worker"] - median["local, 1 torch thread"]) / args.items
    print(f"\nRay start-up (ray.init, not in the rows): {ray_start:.1f} s. Ray overhead per item "
          f"(1 worker − local with 1 torch thread; actor start and model load included): {overhead * 1000:+.0f} ms.")


if __name__ == "__main__":
    main()
