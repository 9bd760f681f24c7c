"""`explain batch` refuses what would go wrong before any item computes, and leaves nothing behind.

Locks (held, stale, planted, shared by shards), outputs two entries would both write, mask and
device checked up front, and input globs that loop through a symlink cycle.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from explain_cli.errors import ExplainError
from tests.conftest import ROOT
from tests.helpers import assert_refused, tensor_inputs, write_config

LOCK_NAME = ".explain-batch.lock"


@pytest.fixture
def inputs(tmp_path) -> Path:
    return tensor_inputs(tmp_path, 3)


def config(linear_script, inputs, out, **job) -> dict:
    return {"defaults": {"seed": 0, "out": str(out)},
            "jobs": [{"model": str(linear_script), "inputs": [str(inputs)], "out": str(out / "job"),
                      "segments": "grid", "n_segments": 9, "methods": [{"method": "lime", "samples": 20}], **job}]}


def one_line(result) -> str:
    assert_refused(result)
    return result.stderr


# --------------------------------------------------------------------------- locks (items 21, 30, 31, 40)


def test_no_lock_file_is_left_in_any_folder(cli, tmp_path, linear_script, inputs):
    """Failed before: an empty ``.explain-batch.lock`` stayed in the summary folder after every run."""
    out = tmp_path / "out"
    assert cli("batch", write_config(tmp_path, config(linear_script, inputs, out)), "--quiet").exit_code == 0
    assert (out / "summary.json").is_file() and (out / "job" / "x0.lime.json").is_file()
    assert not list(out.rglob(".explain-batch*"))


def test_a_stale_lock_is_taken_over_and_removed(cli, tmp_path, linear_script, inputs):
    """A lock file whose holder died (nobody holds the flock) does not block the run, and is gone after it."""
    out = tmp_path / "out"
    (out / "job").mkdir(parents=True)
    (out / LOCK_NAME).write_text("12345\n")  # as a SIGKILLed run leaves it
    (out / "job" / LOCK_NAME).touch()
    assert cli("batch", write_config(tmp_path, config(linear_script, inputs, out)), "--quiet").exit_code == 0
    assert not list(out.rglob(".explain-batch*"))


@pytest.mark.slow
def test_sigterm_mid_run_removes_the_lock(tmp_path, linear_script, inputs):
    """Failed before: a batch stopped by SIGTERM left ``.explain-batch.lock`` in its summary folder."""
    out = tmp_path / "out"
    path = write_config(tmp_path, config(linear_script, inputs, out, methods=[{"method": "kernelshap", "samples": 200_000}]))
    proc = subprocess.Popen([sys.executable, "-m", "explain_cli", "batch", str(path), "--quiet"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "job" / LOCK_NAME).exists():
        time.sleep(0.02)
    assert (out / LOCK_NAME).exists(), "the run never took its lock"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode in (130, 128 + signal.SIGTERM), stderr  # interrupted (130 until SIGTERM gets its own code)
    assert not list(out.rglob(".explain-batch*"))


@pytest.mark.parametrize("plant", ["symlink", "fifo", "folder"])
def test_a_planted_lock_is_refused_not_followed(cli, tmp_path, linear_script, inputs, plant):
    """Failed before: a symlink in the lock's place made the run create the file it points to, outside --out."""
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside" / "victim"
    outside.parent.mkdir()
    lock = out / LOCK_NAME
    {"symlink": lambda: lock.symlink_to(outside), "fifo": lambda: os.mkfifo(lock), "folder": lock.mkdir}[plant]()
    result = cli("batch", write_config(tmp_path, config(linear_script, inputs, out)), "--quiet")
    assert "is not a regular file" in one_line(result)
    assert not outside.exists() and not (out / "summary.json").exists() and not (out / "job").exists()


