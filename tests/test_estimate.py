"""The long-run estimate: measured batched throughput, information not warnings, honest hints."""

from __future__ import annotations

import json

import pytest
import torch

from explain_cli import announce
from explain_cli.announce import Announcer, estimate_message, speed_hints
from explain_cli.models import LoadedModel
from explain_cli.progress import NullProgress


class FakeEvaluator:
    def __init__(self, batch_size: int = 64) -> None:
        self.evaluations, self.batch_size = 0, batch_size


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def announcer(ev, clock, told, hints=(), auto=False):
    return Announcer(NullProgress(), ev, runtime="onnxruntime", evaluations=lambda total: total,
                     hints=lambda: list(hints), tell=told.append, auto=auto, clock=clock)


def said_seconds(line: str) -> float:
    """The duration a line announces ("about 102 s:", "about 3 min:", "about 1.5 h:"), in seconds."""
    value, unit = line.split("about ")[1].split(":")[0].split()
    return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]


def run_batches(bar, ev, clock, sizes, seconds_per_eval):
    for rows in sizes:
        clock.now += rows * seconds_per_eval
        ev.evaluations += rows
        bar.advance(rows)


def test_from_batched_throughput_not_a_single_row_nor_the_first_batch():
    ev, clock, told = FakeEvaluator(), Clock(), []
    bar = announcer(ev, clock, told)
    bar.start(2048, "kernelshap")
    run_batches(bar, ev, clock, [1], 2.0)  # f(baseline) alone: a single cold row, far slower per row
    run_batches(bar, ev, clock, [64], 0.1)  # the first batch pays one-time allocations
    assert told == []
    run_batches(bar, ev, clock, [64], 0.05)  # batched and warm: 20 evaluations a second
    assert told == ["this run will take about 102 s: 2,048 model evaluations at 20/s on onnxruntime; "
                    "fewer `samples`/`masks`, `n_segments` or `size` shorten it"]
    run_batches(bar, ev, clock, [64] * 5, 0.05)
    assert len(told) == 1  # once


def test_the_estimate_is_within_half_and_twice_the_real_time():
    """Batches slow down and speed up by 30 % around the measured one: the estimate stays near the truth."""
    ev, clock, told = FakeEvaluator(), Clock(), []
    bar = announcer(ev, clock, told)
    bar.start(4000, "rise")
    started = clock.now
    pace = [0.06, 0.03, 0.039, 0.021] + [0.03, 0.039, 0.021, 0.03] * 16  # seconds per evaluation, batch by batch
    for i in range(0, 4000, 64):
        run_batches(bar, ev, clock, [min(64, 4000 - i)], pace[i // 64])
    real = clock.now - started
    said = said_seconds(told[0])
    assert 0.5 * real <= said <= 2 * real, (said, real)


def test_an_auto_budget_waits_for_the_prediction_of_its_second_round():
    ev, clock, told = FakeEvaluator(), Clock(), []
    bar = announcer(ev, clock, told, auto=True)
    bar.start(20_000, "kernelshap")  # the cap: not what the run will use
    bar.start(256, "kernelshap (auto)")
    run_batches(bar, ev, clock, [64] * 4, 0.05)
    assert told == []  # the first round says nothing about where it stops
    bar.start(3000, "kernelshap (auto)")  # predicted from the first round's standard errors
    bar.advance(256)
    assert len(told) == 1 and told[0].startswith("this run will take about 2 min: about 3,000 model evaluations "
                                                 "until the map is stable (auto) at 20/s")


def test_a_short_run_says_nothing():
    ev, clock, told = FakeEvaluator(), Clock(), []
    bar = announcer(ev, clock, told, hints=["never asked for"])
    bar.start(1000, "lime")
    run_batches(bar, ev, clock, [64] * 16, 0.05)  # 50 s
    assert told == []


def test_the_predicted_total_follows_the_standard_errors():
    from explain_cli.engines.auto import Stopper, predicted_total

    stop = Stopper(tolerance=0.03, max_samples=20_000)
    assert predicted_total(256, stop) == 256  # nothing measured yet
    stop.evaluations, stop.ratio = 256, 0.06  # errors twice the tolerance: four times the evaluations
    assert predicted_total(384, stop) == 1024
    stop.ratio = 0.02  # already under: the round's own target
    assert predicted_total(384, stop) == 384
    stop.ratio = 1.0
    assert predicted_total(384, stop) == 20_000  # capped


def test_hints_are_part_of_the_line():
    assert "onnxruntime ran 2.0× faster here" in estimate_message(5000, 0.1, "eager", ["onnxruntime ran 2.0× faster here"])
    assert estimate_message(100, 0.1, "eager", []) is None


def make_model(runtime: str) -> LoadedModel:
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    return LoadedModel(module=module, source="net", kind="module", sha256=None, weights=None,
                       device=torch.device("cpu"), runtime=runtime)


@pytest.mark.parametrize("cuda", [False, True])
def test_a_faster_runtime_or_a_gpu_is_named_only_when_it_would_help(tmp_path, monkeypatch, cuda):
    from explain_cli.models.fingerprint import graph_fingerprint
    from explain_cli.models.verdict import Verdict, save_verdict, verdict_key

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    eager = make_model("eager")
    shape = (3, 16, 16)
    assert speed_hints(eager, shape, 64) == (["a GPU is present (`device` cuda)"] if cuda else [])  # nothing measured
    from explain_cli.models.onnx_cache import cache_dir

    key = verdict_key(graph_fingerprint(eager), shape, 64, eager.device)
    save_verdict(cache_dir(), key, Verdict("onnxruntime", "fastest measured", {"eager": 0.02, "onnxruntime": 0.01}))
    hints = speed_hints(eager, shape, 64)
    assert hints[0] == "onnxruntime ran 2.0× faster here (`runtime` auto)"
    assert ("a GPU is present (`device` cuda)" in hints) == cuda
    assert "faster here" not in " ".join(speed_hints(make_model("onnxruntime"), shape, 64))  # already the fastest


def test_the_estimate_never_reaches_the_json(cli, tmp_path, monkeypatch):
    from tests.conftest import SAMPLE_IMAGES, SAMPLE_MODEL

    monkeypatch.setattr(announce, "LONG_RUN_S", 0.0)
    result = cli("run", SAMPLE_MODEL, SAMPLE_IMAGES[0], "--method", "ablation", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "explain: this run will take about" in result.stderr and "warning" not in result.stderr
    record = json.loads((tmp_path / f"{SAMPLE_IMAGES[0].stem}.ablation.json").read_text())
    assert not any("take" in w for w in record["warnings"])
