"""Every refusal of a bad input comes before the runtime probe (issue 24, items 15, 26, 27).

``runtime auto`` times the candidate runtimes once per model and shape (seconds on a real
model); a run that is going to be refused must never pay for it. Each case below patches the
probe to fail the test, so a refusal that comes after it shows as a failure, not a slow pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import explain_cli
from explain_cli import budget
from explain_cli.errors import ExplainError
from tests.conftest import make_linear


def _conv() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(16, 3))


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:16] = (200, 40, 40)
    pixels[16:, :16] = (40, 200, 40)
    pixels[16:, 16:] = (40, 40, 200)
    return Image.fromarray((pixels + rng.integers(0, 8, pixels.shape)).astype(np.uint8))


CASES = {
    "target out of range": ({"target": [7]}, "out of range"),
    "baseline colour over 255": ({"baseline": "value:300,0,0"}, "0..255"),
    "exact over max_samples": ({"exact": True, "n_segments": 40, "segments": "grid", "max_samples": 1000}, "2^M"),
    "exact over samples": ({"exact": True, "n_segments": 40, "segments": "grid", "samples": 1000}, "2^M"),
    "samples too large for memory": ({"samples": 10_000_000, "n_segments": 4096, "segments": "grid"}, "samples"),
    "run over the time bound": ({"method": "rise", "masks": 10_000_000}, "masks"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_refusals_come_before_the_runtime_probe(name, monkeypatch, tmp_path):
    import explain_cli.models as models

    monkeypatch.setattr(models, "select_runtime", lambda *a, **k: pytest.fail("the runtime probe ran"))
    monkeypatch.setattr(budget, "machine_memory", lambda: 4 * 2**30)
    monkeypatch.setattr(budget, "batch_cost", lambda *a, **k: 0.01)  # a model of 10 ms per image
    options, fragment = CASES[name]
    with pytest.raises(ExplainError, match=fragment.replace("^", r"\^")):
        explain_cli.explain(_conv(), _image(), runtime="auto", seed=0, **{"size": 64, **options})


def test_an_ordinary_run_reaches_the_probe(monkeypatch):
    import explain_cli.models as models

    probed: list[str] = []

    def probe(model, *a, **k):
        probed.append("yes")
        return model

    monkeypatch.setattr(models, "select_runtime", probe)
    explain_cli.explain(make_linear(), torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)),
                        method="ablation", segments="grid", n_segments=16, runtime="auto")
    assert probed == ["yes"]


# ---------------------------------------------------------------------------------------------
# Runs that would take hours (item 27): refused in one line naming the option that makes them long.
# ---------------------------------------------------------------------------------------------

HOURS = {  # options, cost per evaluation (s), segments, the refusal's start
    "rise masks 10^7": ({"method": "rise", "masks": 10_000_000}, 0.076, 45, "masks 10,000,000 makes this run take"),
    "stability 100": ({"stability": 100}, 0.076, 45, "stability 100 makes this run take"),
    "permutation repeats 10^4": ({"method": "permutation", "repeats": 10_000}, 0.1, 64, "repeats 10,000 makes"),
    "exact 2^20 at 10 ms": ({"exact": True, "samples": 2**20}, 0.01, 20, "n_segments 20 makes"),
}


@pytest.mark.parametrize("name", list(HOURS))
def test_runs_of_hours_name_the_option(name):
    from explain_cli.budget import Run, check_time
    from explain_cli.options.settings import settings

    options, cost, m, start = HOURS[name]
    cfg = settings({**options})
    run = Run(cfg.method, cfg.params, 3, 224, 224, m, 1, 2 if cfg.engine.batch else 1, 64)
    with pytest.raises(ExplainError) as refused:
        check_time(run, cfg, cost, lambda n: cost)
    assert refused.value.option == start.split()[0], refused.value
    assert f"{refused.value.option} {refused.value.problem}".startswith(start), refused.value
    assert "over the 2.0 h bound" in str(refused.value) and "no_limit" in str(refused.value)


@pytest.mark.parametrize("method", ["kernelshap", "lime", "rise"])
def test_auto_budgets_are_timed_at_their_typical_use_not_their_cap(method):
    """0.5 s per evaluation (a large model on a CPU): 20,000 (the cap) would be 2.8 h, 2,000 (typical) 17 min."""
    from explain_cli.budget import Run, check_time
    from explain_cli.options.settings import settings

    cfg = settings({"method": method, "samples" if method != "rise" else "masks": "auto"})
    run = Run(cfg.method, cfg.params, 3, 224, 224, 50, 3, 1, 16)
    check_time(run, cfg, 0.5, lambda n: 0.5)


# ---------------------------------------------------------------------------------------------
# The command line: what the files' headers decide is answered before the model loads.
# ---------------------------------------------------------------------------------------------

def _png(path, h: int, w: int, *, orientation: int | None = None):
    img = Image.fromarray(np.full((h, w, 3), 120, dtype=np.uint8))
    if orientation is None:
        img.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(path, exif=exif)
    return path


FILE_CASES = {
    "mask of another size": (lambda d: ["--mask", _png(d / "mask.png", 10, 10)], "--mask is [10, 10] but the input"),
    "baseline colour over 255": (lambda d: ["--baseline", "value:300,0,0"], "0..255"),
    "input over max-pixels": (lambda d: ["--max-pixels", "1000"], "over"),
}


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_cli_answers_from_headers_before_loading_the_model(name, cli, tmp_path, monkeypatch):
    import explain_cli.api as api

    monkeypatch.setattr(api, "as_model", lambda *a, **k: pytest.fail("the model was loaded"))
    image = _png(tmp_path / "in.png", 48, 64)
    make, fragment = FILE_CASES[name]
    result = cli("run", "torchvision:resnet18", image, "--out", tmp_path / "out", *make(tmp_path))
    assert result.exit_code == 2, result.stderr
    assert fragment in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_header_size_turns_with_exif(tmp_path):
    from explain_cli.precheck import header_size

    assert header_size(_png(tmp_path / "plain.png", 48, 64)) == (48, 64)
    assert header_size(_png(tmp_path / "turned.png", 48, 64, orientation=6)) == (64, 48)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert header_size(tmp_path / "junk.png") is None
