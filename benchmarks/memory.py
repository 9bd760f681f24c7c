"""Peak memory of RISE as the number of masks grows: it must stay flat.

Each run is a fresh process (`explain run torchvision:resnet18 ... --method rise --masks N`,
random weights, 224² input), and its peak resident set size is read from the OS afterwards
(`getrusage(RUSAGE_CHILDREN)`), so the tool is measured exactly as users run it.

    python benchmarks/memory.py                 # N = 1000 and 8000
    python benchmarks/memory.py --masks 500 4000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "sample_models" / "images" / "triangle_square.png"


def peak_rss_mb(masks: int, batch_size: int) -> tuple[float, float]:
    """Run one RISE explanation in a child process; return (peak RSS in MB, wall seconds)."""
    code = (
        "import resource, subprocess, sys; "
        "r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0); sys.exit(r.returncode)"
    )
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-c", code, sys.executable, "-m", "explain_cli", "run", "torchvision:resnet18",
                   str(IMAGE), "--method", "rise", "--masks", str(masks), "--batch-size", str(batch_size),
                   "--quiet", "--out", out]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if result.returncode != 0:
            raise SystemExit(result.stderr)
        return float(result.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--masks", type=int, nargs="+", default=[1000, 8000])
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    print(f"RISE on torchvision:resnet18 (random weights, 224²), batch size {args.batch_size}")
    print(f"{'masks':>6} {'peak RSS MB':>12} {'wall s':>8}")
    peaks = []
    for n in args.masks:
        peak, wall = peak_rss_mb(n, args.batch_size)
        peaks.append(peak)
        print(f"{n:>6} {peak:>12.1f} {wall:>8.1f}")
    print(f"growth from {args.masks[0]} to {args.masks[-1]} masks: {peaks[-1] - peaks[0]:+.1f} MB")


if __name__ == "__main__":
    main()