def test_a_job_out_folder_in_use_by_another_batch_is_refused(cli, tmp_path, linear_script, inputs):
    """Two batches with their own summary folders but one job out folder would interleave.

    Failed before: only the summary folder was locked, so the second run wrote into the first's folder.
    """
    from explain_cli.batch.lock import FolderLocks, batch_locks

    shared = tmp_path / "shared"
    shared.mkdir()
    with FolderLocks(batch_locks(tmp_path / "first", [shared], None)):  # the first batch, running
        cfg = config(linear_script, inputs, tmp_path / "second")
        cfg["jobs"][0]["out"] = str(shared)
        result = cli("batch", write_config(tmp_path, cfg), "--quiet")
        assert f"another explain batch is running in {shared}" in one_line(result)
        assert not (tmp_path / "second").exists()  # the folder this run created is removed again
        assert not list(shared.glob("*.json"))


def test_shards_of_one_batch_run_together_but_not_twice(cli, tmp_path, linear_script, inputs):
    """Shards (``xargs -P``) share folders; a whole run, or the same shard again, is refused while one runs.

    Failed before: the summary folder's exclusive lock refused the second shard.
    """
    from explain_cli.batch.lock import FolderLocks, batch_locks

    out = tmp_path / "out"
    path = write_config(tmp_path, config(linear_script, inputs, out))
    with FolderLocks(batch_locks(out, [out / "job"], (1, 2))):  # shard 1/2, running
        assert cli("batch", path, "--shard", "2/2", "--quiet").exit_code == 0
        assert "another explain batch is running" in one_line(cli("batch", path, "--quiet"))
        assert "shard 1/2 of this batch is already running" in one_line(cli("batch", path, "--shard", "1/2"))
        assert (out / LOCK_NAME).exists()  # still held by shard 1/2
    assert not list(out.rglob(".explain-batch*"))  # the last holder removed it


# --------------------------------------------------------------------------- validation (item 35)


def test_a_method_listed_twice_is_refused_before_any_work(cli, tmp_path, linear_script, inputs):
    """Failed before: both entries wrote x0.lime.*, the second over the first, and the summary said done twice."""
    out = tmp_path / "out"
    cfg = config(linear_script, inputs, out, methods=["lime", {"method": "lime", "samples": 50}])
    message = one_line(cli("batch", write_config(tmp_path, cfg), "--dry-run"))
    assert "jobs[0].methods[0] and jobs[0].methods[1] would both write" in message and "lime is listed twice" in message
    cfg["jobs"][0]["methods"][1]["out"] = str(out / "more-samples")  # its own folder: fine
    assert cli("batch", write_config(tmp_path, cfg), "--dry-run").exit_code == 0
    assert not out.exists()


def test_two_batch_method_entries_need_their_own_names(cli, tmp_path, linear_script, inputs):
    cfg = config(linear_script, inputs, tmp_path / "out", methods=[
        {"method": "permutation", "name": "a"}, {"method": "permutation", "name": "a", "repeats": 2}])
    assert "give each permutation entry its own 'name'" in one_line(cli("batch", write_config(tmp_path, cfg), "--dry-run"))
    cfg["jobs"][0]["methods"][1]["name"] = "b"
    assert cli("batch", write_config(tmp_path, cfg), "--dry-run").exit_code == 0


def test_colliding_entries_are_refused_in_every_shard(cli, tmp_path, linear_script, inputs):
    """The check sees every item, not only the shard's: two colliding items may fall in different shards."""
    cfg = config(linear_script, inputs, tmp_path / "out")
    cfg["jobs"].append(dict(cfg["jobs"][0]))  # a second job writing the same folder
    path = write_config(tmp_path, cfg)
    for k in range(1, 6):
        assert "give the jobs different 'out' folders" in one_line(cli("batch", path, "--shard", f"{k}/5", "--dry-run"))


def test_a_missing_mask_is_refused_before_any_item_computes(cli, tmp_path, linear_script, inputs):
    """Failed before: every item computed its explanation, then failed on the mask (exit 1)."""
    out = tmp_path / "out"
    cfg = config(linear_script, inputs, out, mask=str(tmp_path / "nowhere.png"))
    message = one_line(cli("batch", write_config(tmp_path, cfg)))
    assert "jobs[0].methods[0].mask: file" in message and "does not exist" in message
    assert not out.exists()


