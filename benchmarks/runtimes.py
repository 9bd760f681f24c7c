"""Images per second of each runtime (eager, eager + channels-last, compile, onnxruntime) per model.

Runs are interleaved (one batch of each runtime per round) so machine load drifts hit every
runtime alike; the table reports the median round. Random weights: speed does not depend on them.

    python benchmarks/runtimes.py                                   # sample, resnet18, resnet50 at 224²
    python benchmarks/runtimes.py --models resnet18 --batch 32 --rounds 9 --compile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain_cli.models import load_model, select_runtime  # noqa: E402
from explain_cli.models.runtime import ChannelsLast  # noqa: E402

MODELS = {
    "sample": str(ROOT / "sample_models" / "shapes_cnn.pt"),
    "resnet18": "torchvision:resnet18",
    "resnet50": "torchvision:resnet50",
}


def runners(source: str, x: torch.Tensor, with_compile: bool, cache: Path) -> dict:
    """Callable per runtime name, each checked to match eager by select_runtime."""
    model = load_model(source, device="cpu", seed=0)
    out = {"eager": model.module, "eager+channels_last": ChannelsLast(model.module)}
    out["onnxruntime"] = select_runtime(model, x[0], "onnxruntime", cache=cache).module
    if with_compile:
        out["compile"] = select_runtime(model, x[0], "compile").module
    return out


def bench(fns: dict, x: torch.Tensor, rounds: int) -> dict[str, float]:
    """Median images/s per runtime over interleaved rounds (after one warm-up batch each)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for fn in fns.values():
            fn(x)
        for _ in range(rounds):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - start)
    return {k: len(x) / statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="include torch.compile (slow to compile)")
    args = parser.parse_args()
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name in args.models.split(","):
            fns = runners(MODELS.get(name, name), x, args.compile, Path(cache))
            rows.append((name, bench(fns, x, args.rounds)))
    names = list(rows[0][1])
    print(f"`python benchmarks/runtimes.py {' '.join(sys.argv[1:])}` · torch {torch.__version__} · "
          f"{torch.get_num_threads()} threads · batch {args.batch} · {args.size}² · median of {args.rounds}\n")
    print("| model | " + " | ".join(f"{n} (img/s)" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for name, result in rows:
        best = max(result.values())
        cells = [f"**{v:.1f}**" if v == best else f"{v:.1f}" for v in result.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
