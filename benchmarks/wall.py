"""Wall time of whole `explain run` processes: today's defaults against the new ones.

    PYTHONPATH=. python benchmarks/wall.py [--models sample,resnet18] [--methods ablation,kernelshap,...]
        [--repeats 3] [--today-src DIR] [--image PATH]

For each model and method, runs ``explain run MODEL IMAGE --method METHOD`` as a fresh process
in two arms, interleaved (today, new, today, new, ...), and prints the median of ``--repeats``:

* **today**: the defaults before "fast by default" made explicit — ``--runtime eager`` and the
  fixed budgets (Kernel SHAP 2048, LIME 1000, partition 500, RISE 4000 masks). With
  ``--today-src DIR`` the arm instead runs the code in DIR (e.g. a worktree of an older commit)
  with no flags at all.
* **new**: no flags: the defaults of this checkout, with a cache of its own. Before the timed
  rounds one untimed run per model fills the cache (the runtime probe); its wall time is
  printed as ``first run``. When a new run prints its long-run estimate, the last column gives
  estimate / real wall time of that process.

Models: ``sample`` (sample_models/shapes_cnn.pt, 64²) and ``resnet18`` (torchvision's
architecture with random weights saved to a file, seed 0, as a user without pretrained weights
would run it: 224² after the model's own resize and crop). The machine's load goes into every
number; the ratio of interleaved medians is what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TODAY_FLAGS = {
    "ablation": [],
    "kernelshap": ["--samples", "2048"],
    "lime": ["--samples", "1000"],
    "partition": ["--samples", "500"],
    "rise": ["--masks", "4000"],
}
RESNET_WEIGHTS = Path(tempfile.gettempdir()) / "explain_cli-wall-resnet18-seed0.pt"


def resnet_weights() -> Path:
    """torchvision's resnet18 with random weights (seed 0), saved once as a state dict."""
    if not RESNET_WEIGHTS.is_file():
        import torch
        import torchvision

        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18().state_dict(), RESNET_WEIGHTS)
    return RESNET_WEIGHTS


def model_args(name: str) -> list[str]:
    if name == "sample":
        return [str(ROOT / "sample_models" / "shapes_cnn.pt")]
    if name == "resnet18":
        return ["torchvision:resnet18", "--weights", str(resnet_weights())]
    raise SystemExit(f"unknown model {name!r}: sample or resnet18")


def run_once(model: list[str], image: Path, method: str, out: Path, env: dict[str, str], flags: list[str]) -> dict:
    """One `explain run` process; its wall time, evaluations and runtime (from the JSON)."""
    cmd = [sys.executable, "-m", "explain_cli", "run", *model, str(image), "--method", method, "--seed", "0",
           "--out", str(out), *flags]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    record = json.loads((out / f"{image.stem}.{method}.json").read_text())
    return {"wall": wall, "evaluations": record["evaluations"], "runtime": record["model"].get("runtime"),
            "estimate": said_seconds(proc.stderr)}


def said_seconds(stderr: str) -> float | None:
    """The long-run estimate the run printed ("this run will take about 3 min: ..."), in seconds."""
    for line in stderr.splitlines():
        if "this run will take about " in line:
            value, unit = line.split("this run will take about ")[1].split(":")[0].split()
            return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="sample,resnet18")
    ap.add_argument("--methods", default="ablation,kernelshap,lime,partition,rise")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--today-src", type=Path, help="Run the today arm on the code in this folder, without flags.")
    ap.add_argument("--image", type=Path, default=ROOT / "sample_models" / "images" / "triangle_square.png")
    args = ap.parse_args()
    methods = args.methods.split(",")
    work = Path(tempfile.mkdtemp(prefix="explain_cli-wall-"))
    base = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}
    envs = {"today": {**base, "PYTHONPATH": str(args.today_src or ROOT), "XDG_CACHE_HOME": str(work / "today-cache")},
            "new": {**base, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(work / "new-cache")}}

    def flags(arm: str, method: str) -> list[str]:
        return TODAY_FLAGS[method] + ["--runtime", "eager"] if arm == "today" and not args.today_src else []
    print(f"command: PYTHONPATH=. python benchmarks/wall.py --models {args.models} --methods {args.methods} "
          f"--repeats {args.repeats}" + (f" --today-src {args.today_src}" if args.today_src else "")
          + f" --image {args.image.relative_to(ROOT) if args.image.is_relative_to(ROOT) else args.image}\n")
    print("| model | method | today s | new s | new / today | today evals | new evals | new runtime "
          "| new estimate / real |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    firsts = []
    for name in args.models.split(","):
        model = model_args(name)
        first = run_once(model, args.image, methods[0], work / "first", envs["new"], [])
        firsts.append(f"{name}: first run of {methods[0]} (probing the runtime) {first['wall']:.1f} s")
        for method in methods:
            times: dict[str, list[float]] = {"today": [], "new": []}
            last: dict[str, dict] = {}
            for r in range(args.repeats):
                for arm in ("today", "new"):
                    last[arm] = run_once(model, args.image, method, work / f"{arm}-{r}", envs[arm], flags(arm, method))
                    times[arm].append(last[arm]["wall"])
            today, new = statistics.median(times["today"]), statistics.median(times["new"])
            said = last["new"]["estimate"]
            ratio = f"{said / last['new']['wall']:.2f}" if said else "(under 60 s: none)"
            print(f"| {name} | {method} | {today:.1f} | {new:.1f} | {new / today:.2f} | {last['today']['evaluations']} "
                  f"| {last['new']['evaluations']} | {last['new']['runtime']} | {ratio} |", flush=True)
    print()
    for line in firsts:
        print(line)


if __name__ == "__main__":
    main()
