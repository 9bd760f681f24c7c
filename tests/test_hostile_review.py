"""The fresh hostile review (issue 24, items 23–40): each cause answered in one line, exit 2, nothing half-written.

Inputs other than the image (label maps, masks, labels files, model metadata, weights, saved
maps) meet the same limits as the image; signals exit 128 + signum with a word on why; a
failed write leaves no partial set of files. Big files are forged headers, never real data.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import explain_cli
from explain_cli.errors import ExplainError
from tests.conftest import ROOT, make_linear
from tests.helpers import assert_refused, measure, npy_bytes, png_bytes

# The library warns (ExplainWarning) about coarse maps and small budgets; these tests judge refusals.
pytestmark = pytest.mark.filterwarnings("ignore::explain_cli.errors.ExplainWarning")


def _rand(*shape: int) -> torch.Tensor:
    """Seeded random pixels: these tests leave the global generator as they found it."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------
# Signals (item 40): 128 + signum and one line, as the code documents.
# ---------------------------------------------------------------------------------------------

def _handles_sigterm(pid: int) -> bool:
    """True once the process has installed its own SIGTERM handler (Linux: SigCgt in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught >> (signal.SIGTERM - 1) & 1)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to know when the handler is in")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_termination_signal_exits_128_plus_signum_with_one_line(signame, linear_script, small_image, tmp_path):
    signum = getattr(signal, signame)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "explain_cli", "run", str(linear_script), str(small_image), "--out", str(out),
               "-m", "lime", "--samples", "1000000", "--segments", "grid", "--n-segments", "4"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        deadline = time.monotonic() + 60
        while not _handles_sigterm(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # into the run
        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 128 + signum, (child.returncode, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"explain: error: terminated by {signame}; files being written were " \
                                           "removed, finished ones kept", stderr
    assert stdout == ""
    assert not out.exists() or [p.name for p in out.iterdir() if not p.name.startswith(".")] == []


# ---------------------------------------------------------------------------------------------
# Labels files (items 24, 40): the real reason, bounded, and no RecursionError.
# ---------------------------------------------------------------------------------------------

LABELS_CASES = {
    "fifo": (lambda p: os.mkfifo(p), "is a FIFO (named pipe), not a regular file"),
    "folder": (lambda p: p.mkdir(), "is a folder"),
    "nested 100000 deep": (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "not lists nested deeply"),
    "over the size limit": (lambda p: p.write_bytes(b"x\n" * (9 * 2**20)), "over the 16,777,216-byte limit"),
}


@pytest.mark.parametrize("name", list(LABELS_CASES))
def test_bad_labels_file_is_one_line(name, cli, linear_script, small_image, tmp_path):
    make, fragment = LABELS_CASES[name]
    path = tmp_path / "labels.txt"
    make(path)
    out = tmp_path / "out"
    result = cli("run", linear_script, small_image, "--out", out, "-m", "ablation", "--labels", path)
    assert_refused(result, fragment, out=out)


# ---------------------------------------------------------------------------------------------
# Model metadata (item 24): sizes within the `size` option's bound, documents within theirs.
# ---------------------------------------------------------------------------------------------

METADATA_CASES = {
    "size 10^9": ('{"preprocess": {"size": 1000000000}}', "preprocess.size: must be at most 4096 pixels a side"),
    "size 4097": ('{"preprocess": {"size": [4097, 16]}}', "preprocess.size: must be at most 4096"),
    "crop 10^9": ('{"preprocess": {"size": 16, "crop": [1000000000, 16]}}', "preprocess.crop: must be at most 4096"),
    "resize 10^9": ('{"preprocess": {"resize": 1000000000}}', "preprocess.resize: must be at most 4096 pixels"),
    "channels 10^9": ('{"in_channels": 1000000000}', "in_channels: must be at most 4096"),
    "nested 10^5 deep": ('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    "5 MB document": ('{"x": "' + "a" * (5 * 2**20) + '"}', "over the 4,194,304-byte limit"),
}


@pytest.mark.parametrize("name", list(METADATA_CASES))
def test_model_metadata_cannot_ask_for_absurd_work(name, cli, small_image, tmp_path):
    text, fragment = METADATA_CASES[name]
    model = tmp_path / "m.pt"
    torch.jit.script(make_linear()).save(str(model), _extra_files={"explain_cli.json": text})
    out = tmp_path / "out"
    start = time.perf_counter()
    result = cli("run", model, small_image, "--out", out, "-m", "ablation")
    assert_refused(result, f"m.pt: explain_cli.json: {fragment}" if "nested" not in name and "MB" not in name
                    else fragment, out=out)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("name", list(METADATA_CASES))
def test_every_format_shares_the_metadata_checks(name):
    from explain_cli.models.base import parse_metadata

    with pytest.raises(ExplainError, match=re.escape(METADATA_CASES[name][1])):
        parse_metadata(METADATA_CASES[name][0], "model m.onnx")


# ---------------------------------------------------------------------------------------------
# Malformed .safetensors (item 25): one line, exit 2, the file's own fault named.
# ---------------------------------------------------------------------------------------------

def _sparse_header(path: Path) -> None:
    """A header claiming 200 MB in a (sparse) file that large: over safetensors' own limit."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", 200_000_000) + b"{")
        fh.truncate(200_000_100)


