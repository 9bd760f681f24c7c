"""Every command in README.md runs (issue 24, item 13).

Each ```sh / ```bash block is read from the README and its commands run in order, in a fresh
folder where ``sample_models/`` and ``configs/`` are the repository's (so nothing is written
into the checkout). ``explain ...`` lines run in-process through the CLI's entry point; ``make
TARGET`` lines run the recipe ``make -n`` prints for TARGET (the tool in place of ``.venv/bin/explain``),
except the targets in :data:`DRY_RUN_ONLY`; ``python -m ...`` lines run in a subprocess.

Files the README names for the reader's own (``cat.jpg``, ``photo.png``, ...) are replaced by
the stand-ins in :data:`STAND_INS`, and a command that would take minutes on a CPU gets the
smaller budget in :data:`QUICKER` (the README says both, above its examples). The ```text block
under "Use" is a synopsis with placeholders, not commands; the ```python block runs in
tests/test_api.py.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
#: README placeholders for the reader's files -> (what the test uses, how it is made).
STAND_INS = {
    "cat.jpg": "sample_models/images/cross_circle.png",
    "photo.png": "sample_models/images/triangle_square.png",
    "photo.labels.npy": "photo.labels.npy",  # written by _workspace: a 4x4 grid over triangle_square.png
    "resnet50.safetensors": "resnet18.safetensors",  # written by _workspace: resnet18's random weights
    "torchvision:resnet50": "torchvision:resnet18",  # resnet50 takes minutes for 2048 evaluations on a CPU
}
#: Flags added to a command (matched by a token it contains) so that it takes seconds, not minutes.
QUICKER = {"torchvision:resnet18": ["--samples", "64", "--n-segments", "16"],
           "configs/compare.yaml": ["--set", "evaluate=false"]}  # 15 items' curves: minutes on a busy CPU
#: make targets checked with `make -n` only, and why.
DRY_RUN_ONLY = {
    "test": "it is this test suite",
    "test-fast": "it is this test suite",
    "bench": "a benchmark: minutes of timing runs",
    "train-sample": "re-trains the shipped model: minutes, and it rewrites sample_models/",
    "docs-images": "tests/test_docs_images.py makes the same pictures (docs/images.py) and checks docs/",
}


def readme_blocks() -> list[tuple[str, list[str]]]:
    """(heading above the block, its commands) for every ```sh and ```bash block, continuations joined."""
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"^```(sh|bash)\n(.*?)^```", text, flags=re.M | re.S):
        heading = re.findall(r"^#+ (.+)$", text[: match.start()], flags=re.M)[-1]
        joined = match.group(2).replace("\\\n", " ")
        commands = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        blocks.append((heading, commands))
    return blocks


def test_readme_blocks_are_found():
    headings = [h for h, _ in readme_blocks()]
    assert headings == ["Set-up: two commands", "Use", "Segmenters and embedding models", "Reports and side-by-side comparisons",
                        "Development"]
    synopsis = re.search(r"^## Use\n\n```(\w+)", README.read_text(), flags=re.M)
    assert synopsis and synopsis.group(1) == "text"  # placeholders: a synopsis, not commands
    assert "NAME.kernelshap.png" in README.read_text() and "NAME.lime." not in README.read_text()


def _workspace(tmp_path: Path) -> Path:
    """A folder where the README's relative paths resolve to the repository's files, and writes stay."""
    import torchvision
    from PIL import Image

    for name in ("sample_models", "configs"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    (tmp_path / "docs").mkdir()  # make docs-images copies its pictures here, not into the checkout
    with Image.open(ROOT / STAND_INS["photo.png"]) as image:
        w, h = image.size
    cells = (np.arange(h)[:, None] * 4 // h) * 4 + np.arange(w)[None, :] * 4 // w
    np.save(tmp_path / "photo.labels.npy", cells.astype(np.int64))
    from safetensors.torch import save_file

    state = torchvision.models.resnet18(weights=None).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "resnet18.safetensors"))
    return tmp_path


def _explain(cli, tokens: list[str], where: Path) -> None:
    args = []
    for token in tokens[1:]:
        token = STAND_INS.get(token, token)
        matches = sorted(glob.glob(token, root_dir=where)) if any(c in token for c in "*?[") else []
        args += matches or [token]
    for key, extra in QUICKER.items():
        if key in args:
            args += extra
    result = cli(*args)
    assert result.exit_code == 0, f"{shlex.join(tokens)}\n{result.stderr}"


def _make(cli, target: str, where: Path) -> None:
    recipe = subprocess.run(["make", "-s", "-n", "-C", str(ROOT), "-o", "install", "-o", ".venv/.installed",
                             target, "EXPLAIN=explain", "PY=python"], capture_output=True, text=True)
    assert recipe.returncode == 0, f"make {target}: {recipe.stderr}"
    if target in DRY_RUN_ONLY:
        return
    for line in recipe.stdout.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line)
        if tokens and tokens[0] == "explain":
            _explain(cli, tokens, where)
        elif tokens:
            done = subprocess.run(line, shell=True, cwd=where, capture_output=True, text=True)
            assert done.returncode == 0, f"make {target}: {line}\n{done.stderr}"


def _run(cli, command: str, where: Path) -> None:
    tokens = shlex.split(command, comments=True)
    if tokens[0] == "explain":
        _explain(cli, tokens, where)
    elif tokens[0] == "make":
        assert len(tokens) == 2, command
        _make(cli, tokens[1], where)
    elif tokens[:2] == ["python", "-m"]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, *tokens[1:]], cwd=where, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    else:
        raise AssertionError(f"README command {command!r}: the test does not know how to run it")


@pytest.mark.slow
@pytest.mark.parametrize("heading, commands", readme_blocks(), ids=[h for h, _ in readme_blocks()])
def test_readme_commands_run(heading, commands, cli, tmp_path, monkeypatch):
    where = _workspace(tmp_path)
    monkeypatch.chdir(where)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    for command in commands:
        _run(cli, command, where)
    if heading.startswith("Set-up"):  # what the README says make demo writes
        for image in (ROOT / "sample_models" / "images").glob("*.png"):
            assert (where / "out" / "demo" / f"{image.stem}.kernelshap.png").is_file()
            assert (where / "out" / "demo" / f"{image.stem}.kernelshap.json").is_file()
        assert (where / "out" / "demo" / "scene_05.kernelshap.png").is_file()  # the sample detector's boxes
    if heading.startswith("Reports"):
        assert (where / "out" / "batch-demo" / "report.html").is_file()


def test_readme_stays_a_guide_of_at_most_400_lines_with_the_python_api_early():
    """Issue 20: the README is a user's guide (research logs live in docs/), the API within 150 lines."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 400, f"README.md has {len(lines)} lines; move details to docs/"
    assert lines.index("## Python API") < 150
