"""Progress that reaches every user: log lines off a terminal, rate and ETA, phases, batch items."""

from __future__ import annotations

import io

import numpy as np
import torch

from explain_cli.progress import CallbackProgress, ItemProgress, LineProgress, TextProgress
from tests.conftest import SAMPLE_IMAGES, SAMPLE_MODEL, make_linear


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_a_plain_line_about_every_ten_seconds():
    clock, out = FakeClock(), io.StringIO()
    bar = LineProgress(out, clock=clock, ticker=False)
    bar.start(1000, "kernelshap")
    for _ in range(9):  # 9 s at 10 evaluations a second: nothing yet
        clock.now += 1
        bar.advance(10)
    assert out.getvalue() == ""
    clock.now += 1
    bar.advance(10)  # 10 s, 100 done, 900 left at 10/s
    assert out.getvalue() == "explain: kernelshap: 100/1,000 evaluations, 10/s, ETA 90 s\n"
    for _ in range(10):
        clock.now += 1
        bar.advance(10)
    assert out.getvalue().splitlines()[-1] == "explain: kernelshap: 200/1,000 evaluations, 10/s, ETA 80 s"
    assert len(out.getvalue().splitlines()) == 2 and "\r" not in out.getvalue()
    bar.stop()
    assert len(out.getvalue().splitlines()) == 2  # no closing line: the run's own output follows


def test_a_batch_longer_than_the_interval_still_gets_its_line():
    import time

    out = io.StringIO()
    bar = LineProgress(out, interval=0.05)
    bar.start(64, "rise")
    time.sleep(0.5)  # one long batch: no advance comes
    bar.stop()
    assert out.getvalue().startswith("explain: rise: 0/64 evaluations\n"), out.getvalue()
    lines = len(out.getvalue().splitlines())
    time.sleep(0.2)
    assert len(out.getvalue().splitlines()) == lines  # stopped: the ticker is gone


def test_python_progress_true_shows_rate_and_eta_on_one_line():
    clock, out = FakeClock(), io.StringIO()
    bar = TextProgress(out, clock=clock)
    bar.start(300, "lime")
    clock.now += 2
    bar.advance(100)
    assert out.getvalue().endswith("\rlime: 100/300 evaluations, 50/s, ETA 4 s\x1b[K")
    clock.now += 0.1
    bar.advance(100)  # within 0.2 s of the last report: skipped
    assert out.getvalue().count("\r") == 1
    clock.now += 0.1
    bar.advance(100)  # the last batch is always shown
    assert out.getvalue().endswith("\rlime: 300/300 evaluations, 136/s\x1b[K")
    bar.stop()
    assert out.getvalue().endswith("\n")


def test_evaluate_is_its_own_phase_and_never_passes_its_total():
    from explain_cli import explain

    seen: list[tuple[int, int, str]] = []
    model = make_linear(h=16, w=16)
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    explain(model, [torch.from_numpy(image).permute(2, 0, 1)], method="ablation", segments="grid", n_segments=16,
            target=[0, 1], evaluate=True, eval_step=0.25, progress=CallbackProgress(lambda *a: seen.append(a)))
    phases = [d for i, (_, _, d) in enumerate(seen) if i == 0 or seen[i - 1][2] != d]
    assert phases == ["ablation", "evaluate"]
    assert all(done <= total for done, total, _ in seen), [s for s in seen if s[0] > s[1]]
    last_eval = [s for s in seen if s[2] == "evaluate"][-1]
    steps = 5  # 0, 64, 128, 192, 256 of 256 pixels
    assert last_eval[0] == last_eval[1] == 2 * steps * 2 + 2 * steps  # two maps (targets) and two random curves


def test_a_batch_item_shows_its_evaluations_in_the_items_bar():
    described: list[str] = []

    class Outer:
        def describe(self, text: str) -> None:
            described.append(text)

    item = ItemProgress(Outer(), "job: a.png · kernelshap")
    item.start(100, "kernelshap")
    item.advance(40)
    item.start(20, "evaluate")
    item.advance(20)
    item.stop()
    assert described == ["job: a.png · kernelshap · 0/100 evaluations", "job: a.png · kernelshap · 40/100 evaluations",
                         "job: a.png · kernelshap · evaluate 0/20 evaluations",
                         "job: a.png · kernelshap · evaluate 20/20 evaluations", "job: a.png · kernelshap"]


def test_a_long_run_off_a_terminal_prints_a_progress_line(cli, tmp_path, monkeypatch):
    """The clock runs 3 s per reading, so this run 'takes' well over 20 s."""
    import explain_cli.progress as progress

    class SlowTime:
        now = 0.0

        def monotonic(self) -> float:
            SlowTime.now += 3.0
            return SlowTime.now

    monkeypatch.setattr(progress, "time", SlowTime())
    result = cli("run", SAMPLE_MODEL, SAMPLE_IMAGES[0], "--method", "ablation", "--runtime", "eager",
                 "--batch-size", "4", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("explain: ablation: ")]
    assert lines and "evaluations" in lines[0] and "/s" in lines[0], result.stderr


def test_an_auto_budget_shows_each_round_not_the_cap():
    from explain_cli import explain

    seen: list[tuple[int, int, str]] = []
    (e,) = explain(make_linear(k=1), [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))],
                   method="kernelshap", samples="auto", segments="grid", n_segments=16, runtime="eager",
                   progress=CallbackProgress(lambda *a: seen.append(a)))
    rounds = [s for s in seen if s[2] == "kernelshap (auto)"]
    assert rounds and max(total for _, total, _ in rounds) < e.params["max_samples"]
    assert all(done <= total for done, total, _ in seen)
    assert rounds[-1][0] == e.evaluations  # the last round ends where the run does


def test_a_restart_under_the_same_description_keeps_the_rate_clock():
    clock, out = FakeClock(), io.StringIO()
    bar = TextProgress(out, clock=clock)
    bar.start(256, "lime (auto)")
    clock.now += 10
    bar.advance(256)  # 25.6/s
    bar.start(384, "lime (auto)")
    bar.advance(256)
    clock.now += 5
    bar.advance(128)  # 384 in 15 s: 25.6/s over the rounds, not 128 in 5 s after a jump
    assert out.getvalue().endswith("lime (auto): 384/384 evaluations, 25.6/s\x1b[K")
