"""`explain batch`: config validation with key paths, resume after SIGKILL, failure isolation, shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from explain_cli.batch.plan import in_shard, plan_items
from explain_cli.options.settings import settings
from explain_cli.config import load_config
from tests.conftest import ROOT, SAMPLE_IMAGES, SAMPLE_MODEL
from tests.helpers import assert_refused, tensor_inputs, write_config


@pytest.fixture
def inputs(tmp_path) -> Path:
    return tensor_inputs(tmp_path, 4)


def base(linear_script, inputs, out) -> dict:
    return {
        "defaults": {"seed": 0, "out": str(out)},
        "jobs": [{"model": str(linear_script), "inputs": [str(inputs)], "out": str(out / "job"),
                  "segments": "grid", "n_segments": 9, "methods": [{"method": "lime", "samples": 20}]}],
    }


BAD = {
    "unknown top-level key": (lambda c: c.update(job=c.pop("jobs")), "'job'; did you mean 'jobs'"),
    "typo in defaults": (lambda c: c["defaults"].update(sead=1), "defaults.sead: unknown key 'sead'; did you mean 'seed'"),
    "missing model": (lambda c: c["jobs"][0].pop("model"), "jobs[0].model: required"),
    "missing inputs": (lambda c: c["jobs"][0].pop("inputs"), "jobs[0].inputs: required"),
    "glob matching nothing": (lambda c: c["jobs"][0]["inputs"].append("nowhere/*.png"), "jobs[0].inputs[1]: 'nowhere/*.png' matches no files"),
    "wrong type": (lambda c: c["jobs"][0]["methods"][0].update(samples="many"), "jobs[0].methods[0].samples: must be an integer"),
    "bad value": (lambda c: c["jobs"][0]["methods"][0].update(samples=0), "jobs[0].methods[0].samples: must be at least 3, got 0"),
    "unknown method": (lambda c: c["jobs"][0]["methods"].append("lyme"), "jobs[0].methods[1].method: must be one of kernelshap, partition, lime, rise, permutation, ablation, got 'lyme' (did you mean lime?)"),
    "parameter of another engine": (lambda c: c["jobs"][0]["methods"][0].update(masks=10), "jobs[0].methods[0].masks: applies to rise, not lime"),
    "shared key per method": (lambda c: c["jobs"][0]["methods"][0].update(n_segments=5), "jobs[0].methods[0].n_segments: set on the job"),
    "empty methods": (lambda c: c["jobs"][0].update(methods=[]), "jobs[0].methods: required"),
    "job typo": (lambda c: c["jobs"][0].update(top_kk=2), "jobs[0].top_kk: unknown key 'top_kk'; did you mean 'top_k'"),
    "second job wrong type": (lambda c: c["jobs"].append({**c["jobs"][0], "top_k": "two"}), "jobs[1].top_k: must be an integer"),
    "jobs not a list": (lambda c: c.update(jobs={"a": 1}), "jobs: expected a non-empty list"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_config_names_the_key_path(name, cli, tmp_path, linear_script, inputs):
    config = base(linear_script, inputs, tmp_path / "out")
    BAD[name][0](config)
    result = cli("batch", write_config(tmp_path, config))
    assert result.exit_code == 2, result.stderr  # config errors: one line per field, so not assert_refused
    assert BAD[name][1] in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_invalid_yaml_reports_line(cli, tmp_path):
    result = cli("batch", write_config(tmp_path, "jobs:\n  - model: [unclosed\n"))
    assert_refused(result, "line")


def test_dry_run_writes_nothing(cli, tmp_path, linear_script, inputs):
    config = write_config(tmp_path, base(linear_script, inputs, tmp_path / "out"))
    result = cli("batch", config, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("write ") == 10  # 4 inputs x (png, json), summary.json and .csv
    assert not (tmp_path / "out").exists()


def test_dry_run_lists_exactly_what_the_run_writes(cli, tmp_path, linear_script, inputs):
    """Curves PNGs, the summaries and the report included; nothing else is left (no lock file).

    Failed before: the dry run listed neither curves nor summaries, and the run left an empty
    ``.explain-batch.lock`` behind.
    """
    out = tmp_path / "out"
    config = base(linear_script, inputs, out)
    config["jobs"][0]["methods"] = [{"method": "lime", "samples": 20, "evaluate": True}, "permutation"]
    path = write_config(tmp_path, config)
    planned = cli("batch", path, "--dry-run", "--report")
    assert planned.exit_code == 0, planned.stderr
    listed = {line.removeprefix("write ") for line in planned.stdout.splitlines()}
    assert str(out / "job" / "x0.lime.curves.png") in listed and str(out / "summary.csv") in listed
    ran = cli("batch", path, "--report", "--quiet")
    assert ran.exit_code == 0, ran.stderr
    written = {str(p) for p in out.rglob("*")} | {str(p) for p in out.rglob(".*")}
    assert written - {str(out / "job")} == listed


def test_time_s_is_this_runs_wall_time_and_explain_s_the_jsons(tmp_path, linear_script, inputs):
    """Failed before: a skipped row's ``time_s`` was its JSON's ``timing.total_s``, a done row's the wall time."""
    from explain_cli.batch.run import run_batch

    out = tmp_path / "out"
    path = write_config(tmp_path, base(linear_script, inputs, out))
    first, _ = run_batch(path)
    (out / "job" / "x1.lime.json").unlink()
    again, _ = run_batch(path)
    by_input = {Path(r.input).name: r for r in again}
    for name, row in by_input.items():
        doc = json.loads((out / "job" / f"{Path(name).stem}.lime.json").read_text())
        assert row.explain_s == pytest.approx(doc["timing"]["total_s"], abs=1e-3), name
    assert by_input["x1.npy"].status == "done" and by_input["x1.npy"].time_s >= by_input["x1.npy"].explain_s
    skipped = [r for r in again if r.status == "skipped"]
    assert len(skipped) == 3 and all(r.time_s is None for r in skipped)
    assert [r.explain_s for r in first if r.input != by_input["x1.npy"].input] == [r.explain_s for r in skipped]


