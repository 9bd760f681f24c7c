"""Up-front bounds (issue 24, items 26–27): memory, time and segments refused from arithmetic.

Nothing here allocates what it refuses: the estimates are checked on the issue's cases with a
fixed memory bound, against tracemalloc's peak on small real runs (an upper bound, not a wild
one), and end to end through the CLI, where the refusal comes before any engine evaluation.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
import torch

import explain_cli
from explain_cli import budget
from explain_cli.budget import MAX_SEGMENTS, Run, check_memory, check_segments, check_time, engine_arrays, evaluations
from explain_cli.engines import get_engine
from explain_cli.errors import ExplainError, OptionError
from explain_cli.options.settings import settings
from tests.conftest import make_linear
from tests.helpers import assert_refused

# The library warns (ExplainWarning) about coarse maps and small budgets; these tests judge refusals.
pytestmark = pytest.mark.filterwarnings("ignore::explain_cli.errors.ExplainWarning")


def _rand(*shape: int) -> torch.Tensor:
    """Seeded random pixels: these tests leave the global generator as they found it."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))

GIB = 2**30


def _run(method: str, m: int = 45, *, k: int = 1, size: int = 64, batch: int = 64, n: int = 1, **params) -> Run:
    engine = get_engine(method)
    return Run(method, engine.params(**params), 3, size, size, m, k, n, batch)


# The cases (out of memory after seconds and gigabytes), refused with a 16 GiB machine.
MEMORY_CASES = {
    "rise masks 10^7 grid 256": (_run("rise", masks=10_000_000, grid=256), "masks"),
    "kernelshap samples 10^7": (_run("kernelshap", samples=10_000_000), "samples"),
    "lime samples 10^7": (_run("lime", samples=10_000_000), "samples"),
    "batch 65536 at 64²": (_run("ablation", batch=65536), "batch_size"),
    "kernelshap over a 4096-cell grid": (_run("kernelshap", m=4096, samples=2048), "samples"),
    "kernelshap auto over 4096 cells": (_run("kernelshap", m=4096, samples="auto"), "max_samples"),
    "kernelshap exact over 23 segments": (_run("kernelshap", m=23, samples=10_000_000, exact=True, k=1000),
                                          "n_segments"),
}


@pytest.mark.parametrize("name", list(MEMORY_CASES))
def test_runs_that_cannot_fit_are_refused_by_arithmetic(name):
    run, option = MEMORY_CASES[name]
    start = time.perf_counter()
    with pytest.raises(OptionError) as info:
        check_memory(run, limit=8 * GIB)
    assert info.value.option == option, str(info.value)
    assert "no_limit" in str(info.value) or option == "batch_size"
    assert time.perf_counter() - start < 0.1
    check_memory(run, limit=8 * GIB, no_limit=True)  # lifted on request


DEFAULT_RUNS = {
    "kernelshap 2048 over 200 segments at 224²": _run("kernelshap", m=200, size=224, k=3, samples=2048),
    "kernelshap auto over 150 segments": _run("kernelshap", m=150, samples="auto"),
    "kernelshap exact over 16 segments": _run("kernelshap", m=16, samples=65536, exact=True),
    "lime 1000 over 200 segments": _run("lime", m=200, samples=1000),
    "lime auto over 200 segments": _run("lime", m=200, samples="auto"),
    "rise 4000 masks at 448²": _run("rise", size=448, masks=4000),
    "partition 500 over 1000 segments": _run("partition", m=1000, samples=500),
    "ablation over a 4096-cell grid": _run("ablation", m=4096, k=10),
    "permutation over 64 cells, 32 inputs": _run("permutation", m=64, n=32, k=5, repeats=5),
    "batch 128 at 1024²": _run("ablation", size=1024, batch=128),
}


@pytest.mark.parametrize("name", list(DEFAULT_RUNS))
def test_ordinary_runs_pass_on_a_small_machine(name):
    check_memory(DEFAULT_RUNS[name], limit=4 * GIB)


