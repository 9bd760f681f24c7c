"""`explain batch --backend ray`: same numbers and summary as the local backend, dead workers, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from explain_cli.batch import ray_backend
from explain_cli.batch.run import run_batch
from tests.conftest import ROOT

ray = pytest.importorskip("ray", reason="the Ray backend needs the ray extra: pip install 'explain_cli[ray]'")


METHODS = [{"method": "lime", "samples": 20}, {"method": "kernelshap", "samples": 30, "evaluate": True},
           {"method": "permutation"}]


def write_config(tmp_path: Path, linear_script: Path, out: Path, n_inputs: int = 4, methods=METHODS) -> Path:
    """npy inputs of the pixel-linear model; by default per-input items (one with curves) and a batch item."""
    folder = tmp_path / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n_inputs):
        np.save(folder / f"x{i}.npy", rng.random((3, 16, 16)).astype(np.float32))
    config = {
        "defaults": {"seed": 0, "out": str(out)},
        "jobs": [{"model": str(linear_script), "inputs": [str(folder)], "out": str(out / "job"),
                  "segments": "grid", "n_segments": 9, "save_map": True,
                  "methods": methods}],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rows_without_time(rows) -> list[dict]:
    return [{k: v for k, v in r.__dict__.items() if k != "time_s"} for r in rows]


def test_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ray_backend.ExplainError, match=r"pip install 'explain_cli\[ray\]'"):
        ray_backend.require_ray()


@pytest.mark.slow
def test_cli_starts_a_quiet_local_ray(tmp_path, linear_script):
    # runs before the shared Ray below starts: the command starts (and stops) its own local Ray
    out = tmp_path / "out"
    config = write_config(tmp_path, linear_script, out, n_inputs=2, methods=[{"method": "lime", "samples": 20}])
    ran = subprocess.run([sys.executable, "-m", "explain_cli", "batch", config, "--backend", "ray", "--workers", "2"],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    written = sorted(str(p) for p in (out / "job").iterdir())
    assert sorted(ran.stdout.splitlines()) == written  # stdout: the paths written, nothing from Ray
    assert ran.stderr.strip().splitlines()[-1].startswith("explain: 2 done, 0 skipped (complete), 0 failed")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the tests below; run_batch uses an initialised Ray as it is."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_same_numbers_and_summary_as_local_and_force(local_ray, tmp_path, linear_script):
    out = tmp_path / "out"
    config = write_config(tmp_path, linear_script, out)
    local_rows, _ = run_batch(config)
    local = {p.name: p.read_bytes() for p in (out / "job").iterdir()}
    ray_rows, summary = run_batch(config, backend="ray", workers=2, force=True)  # rewrites every file
    assert len(ray_rows) == 9 and all(r.status == "done" for r in ray_rows)
    assert sorted(p.name for p in (out / "job").iterdir()) == sorted(local)
    for name, before in local.items():
        after = (out / "job" / name).read_bytes()
        if name.endswith(".json"):  # every score, area, target...: all but the timings
            a, b = json.loads(before), json.loads(after)
            assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if k != "timing"), name
            assert a["timing"] != b["timing"], name  # really written again
        else:  # PNG, curves PNG, NPY maps: byte for byte
            assert after == before, name
    assert rows_without_time(ray_rows) == rows_without_time(local_rows)
    assert [r["status"] for r in json.loads(summary.read_text())["rows"]] == ["done"] * 9


class DyingWorker(ray_backend.Worker):
    """A worker process that exits on ``die.npy`` always, and on ``flaky.npy`` the first time."""

    def run(self, task):
        names = [Path(path).name for path, _ in task["inputs"]]
        marker = Path(task["values"]["out"]) / ".flaky-died-once"
        if "die.npy" in names:
            os._exit(1)
        if "flaky.npy" in names and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            os._exit(1)
        return super().run(task)


@pytest.mark.slow
def test_dead_worker_loses_only_its_item_retried_once(local_ray, tmp_path, linear_script, monkeypatch):
    monkeypatch.setattr(ray_backend, "Worker", DyingWorker)
    out = tmp_path / "out"
    config = write_config(tmp_path, linear_script, out, n_inputs=3, methods=[{"method": "lime", "samples": 20}])
    for name in ("die.npy", "flaky.npy"):  # before the run, so the config's folder picks them up
        np.save(tmp_path / "inputs" / name, np.zeros((3, 16, 16), np.float32))
    events = []
    rows, summary = run_batch(config, backend="ray", workers=2, emit=events.append)
    status = {Path(r.input).name: r.status for r in rows}
    assert status == {"die.npy": "failed", "flaky.npy": "done", "x0.npy": "done", "x1.npy": "done", "x2.npy": "done"}
    failed = next(r for r in rows if r.status == "failed")
    assert "Ray worker died" in failed.error and "2 tries" in failed.error
    assert [e["event"] for e in events].count("item") == 5  # each item reported once, retries are not
    assert len(json.loads(summary.read_text())["rows"]) == 5


def test_resume_skips_complete_items(local_ray, tmp_path, linear_script):
    out = tmp_path / "out"
    config = write_config(tmp_path, linear_script, out, n_inputs=3, methods=[{"method": "lime", "samples": 20}])
    first, _ = run_batch(config)  # complete outputs, made here: a resumed Ray run does not care who made them
    (out / "job" / "x1.lime.json").unlink()  # as if the run had been killed before this item finished
    again, _ = run_batch(config, backend="ray", workers=1)
    assert [(Path(r.input).name, r.status) for r in again] == [("x0.npy", "skipped"), ("x2.npy", "skipped"),
                                                               ("x1.npy", "done")]
    assert again[0].top_segments == first[0].top_segments  # a skipped row keeps its numbers
    assert again[2].top_segments == first[1].top_segments


def test_ray_options_are_checked(cli, tmp_path, linear_script):
    config = write_config(tmp_path, linear_script, tmp_path / "out")
    result = cli("batch", config, "--workers", "2")
    assert result.exit_code == 2 and "--backend ray" in result.stderr, result.stderr
    result = cli("batch", config, "--backend", "ray", "--workers", "0")
    assert result.exit_code == 2 and "--workers" in result.stderr, result.stderr