def test_precedence_cli_over_method_over_job_over_defaults(tmp_path, linear_script, inputs):
    config = base(linear_script, inputs, tmp_path / "out")
    config["defaults"].update(seed=1, top_k=2, output="logits")
    config["jobs"][0].update(seed=2, top_k=3)
    config["jobs"][0]["methods"] = [{"method": "lime", "seed": 3}, {"method": "kernelshap"}]
    path = write_config(tmp_path, config)
    (lime_cfg, shap_cfg) = [settings(*layers) for _, layers in load_config(path)[0].methods]
    assert (lime_cfg.seed, shap_cfg.seed) == (3, 2)
    assert lime_cfg.targets.top_k == 3 and lime_cfg.targets.output == "logits"
    (lime_cfg, shap_cfg) = [settings(*layers) for _, layers in load_config(path, {"seed": 9})[0].methods]
    assert lime_cfg.seed == shap_cfg.seed == 9


def test_shards_cover_every_item_exactly_once(tmp_path, linear_script, inputs):
    config = base(linear_script, inputs, tmp_path / "out")
    config["jobs"][0]["methods"] = ["lime", "ablation", "kernelshap"]
    items = plan_items(load_config(write_config(tmp_path, config)))
    assert len(items) == 12
    for n in (1, 2, 3, 5):
        shards = [[i.key for i in items if in_shard(i, (k, n))] for k in range(1, n + 1)]
        flat = [key for shard in shards for key in shard]
        assert sorted(flat) == sorted(i.key for i in items)  # each exactly once


def test_corrupt_input_is_isolated_and_reported(cli, tmp_path, linear_script, inputs):
    (inputs / "broken.npy").write_bytes(b"not a numpy file")
    out = tmp_path / "out"
    result = cli("batch", write_config(tmp_path, base(linear_script, inputs, out)), "--quiet")
    assert result.exit_code == 1
    summary = json.loads((out / "summary.json").read_text())["rows"]
    status = {Path(r["input"]).name: r["status"] for r in summary}
    assert status == {"broken.npy": "failed", "x0.npy": "done", "x1.npy": "done", "x2.npy": "done", "x3.npy": "done"}
    failed = next(r for r in summary if r["status"] == "failed")
    assert "broken.npy" in failed["error"]
    assert (out / "summary.csv").read_text().count("\n") == 6
    rerun = cli("batch", write_config(tmp_path, base(linear_script, inputs, out)), "--quiet")
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert sorted(r["status"] for r in rows) == ["failed", "skipped", "skipped", "skipped", "skipped"]
    assert rerun.exit_code == 1