def test_a_device_that_is_not_here_is_refused_before_any_item_computes(cli, tmp_path, linear_script, inputs):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "out"
    for device, expected in (("cuda", "no CUDA GPU is available"), ("tpu", "device 'tpu' is unknown")):
        message = one_line(cli("batch", write_config(tmp_path, config(linear_script, inputs, out, device=device))))
        assert "jobs[0].device:" in message and expected in message, message
    assert not out.exists()


def test_ray_workers_devices_are_checked_for_spelling_only():
    """A Ray worker may have a GPU the driver lacks: only the name is checked on the driver."""
    from explain_cli.batch.plan import _device_problem

    assert _device_problem("cuda:0", here=False) is None
    assert "unknown device" in _device_problem("gpu-please", here=False)


# --------------------------------------------------------------------------- input globs (item 29)


def test_a_glob_through_a_symlink_cycle_finishes_in_seconds(tmp_path):
    """Failed before: ``**`` followed two links to ``.`` round and round (2^40 paths): the run hung."""
    images = tmp_path / "images"
    images.mkdir()
    np.save(images / "x.npy", np.zeros((3, 16, 16), np.float32))
    for name in ("a", "b"):
        (images / name).symlink_to(".")
    (images / "up").symlink_to("..")
    path = write_config(tmp_path, {"jobs": [{"model": "m.pt", "inputs": [f"{images}/**/*.npy"], "methods": ["lime"]}]})
    (tmp_path / "m.pt").touch()
    started = time.monotonic()
    ran = subprocess.run([sys.executable, "-c", "import sys; from explain_cli.config import load_config; "
                          "print([str(p) for p in load_config(sys.argv[1])[0].inputs])", str(path)],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.replace("'", '"')) == [str(images / "x.npy")]  # once, whatever the links
    assert time.monotonic() - started < 30


def test_a_glob_that_walks_too_far_is_one_line(cli, tmp_path, monkeypatch, linear_script, inputs):
    from explain_cli.batch import walk

    monkeypatch.setattr(walk, "MAX_ENTRIES", 2)
    cfg = config(linear_script, inputs, tmp_path / "out")
    cfg["jobs"][0]["inputs"] = [f"{inputs}/**/*.npy"]
    message = one_line(cli("batch", write_config(tmp_path, cfg), "--dry-run"))
    assert "jobs[0].inputs[0]:" in message and "looks at more than 2 files and folders; narrow the pattern" in message


@pytest.mark.parametrize("pattern", ["**/*.png", "*.png", "**", "a/**", "a/**/*.png", "**/b/*", "*/*.png", ".h/*.png",
                                     "a/.*.png", "a/*/*", "x.png", "nothing/*", "**/**/*.png", "[ab]/*.png", "ABS/**/*.png"])
def test_bounded_glob_matches_like_glob_without_cycles(tmp_path, monkeypatch, pattern):
    from explain_cli.batch import walk

    for name in ("x.png", "a/y.png", "a/b/z.png", "a/b/q.txt", ".h/h.png", "a/.k.png", "c/w.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    (tmp_path / "a" / "lc").symlink_to("../c")  # a symlinked folder, not a cycle: followed as glob does
    monkeypatch.chdir(tmp_path)
    pattern = pattern.replace("ABS", str(tmp_path))
    assert sorted(walk.bounded_glob(pattern)) == sorted(glob.glob(pattern, recursive=True))


def test_lock_files_are_removed_by_their_last_holder(tmp_path):
    from explain_cli.batch.lock import FolderLocks, batch_locks

    first, second = FolderLocks(batch_locks(tmp_path, [], (1, 2))), FolderLocks(batch_locks(tmp_path, [], (2, 2)))
    with first:
        with second:
            assert (tmp_path / LOCK_NAME).exists()
        assert (tmp_path / LOCK_NAME).exists()  # shard 1/2 still holds it
        with pytest.raises(ExplainError, match="another explain batch is running"):
            FolderLocks(batch_locks(tmp_path, [], None)).__enter__()
    assert list(tmp_path.iterdir()) == []