def _peak(call) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("method, m, samples", [("kernelshap", 60, 2048), ("kernelshap", 30, 400), ("lime", 60, 3000)])
def test_estimate_bounds_the_real_peak_within_a_small_factor(method, m, samples):
    """numpy's arrays are what the estimate counts, and tracemalloc sees them: estimate ≥ peak, ≤ 30× peak."""
    image = _rand(3, 24, 24)
    segments = torch.arange(m).repeat_interleave(-(-576 // m))[:576].reshape(24, 24)
    model = make_linear(k=2, h=24, w=24)
    def run() -> None:
        explain_cli.explain(model, image, method=method, samples=samples, segments=segments.numpy(), top_k=2,
                            preprocess="none", baseline="zero")

    run()  # imports and caches first: their memory is not the run's
    peak = _peak(run)
    estimate, _ = engine_arrays(_run(method, m=m, k=2, size=24, samples=samples))
    assert peak <= estimate <= 30 * peak, (peak, estimate)


def _settings(**options):
    return settings(options)


TIME_CASES = {  # the issue's announcements: (options, engine evaluations' cost in seconds)
    "rise masks 10^7 (211 h)": ({"method": "rise", "masks": 10_000_000}, 76e-3, 1),
    "stability 100 (4.3 h)": ({"stability": 100, "samples": 2048}, 76e-3, 45),
    "repeats 10000 (20 h)": ({"method": "permutation", "repeats": 10_000}, 0.1, 64),
}


@pytest.mark.parametrize("name", list(TIME_CASES))
def test_runs_announcing_hours_are_refused_unless_no_limit(name):
    options, cost, m = TIME_CASES[name]
    cfg = _settings(**options)
    run = Run(cfg.method, cfg.params, 3, 64, 64, m, 1, 2 if cfg.engine.batch else 1, 64)
    probes: list[int] = []
    with pytest.raises(ExplainError, match=r"over the 2\.0 h bound.*`no_limit`"):
        check_time(run, cfg, cost * 10, lambda n: probes.append(n) or cost)  # f(x)'s first call pays the warm-up
    assert probes == [64]  # a full batch, the cost the run pays per image, confirms before refusing
    check_time(run, _settings(**options, no_limit=True), cost, lambda n: cost)
    check_time(run, cfg, 1e-9, lambda n: pytest.fail("no probe when f(x) says short"))
    check_time(run, cfg, cost * 10, lambda n: 1e-9)  # full batches are cheap enough: the run goes ahead


def test_evaluation_counts_match_the_engines():
    cfg = _settings(method="ablation")
    assert evaluations(Run("ablation", cfg.params, 3, 8, 8, 10, 1, 1, 4)) == 12
    assert evaluations(_run("rise", masks=100)) == 102
    assert evaluations(_run("kernelshap", samples="auto")) == 20_000
    assert evaluations(_run("permutation", m=4, n=3, repeats=2)) == 3 * (1 + 2 * 4)
    assert evaluations(_run("partition", m=45, samples=100_000)) == 45 * 45 + 2  # the exact count caps samples
    assert evaluations(_run("partition", m=45, samples=500)) == 500


def test_segment_caps():
    check_segments(MAX_SEGMENTS, "ablation")
    with pytest.raises(OptionError, match="160,000 segments, over the maximum of 4,096"):
        check_segments(160_000, "lime")
    params = get_engine("partition").params()
    with pytest.raises(OptionError, match="`hierarchy` axis"):
        check_segments(2048, "partition", params)
    check_segments(2048, "partition", get_engine("partition").params(hierarchy="axis"))


# ---------------------------------------------------------------------------------------------
# End to end: one line, exit 2, before the engine's first evaluation, nothing written.
# ---------------------------------------------------------------------------------------------

CLI_CASES = {
    "rise masks 10^7 grid 256": (["-m", "rise", "--masks", "10000000", "--grid", "256"], "--masks makes rise's arrays"),
    "kernelshap samples 10^7": (["--samples", "10000000"], "--samples makes kernelshap's arrays"),
    "batch size 65536 at 64²": (["-m", "ablation", "--batch-size", "65536", "--size", "64"], "--batch-size 65,536"),
    "grid 4096 with partition": (["-m", "partition", "--segments", "grid", "--n-segments", "4096", "--size", "128"],
                                 "partition's rag tree"),
    "grid 5000 with ablation": (["-m", "ablation", "--segments", "grid", "--n-segments", "5000", "--size", "100"],
                                "over the maximum of 4,096"),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_refuses_before_any_engine_evaluation(name, cli, linear_script, small_image, tmp_path, monkeypatch):
    from explain_cli.core import Problem

    monkeypatch.setattr(budget, "machine_memory", lambda: 16 * GIB)
    monkeypatch.setattr(Problem, "begin", lambda *a, **k: pytest.fail("the engine started"))
    args, fragment = CLI_CASES[name]
    out = tmp_path / "out"
    model = linear_script
    if "--size" in args:  # the linear model takes 16²; a resizing model for larger inputs
        model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 3))
        path = tmp_path / "pool.pt"
        torch.jit.script(model).save(str(path))
        model = path
    start = time.perf_counter()
    result = cli("run", model, small_image, "--out", out, *args)
    assert_refused(result, fragment)
    assert not out.exists()
    assert time.perf_counter() - start < 10


def test_label_map_with_160000_segments_is_refused_when_read(tmp_path):
    labels = np.arange(400 * 400).reshape(400, 400)
    with pytest.raises(OptionError, match="160,000 segments, over the maximum"):
        settings({"segments": labels})


def test_no_limit_runs_in_python():
    (e,) = explain_cli.explain(make_linear(), _rand(3, 16, 16), method="ablation", segments="grid", n_segments=4,
                               no_limit=True)
    assert e.params == {} and e.evaluations == 6
