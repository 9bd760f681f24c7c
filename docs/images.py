"""The pictures in README.md and docs/: how each is made, and whether the ones in docs/ are current.

    python docs/images.py            # regenerate them into out/docs and copy them to docs/ (make docs-images)
    python docs/images.py --check    # regenerate into a temporary folder; exit 1 naming the stale ones (make docs-check)

``--root`` is the folder whose ``sample_models/`` the commands read (default: this repository)
and ``--docs`` where the pictures go or are compared with (default: this ``docs/``).

Every picture comes from the shipped sample model and images through the real command line, so
a change to an engine's numbers or to the drawing code shows up here. ``tests/test_docs_images.py``
runs the check with the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SAMPLE = "sample_models/shapes_cnn.pt"
CROSS_CIRCLE = "sample_models/images/cross_circle.png"

# (arguments of `explain`, with OUT for the output folder) in order; paths relative to the repository.
COMMANDS: list[list[str]] = [
    ["run", SAMPLE, CROSS_CIRCLE, "--method", "kernelshap", "--top-k", "2", "--save-map"],
    ["run", SAMPLE, "sample_models/images/triangle_square.png", "--method", "rise", "--top-k", "2"],
    ["run", SAMPLE, "sample_models/eval/circle_00.png", "--method", "partition", "--evaluate",
     "--mask", "sample_models/eval/circle_00.mask.png"],
    ["run", SAMPLE, CROSS_CIRCLE, "--method", "ablation", "--top-k", "2", "--save-map"],
    ["run", SAMPLE, CROSS_CIRCLE, "--method", "rise", "--top-k", "2", "--save-map"],
    ["compare", "OUT/cross_circle.ablation.json", "OUT/cross_circle.kernelshap.json", "OUT/cross_circle.rise.json",
     "--out", "OUT/compare.png"],
]
COMMON = ["--seed", "0", "--quiet"]  # added to every `run`

# The files in docs/ that the commands write (same names in OUT).
PICTURES = ["cross_circle.kernelshap.png", "triangle_square.rise.png", "circle_00.partition.png",
            "circle_00.partition.curves.png", "compare.png"]


def build(out: Path, root: Path = ROOT) -> list[Path]:
    """Run every command in-process, in ``root``, with its output in ``out``; returns the pictures' paths.

    Raises
    ------
    RuntimeError
        A command that did not exit 0.
    """
    import torch

    from explain_cli.cli.app import main

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    threads, cwd = torch.get_num_threads(), Path.cwd()
    torch.set_num_threads(1)  # the tiny CNN runs fastest on one thread, and results do not depend on it
    os.chdir(root)  # the JSONs record the inputs' paths as given: relative to the repository
    try:
        for command in COMMANDS:
            args = [str(out) + a[3:] if a.startswith("OUT") else a for a in command]
            if command[0] == "run":
                args += COMMON + ["--out", str(out)]
            try:
                main(args)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if code != 0:
                raise RuntimeError(f"`explain {' '.join(args)}` exited {code}")
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return [out / name for name in PICTURES]


def differs(new: Path, old: Path) -> str | None:
    """Why picture ``new`` is not ``old`` (None if it is), tolerating anti-aliasing and PNG-encoder differences.

    Same size, and fewer than 0.2 % of the pixels more than 16 levels apart: a new tick label, a
    rescaled bar or a recoloured segment moves far more.
    """
    from PIL import Image

    if not old.is_file():
        return "missing"
    with Image.open(new) as a, Image.open(old) as b:
        if a.size != b.size:
            return f"size {b.size[0]}×{b.size[1]}, now {a.size[0]}×{a.size[1]}"
        diff = np.abs(np.asarray(a.convert("RGB"), dtype=np.int16) - np.asarray(b.convert("RGB"), dtype=np.int16))
    share = float((diff.max(axis=2) > 16).mean())
    return f"{share:.1%} of the pixels changed" if share >= 0.002 else None


def stale(out: Path, docs: Path = DOCS) -> dict[str, str]:
    """The pictures in ``docs`` that differ from the ones built in ``out``, with the reason."""
    found = {}
    for name in PICTURES:
        reason = differs(out / name, docs / name)
        if reason:
            found[name] = reason
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say which pictures in docs/ are stale")
    parser.add_argument("--out", type=Path, default=None, help="where to build them [default: ROOT/out/docs]")
    parser.add_argument("--root", type=Path, default=ROOT, help="the folder holding sample_models/")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the pictures' folder")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp), args.root)
            found = stale(Path(tmp), args.docs)
        for name, reason in found.items():
            print(f"{args.docs / name} is stale ({reason}); run `make docs-images`", file=sys.stderr)
        return 1 if found else 0
    args.docs.mkdir(parents=True, exist_ok=True)
    for path in build(args.out or args.root / "out" / "docs", args.root):
        shutil.copy(path, args.docs / path.name)
        print(args.docs / path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