def test_json_log_lines(cli, tmp_path, linear_script, inputs):
    result = cli("batch", write_config(tmp_path, base(linear_script, inputs, tmp_path / "out")), "--log-format", "json",
                 "--shard", "1/2")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert all(e["status"] == "done" for e in events if e["event"] == "item")
    assert (tmp_path / "out" / "summary.shard-1-of-2.json").exists()


@pytest.mark.slow
def test_sigkill_mid_run_leaves_no_partial_file_and_rerun_finishes(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):  # copies of a sample image: real work per item (about a second each)
        Image.open(SAMPLE_IMAGES[0]).save(folder / f"img{i}.png")
    out = tmp_path / "out"
    config = write_config(tmp_path, {
        "defaults": {"out": str(out)},
        "jobs": [{"model": str(SAMPLE_MODEL), "inputs": [str(folder)], "out": str(out / "job"),
                  "methods": [{"method": "kernelshap", "samples": 1500}]}],
    })
    command = [sys.executable, "-m", "explain_cli", "batch", str(config), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "job").glob("*.json")):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in (out / "job").glob("*.json"))
    assert 1 <= len(finished) < 6, finished
    for path in (out / "job").iterdir():
        if path.name.startswith("."):
            continue  # a temp file from the killed write is hidden and never mistaken for output
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            with Image.open(path) as img:
                img.verify()
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert sum(r["status"] == "skipped" for r in rows) == len(finished)
    assert sum(r["status"] == "done" for r in rows) == 6 - len(finished)
    assert len(list((out / "job").glob("*.json"))) == 6


def test_run_config_one_job_and_command_line_wins(cli, tmp_path, linear_script, inputs):
    out = tmp_path / "out"
    job = base(linear_script, inputs, out)["jobs"][0] | {"inputs": [str(inputs / "x0.npy")], "seed": 5}
    path = write_config(tmp_path, job, "job.yaml")
    first = cli("run", "--config", path)
    assert first.exit_code == 0, first.stderr
    doc = json.loads((out / "job" / "x0.lime.json").read_text())
    assert doc["evaluations"] == 20 and doc["seed"] == 5
    second = cli("run", "--config", path, "--samples", "30", "--out", tmp_path / "cli")
    assert second.exit_code == 0, second.stderr
    doc = json.loads((tmp_path / "cli" / "x0.lime.json").read_text())
    assert doc["evaluations"] == 30 and doc["seed"] == 5
    two_jobs = write_config(tmp_path, base(linear_script, inputs, out) | {"jobs": [job, job]}, "two.yaml")
    result = cli("run", "--config", two_jobs)
    assert_refused(result, "explain batch")


def test_a_second_batch_on_the_same_summary_folder_is_refused(cli, tmp_path, linear_script, inputs):
    """Two runs on one output folder would interleave summaries: the second is refused while the first holds the lock."""
    from explain_cli.batch.lock import FolderLocks, batch_locks

    out = tmp_path / "out"
    out.mkdir()
    path = write_config(tmp_path, base(linear_script, inputs, out))
    with FolderLocks(batch_locks(out, [], None)):  # a run in progress
        result = cli("batch", path, "--quiet")
        assert_refused(result, "another explain batch is running")
        assert not (out / "summary.json").exists()
    assert cli("batch", path, "--quiet").exit_code == 0  # the lock goes with its holder
    assert (out / "summary.json").is_file()


@pytest.mark.slow
def test_makefile_pattern_rule_names_the_heatmap_after_its_method(tmp_path):
    """``make OUT/explained/circle.json`` writes the JSON and ``circle.lime.png`` beside it.

    Failed before: the heatmap was moved to ``circle.png``, which reads like the input image.
    """
    import shutil

    if shutil.which("make") is None:
        pytest.skip("needs make")
    venv = tmp_path / "venv"  # `install` is taken as done (-o): this checkout's code runs through EXPLAIN
    target = tmp_path / "explained" / "circle.json"
    ran = subprocess.run(["make", "-o", f"{venv}/.installed", f"VENV={venv}", f"EXPLAIN={sys.executable} -m explain_cli",
                          f"OUT={tmp_path}", str(target)],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in (tmp_path / "explained").iterdir()) == ["circle.json", "circle.lime.png"]
    assert json.loads(target.read_text())["method"] == "lime"