SAFETENSORS_CASES = {
    "pickle renamed": (lambda p: p.write_bytes(pickle.dumps({"fc.weight": [1.0, 2.0]})), "header claims"),
    "torch.save renamed": (lambda p: torch.save({"fc.weight": torch.zeros(2, 2)}, p), "header claims"),
    "header claims 10^9 bytes": (lambda p: p.write_bytes(struct.pack("<Q", 10**9) + b"{" + b" " * 100), "header claims"),
    "header over the library's limit": (_sparse_header, "header claims 200,000,000 bytes"),
    "header not JSON": (lambda p: p.write_bytes(struct.pack("<Q", 4) + b"{{{{" + b"\0" * 16), "not a valid safetensors"),
    "too short": (lambda p: p.write_bytes(b"\x01\x02"), "too short"),
}


@pytest.mark.parametrize("name", list(SAFETENSORS_CASES))
def test_malformed_safetensors_is_one_line(name, cli, small_image, tmp_path):
    make, fragment = SAFETENSORS_CASES[name]
    weights = tmp_path / "w.safetensors"
    make(weights)
    out = tmp_path / "out"
    result = cli("run", "torchvision:resnet18", small_image, "--weights", weights, "--out", out, "-m", "ablation",
                 "--size", "32", "--segments", "grid", "--n-segments", "4")
    assert_refused(result, fragment, out=out)
    assert "is not a valid safetensors file" in result.stderr


# ---------------------------------------------------------------------------------------------
# Label maps and masks (items 23, 37, 40): the input's limits, from headers; ids that survive.
# ---------------------------------------------------------------------------------------------

def _jpeg_of_16_colours(path: Path) -> None:
    ids = np.arange(52)[:, None] // 13 * 4 + np.arange(52)[None, :] // 13  # 4×4 blocks of 13 px: 16 ids
    colours = np.random.default_rng(0).integers(0, 256, (16, 3), dtype=np.uint8)
    Image.fromarray(colours[ids]).save(path, "JPEG", quality=90)


