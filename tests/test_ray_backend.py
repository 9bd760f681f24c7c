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
from tests.conftest import ROOT, SAMPLE_IMAGES
from tests.helpers import assert_refused

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
    return [{k: v for k, v in r.__dict__.items() if k not in ("time_s", "explain_s")} for r in rows]


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
    assert_refused(result, "--backend ray")
    result = cli("batch", config, "--backend", "ray", "--workers", "0")
    assert_refused(result, "--workers")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_an_address_where_nothing_listens_fails_in_seconds(tmp_path, linear_script):
    """Failed before: Ray retried the address for minutes (180 s until killed), printing its own warnings."""
    config = write_config(tmp_path, linear_script, tmp_path / "out", n_inputs=1, methods=["lime"])
    address = f"127.0.0.1:{free_port()}"
    ran = subprocess.run([sys.executable, "-m", "explain_cli", "batch", config, "--backend", "ray", "--address", address],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=90)
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.strip().splitlines() == [ran.stderr.strip()] and f"--address {address}: cannot reach" in ran.stderr
    assert not (tmp_path / "out").exists()


def test_probe_address_is_bounded_and_checks_the_form():
    import time

    started = time.monotonic()
    with pytest.raises(ray_backend.ExplainError, match="cannot reach a Ray cluster"):
        ray_backend.probe_address("192.0.2.1:6379", timeout=0.5)  # TEST-NET: unroutable, or no answer
    assert time.monotonic() - started < 5
    with pytest.raises(ray_backend.ExplainError, match="expected auto, HOST:PORT or ray://HOST:PORT"):
        ray_backend.probe_address("nowhere")


def external_data_onnx(folder: Path) -> Path:
    """The sample ONNX model with its weights in ``weights/shapes.bin`` beside it (ONNX external data)."""
    onnx = pytest.importorskip("onnx", reason="ONNX models need the onnx extra")
    pytest.importorskip("onnxruntime", reason="ONNX models need the onnx extra")
    proto = onnx.load(str(ROOT / "sample_models" / "shapes_cnn.onnx"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights").mkdir(exist_ok=True)
    path = folder / "shapes_ext.onnx"
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights/shapes.bin", size_threshold=1024)
    return path


def test_model_files_lists_onnx_external_data_inside_the_folder_only(tmp_path):
    from explain_cli.batch.ship import model_files, safe_name

    path = external_data_onnx(tmp_path / "model")
    assert [name for name, _ in model_files(path)] == ["shapes_ext.onnx", "weights/shapes.bin"]
    assert model_files(ROOT / "sample_models" / "shapes_cnn.pt") == [("shapes_cnn.pt", ROOT / "sample_models" / "shapes_cnn.pt")]
    assert [safe_name(n) for n in ("a.bin", "./w/a.bin", "../a.bin", "/etc/a", "w/../../a", "C:/a", "")] == \
        ["a.bin", "w/a.bin", None, None, None, None, None]


def test_workers_leave_no_temp_folder_done_or_failed(local_ray, tmp_path, linear_script, monkeypatch):
    """Failed before: each actor kept an ``explain-ray-*`` folder with its copy of the model forever."""
    import tempfile

    from explain_cli.batch.plan import plan_items
    from explain_cli.config import load_config

    temp = tmp_path / "worker-tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    bad_model = tmp_path / "bad.pt"
    bad_model.write_bytes(b"not a model")
    config = write_config(tmp_path, linear_script, tmp_path / "out", n_inputs=1, methods=[{"method": "lime", "samples": 20}])
    data = yaml.safe_load(config.read_text())
    data["jobs"].append({**data["jobs"][0], "model": str(bad_model), "out": str(tmp_path / "out" / "bad")})
    config.write_text(yaml.safe_dump(data))
    jobs = [[item] for item in plan_items(load_config(config))]
    tasks = ray_backend._ship(ray, jobs, [[None], [None]], lambda event: None, None)
    worker = ray_backend.Worker()
    good, bad = worker.run(tasks[0][0]), worker.run(tasks[1][0])
    assert "files" in good and f"model file {bad_model} is not" in bad["error"], bad  # named as on the driver
    assert list(temp.glob("explain-ray-*")) == []  # (torch may keep its own caches there)


@pytest.mark.slow
def test_onnx_with_external_data_runs_on_ray_as_locally(local_ray, tmp_path):
    """Failed before: only the .onnx file was shipped, so every worker failed to find its weights."""
    model = external_data_onnx(tmp_path / "model")
    out = tmp_path / "out"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "defaults": {"seed": 0, "out": str(out)},
        "jobs": [{"model": str(model), "inputs": [str(p) for p in SAMPLE_IMAGES[:2]], "out": str(out / "job"),
                  "n_segments": 9, "methods": ["ablation"]}]}))
    local_rows, _ = run_batch(config)
    assert [r.status for r in local_rows] == ["done", "done"], [r.error for r in local_rows]
    ray_rows, _ = run_batch(config, backend="ray", workers=1, force=True)
    assert [r.status for r in ray_rows] == ["done", "done"], [r.error for r in ray_rows]
    assert rows_without_time(ray_rows) == rows_without_time(local_rows)