MAP_CASES = {
    "png 30000x30000 header": ("big.png", lambda p: p.write_bytes(png_bytes(30000, 30000, with_data=False)),
                               "is refused before decoding"),
    "png 12000x12000 bomb": ("bomb.png", lambda p: p.write_bytes(png_bytes(12000, 12000)), "144.0 megapixels"),
    "npy forged (100000, 100000)": ("big.npy", lambda p: p.write_bytes(npy_bytes(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (100000, 100000), }")), "10000.0 megapixels"),
    "npy forged (3, 100000, 100000)": ("three.npy", lambda p: p.write_bytes(npy_bytes(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 100000, 100000), }")), "must be 2-D"),
    "npy truncated": ("short.npy", lambda p: p.write_bytes(npy_bytes(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (24, 32), }", b"\0" * 16)), "truncated"),
    "npy pickle": ("objects.npy", lambda p: np.save(p, np.empty((24, 32), dtype=object), allow_pickle=True),
                   "numeric array"),
    "fifo": ("pipe.png", lambda p: os.mkfifo(p), "FIFO"),
}


MASK_SIZE_FIRST = {"png 12000x12000 bomb", "npy forged (100000, 100000)"}


@pytest.mark.parametrize("option", ["segments", "mask"])
@pytest.mark.parametrize("name", list(MAP_CASES))
def test_maps_meet_the_inputs_limits_from_their_headers(name, option, cli, linear_script, small_image, tmp_path):
    file_name, make, fragment = MAP_CASES[name]
    if option == "mask" and name in MASK_SIZE_FIRST:  # a mask must be the input's size: known from the header
        fragment = "but the input small.png is [24, 32]"
    path = tmp_path / file_name
    make(path)
    out = tmp_path / "out"
    start = time.perf_counter()
    result = cli("run", linear_script, small_image, "--out", out, "-m", "ablation", f"--{option}", path)
    assert_refused(result, fragment, out=out)
    assert f"--{option}" in result.stderr
    assert time.perf_counter() - start < 5


def test_label_map_respects_max_pixels(cli, linear_script, small_image, tmp_path):
    np.save(tmp_path / "wide.npy", np.zeros((50, 100), dtype=np.int64))
    out = tmp_path / "out"
    result = cli("run", linear_script, small_image, "--out", out, "--segments", tmp_path / "wide.npy",
                 "--max-pixels", "4999")
    assert_refused(result, "100×50 = 0.0 megapixels, over the limit of 0.004999 megapixels", out=out)

def test_jpeg_label_map_is_refused_not_multiplied(cli, linear_script, small_image, tmp_path):
    _jpeg_of_16_colours(tmp_path / "labels.jpg")
    with Image.open(tmp_path / "labels.jpg") as img:
        assert len(np.unique(np.asarray(img))) > 16  # what compression did to 16 ids
    out = tmp_path / "out"
    result = cli("run", linear_script, small_image, "--out", out, "-m", "ablation", "--segments",
                 tmp_path / "labels.jpg")
    assert_refused(result, "is a JPEG file: lossy compression turns a few ids into many; save the map as PNG", out=out)


@pytest.mark.parametrize("dtype, ids", [
    (np.float64, [1e19, 1e19 + 4096]),  # beyond int64: the cast wrapped both to one id
    (np.float64, [2.0**60, 2.0**60 + 256]),  # within int64 but past float64's exact integers
    (np.float32, [2.0**25, 2.0**25 + 4]),
])
def test_float_label_ids_beyond_exact_integers_are_refused(dtype, ids):
    labels = np.array([[ids[0]] * 8 + [ids[1]] * 8] * 16, dtype=dtype)
    with pytest.raises(ExplainError, match="ids beyond .* save integer ids"):
        explain_cli.explain(make_linear(), _rand(3, 16, 16), method="ablation", segments=labels)


def test_exact_float_and_uint64_label_ids_still_work():
    halves = np.array([[0] * 8 + [1] * 8] * 16)
    for labels in (halves.astype(np.float32) * 1000.0, halves.astype(np.uint64) * (2**64 - 2)):
        (e,) = explain_cli.explain(make_linear(), _rand(3, 16, 16), method="ablation", segments=labels)
        assert e.segmentation.n_segments == 2


# ---------------------------------------------------------------------------------------------
# The Python API (items 28, 33): ExplainError, never an internal error; one decoding path.
# ---------------------------------------------------------------------------------------------

class _WidthFollowsBatch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :1].repeat(1, 2 + x.shape[0])  # 3 outputs for f(x), more for a batch


class _Square(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :1] * torch.ones(x.shape[0], x.shape[0])  # (B, B): a batch's "scores"


def _meta_module() -> torch.nn.Module:
    with torch.device("meta"):
        return make_linear()


API_CASES = {
    "empty array": (make_linear, lambda: np.zeros((0, 0, 3), dtype=np.uint8), "at least 4"),
    "empty tensor": (make_linear, lambda: torch.zeros(3, 0, 0), "at least 4"),
    "meta tensor": (make_linear, lambda: torch.empty(3, 16, 16, device="meta"), "meta tensor"),
    "3x3 array": (make_linear, lambda: np.zeros((3, 3, 3), dtype=np.uint8), "at least 4"),
    "2x2 PIL image": (make_linear, lambda: Image.new("RGB", (2, 2)), "at least 4"),
    "output width follows the batch": (_WidthFollowsBatch, lambda: _rand(3, 16, 16), "must not depend on the batch"),
    "square (B, B) output": (_Square, lambda: _rand(3, 16, 16), "must not depend on the batch"),
    "module on the meta device": (_meta_module, lambda: _rand(3, 16, 16), "meta device"),
    "array over max_pixels": (make_linear, lambda: np.zeros((100, 100), dtype=np.uint8), "over the limit"),
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_python_api_raises_explain_error(name):
    make_model, make_input, fragment = API_CASES[name]
    with pytest.raises(ExplainError, match=re.escape(fragment)):
        explain_cli.explain(make_model(), make_input(), method="ablation", segments="grid", n_segments=4,
                            preprocess="none", max_pixels=9999)


def _exif_rotated() -> Image.Image:
    img = Image.new("RGB", (8, 6), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 4, 6))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    img.save(buffer, "PNG", exif=exif)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _palette_transparent() -> Image.Image:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (4, 0, 8, 8))
    img.info["transparency"] = 1
    return img


PIL_CASES = {
    "16-bit grey": lambda: Image.frombytes("I;16", (8, 8), np.full((8, 8), 20000, dtype="<u2").tobytes()),
    "float 0..255": lambda: Image.fromarray(np.full((8, 8), 51.0, dtype=np.float32), mode="F"),
    "RGBA half transparent": lambda: Image.new("RGBA", (8, 8), (0, 0, 0, 51)),
    "palette transparency": _palette_transparent,
    "EXIF rotation": _exif_rotated,
}


@pytest.mark.parametrize("name", list(PIL_CASES))
def test_pil_image_is_decoded_as_its_file_is(name, tmp_path):
    from explain_cli.inputs import load_input
    from explain_cli.inputs.memory import as_inputs

    img = PIL_CASES[name]()
    path = tmp_path / ("x.tif" if img.mode in ("F", "I;16") else "x.png")
    img.save(path, exif=img.getexif()) if name == "EXIF rotation" else img.save(path)
    from_file = load_input(path).pixels
    (in_memory,) = as_inputs(img)
    torch.testing.assert_close(in_memory.pixels, from_file, rtol=0, atol=1e-7)
    assert not bool((in_memory.pixels == 1.0).all()) or name == "palette transparency"  # not saturated white


@pytest.mark.parametrize("array, expected", [
    (np.full((8, 8, 3), 51, dtype=np.int64), 0.2),  # 0-255 in a wide integer dtype: 8-bit values
    (np.full((8, 8, 3), 51.0, dtype=np.float64), 0.2),  # floats in [0, 255]: as a float image
    (np.full((8, 8, 3), 0.2, dtype=np.float32), 0.2),
    (np.full((8, 8, 3), 13107, dtype=np.uint16), 0.2),
    (np.full((8, 8, 3), 13107, dtype=np.int32), 0.2),  # past 8 bits: 16-bit values
])
def test_arrays_are_scaled_by_their_values_range(array, expected):
    from explain_cli.inputs.memory import as_inputs

    (item,) = as_inputs(array)
    torch.testing.assert_close(item.pixels, torch.full((3, 8, 8), expected), rtol=0, atol=1e-6)


@pytest.mark.parametrize("array, fragment", [
    (np.full((8, 8), -1, dtype=np.int16), "negative values"),
    (np.full((8, 8), 1000.0), "neither [0, 1] nor [0, 255]"),
    (np.full((8, 8), 2**20, dtype=np.int64), "beyond 16 bits"),
    (np.full((8, 8), np.nan), "NaN"),
])
def test_arrays_no_scale_explains_are_refused(array, fragment):
    from explain_cli.inputs.memory import as_inputs

    with pytest.raises(ExplainError, match=re.escape(fragment)):
        as_inputs(array)


# ---------------------------------------------------------------------------------------------
# Saved explanations (items 34, 37): the map must be the JSON's own; the JSON must follow the schema.
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def saved_run(cli, linear_script, small_image, tmp_path) -> Path:
    out = tmp_path / "run"
    result = cli("run", linear_script, small_image, "--out", out, "-m", "ablation", "--save-map", "--top-k", "2",
                 "--segments", "grid", "--n-segments", "4")
    assert result.exit_code == 0, result.stderr
    return out / "small.ablation.json"


def _evaluate_refused(cli, json_path: Path, fragment: str) -> None:
    before = {p.name: p.read_bytes() for p in json_path.parent.iterdir()}
    assert_refused(cli("evaluate", json_path, "--eval-step", "0.25"), fragment)
    assert {p.name: p.read_bytes() for p in json_path.parent.iterdir()} == before  # nothing written


def test_saved_map_round_trip_evaluates(cli, saved_run):
    doc = json.loads(saved_run.read_text())
    assert doc["map"]["shape"] == [2, 24, 32] and len(doc["map"]["sha256"]) == 64
    result = cli("evaluate", saved_run, "--eval-step", "0.25")
    assert result.exit_code == 0, result.stderr
    assert json.loads(saved_run.read_text())["map"] == doc["map"]


def test_rerun_without_save_map_leaves_a_stale_npy_that_is_refused(cli, linear_script, small_image, saved_run):
    result = cli("run", linear_script, small_image, "--out", saved_run.parent, "-m", "ablation", "--top-k", "2",
                 "--segments", "grid", "--n-segments", "4", "--seed", "1")
    assert result.exit_code == 0 and saved_run.with_suffix(".npy").exists()
    _evaluate_refused(cli, saved_run, "records no saved map (it was explained without --save-map)")


def test_edited_map_is_refused(cli, saved_run):
    npy = saved_run.with_suffix(".npy")
    maps = np.load(npy)
    maps[0, 0, 0] += 1.0
    np.save(npy, maps)
    _evaluate_refused(cli, saved_run, "is not the map small.ablation.json records (its SHA-256 differs)")


def test_forged_saved_map_header_is_refused_before_loading(cli, saved_run):
    saved_run.with_suffix(".npy").write_bytes(npy_bytes(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 100000, 100000), }"))
    start = time.perf_counter()
    _evaluate_refused(cli, saved_run, "holds shape [2, 100000, 100000] of float32, not the [2, 24, 32] float32 maps")
    assert time.perf_counter() - start < 5


TAMPERED = {
    "target index a string": (lambda d: d["targets"][0].update(index="x"), "targets/0/index: must be integer"),
    "target index -1": (lambda d: d["targets"][0].update(index=-1), "targets/0/index: must be ≥ 0"),
    "targets missing": (lambda d: d.pop("targets"), "lacks 'targets'"),
    "model a list": (lambda d: d.update(model=[1]), "model: must be object"),
    "map shape forged": (lambda d: d["map"].update(shape=[2, 100000, 100000]), "does not fit its 2 targets"),
}


@pytest.mark.parametrize("name", list(TAMPERED))
def test_tampered_json_is_one_line_in_evaluate_compare_and_report(name, cli, saved_run):
    edit, fragment = TAMPERED[name]
    doc = json.loads(saved_run.read_text())
    edit(doc)
    saved_run.write_text(json.dumps(doc))
    _evaluate_refused(cli, saved_run, fragment)
    commands = [["compare", saved_run, "--out", saved_run.parent / "c.png"]]
    if name != "map shape forged":  # valid as a document: report reads no map
        commands.append(["report", saved_run.parent])
    for command in commands:
        assert_refused(cli(*command))


def test_target_beyond_the_model_is_one_line(cli, saved_run):
    doc = json.loads(saved_run.read_text())
    doc["targets"][0]["index"] = 999
    saved_run.write_text(json.dumps(doc))
    _evaluate_refused(cli, saved_run, "explains target 999, but the model has 3 outputs")


def test_schema_check_agrees_with_jsonschema(saved_run):
    jsonschema = pytest.importorskip("jsonschema")
    from explain_cli.schemacheck import SCHEMA_PATH, first_error

    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    base = json.loads(saved_run.read_text())
    docs = [base]
    for edit, _ in TAMPERED.values():
        doc = json.loads(json.dumps(base))
        edit(doc)
        docs.append(doc)
    extra = json.loads(json.dumps(base))
    extra["unknown"] = 1
    docs.append(extra)
    for doc in docs:
        assert (first_error(doc, schema, schema) is None) == validator.is_valid(doc), first_error(doc, schema, schema)


# ---------------------------------------------------------------------------------------------
# Writes (item 40): a set of outputs is all new or all old; outputs never leave out_dir.
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_explanation():
    (e,) = explain_cli.explain(make_linear(), _rand(3, 16, 16), method="ablation", segments="grid",
                               n_segments=4, save_map=True, evaluate=True, eval_step=0.25)
    return e


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_failed_write_leaves_no_partial_set(fail_at, small_explanation, tmp_path, monkeypatch):
    import errno

    from explain_cli import fileio

    out = tmp_path / "out"
    old = small_explanation.save(out, "x")  # a complete earlier set
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    real = fileio.os.fsync

    def full_disk(fd: int) -> None:
        calls.append(fd)
        if len(calls) == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(fileio.os, "fsync", full_disk)
    (changed,) = explain_cli.explain(make_linear(), _rand(3, 16, 16), method="ablation", segments="grid",
                                     n_segments=4, save_map=True, evaluate=True, eval_step=0.25, seed=1)
    with pytest.raises(ExplainError, match="no space left on device"):
        changed.save(out, "x")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old set, whole; no temp files
    assert len(old) == 4


@pytest.mark.parametrize("stem", ["../escape", "/tmp/escape", "..", "a/b"])
def test_save_stem_cannot_leave_out_dir(stem, small_explanation, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ExplainError, match="must be a plain file name"):
        small_explanation.save(out, stem)
    assert not (tmp_path / "escape.ablation.json").exists() and not out.exists()


def test_over_long_output_name_is_refused_before_the_work(cli, linear_script, tmp_path):
    name = "n" * 245
    image = tmp_path / f"{name}.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    result = cli("run", linear_script, image, "--out", out, "-m", "ablation")
    assert_refused(result, "over this file system's 255", out=out)


# ---------------------------------------------------------------------------------------------
# The blur baseline (item 38): torchvision's numbers (bit for bit up to 101 taps), wider kernels by FFT.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 5, 9), (3, 300, 300), (1, 320, 333), (3, 400, 270)])
def test_blur_equals_torchvision_to_float_rounding(shape):
    from torchvision.transforms.functional import gaussian_blur as reference

    from explain_cli.baselines import make_baseline
    from explain_cli.options.parse import parse_baseline
    from explain_cli.preprocess import Preprocess

    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)) * 4 - 2
    sigma = max(shape[1:]) / 16.0
    size = min(int(2 * round(3 * sigma) + 1), 2 * (min(shape[1:]) // 2) - 1)
    expected = reference(x[None], [size, size], [sigma, sigma])[0]
    got = make_baseline(parse_baseline("blur"), x, Preprocess("none"))
    assert got.shape == x.shape and got.dtype == x.dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)


def test_blur_costs_about_a_forward_pass_at_1024():
    from explain_cli.baselines import make_baseline
    from explain_cli.options.parse import parse_baseline
    from explain_cli.preprocess import Preprocess

    x = _rand(3, 1024, 1024)
    start = time.process_time()
    make_baseline(parse_baseline("blur"), x, Preprocess("none"))
    assert time.process_time() - start < 3.0  # torchvision's direct 2-D convolution: about 70 s


# ---------------------------------------------------------------------------------------------
# onnxruntime's own log line (item 40): the user reads one line, the tool's.
# ---------------------------------------------------------------------------------------------

def test_onnxruntime_failure_is_the_tools_one_line(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    shape = numpy_helper.from_array(np.array([-1, 7], dtype=np.int64), "shape")  # 768 values: no row of 7
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g", [x], [y], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "bad.onnx"))
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    done = subprocess.run([sys.executable, "-m", "explain_cli", "run", str(tmp_path / "bad.onnx"), str(tmp_path / "x.png"),
                           "--out", str(tmp_path / "out"), "-m", "ablation", "--preprocess", "none"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("explain: error: the model failed"), done.stderr
    assert "\x1b[" not in done.stderr and "[E:onnxruntime" not in done.stderr


@pytest.mark.parametrize("name", ["png 12000x12000 bomb", "npy forged (100000, 100000)", "png 30000x30000 header"])
def test_map_bombs_are_refused_in_bounded_memory(name, tmp_path):
    from explain_cli.inputs.maps import load_label_map

    file_name, make, _ = MAP_CASES[name]
    path = tmp_path / file_name
    make(path)
    seconds, peak, rss = measure(lambda: pytest.raises(ExplainError, load_label_map, str(path)))
    assert seconds < 2.0 and peak < 20 * 2**20 and rss < 100 * 2**20, (seconds, peak, rss)
