"""Hostile inputs (issue 14): bombs, forged headers, odd files and full disks.

Every refusal through `explain run` is one line on stderr, exit code 2, no traceback, and writes
nothing; size checks answer from headers, fast and in bounded memory. Small bad files live in
tests/hostile/; large ones are generated here, in temp folders.
"""

from __future__ import annotations

import errno
import io
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from explain_cli import fileio, yamlio
from explain_cli.errors import ExplainError
from explain_cli.fileio import (
    TerminatedBySignal,
    atomic_write_bytes,
    install_termination_handlers,
    require_file,
    sweep_stale_temps,
)
from explain_cli.inputs import load_input
from explain_cli.inputs.images import image_to_float
from explain_cli.inputs.limits import MIN_SIDE
from explain_cli.inputs.tensors import read_npy_header
from explain_cli.yamlio import read_yaml
from tests.helpers import assert_refused, measure, npy_bytes, png_bytes

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "hostile"


# ---------------------------------------------------------------------------------------------
# Builders for files too large (or too platform-bound) to commit.
# ---------------------------------------------------------------------------------------------


def bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP header declaring ``width`` × ``height`` with no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40, 0, 0, 54) + info


def tiff_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "TIFF")
    return buffer.getvalue()


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    if isinstance(obj, np.ndarray):
        np.save(buffer, obj, allow_pickle=obj.dtype.hasobject)
    else:
        torch.save(obj, buffer)
    return buffer.getvalue()


def good_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def good_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _sparse(shape: tuple[int, ...]) -> torch.Tensor:
    index = torch.zeros((len(shape), 1), dtype=torch.long)
    return torch.sparse_coo_tensor(index, torch.ones(1), shape, check_invariants=True)


def _bad_crc_png() -> bytes:
    data = bytearray(good_png())
    data[29] ^= 0xFF  # inside IHDR's CRC
    return bytes(data)


def _float_tiff(values: list[float]) -> bytes:
    return tiff_bytes(Image.fromarray(np.array([values] * 8, dtype=np.float32).repeat(2, axis=1), mode="F"))


# name -> (file name, builder, expected message fragment). Builders return bytes, or make the
# path themselves (file-system oddities) when they take the path.
FileMaker = Callable[[], bytes] | Callable[[Path], None]

CASES: dict[str, tuple[str, FileMaker, str]] = {
    # Images: bombs and sizes
    "png bomb 12000x12000 (420 kB class)": ("bomb.png", lambda: png_bytes(12000, 12000), "144.0 megapixels"),
    "png header-only huge (Pillow's own bomb limit)": ("huge.png", lambda: (CORPUS / "header_only_huge.png").read_bytes(), "refused before decoding"),
    "png header-only, no pixel data": ("nodata.png", lambda: png_bytes(1000, 1000, with_data=False), "truncated"),
    "bmp header 7000x7000 over the limit": ("big.bmp", lambda: bmp_header(7000, 7000), "--max-pixels"),
    "bmp header 50000x50000": ("huge.bmp", lambda: bmp_header(50000, 50000), "decompression bomb"),
    "png 1x1": ("one.png", lambda: (CORPUS / "one_pixel.png").read_bytes(), f"at least {MIN_SIDE}"),
    "png 1x200": ("strip.png", lambda: png_bytes(200, 1), f"at least {MIN_SIDE}"),
    "png 3x3": ("three.png", lambda: png_bytes(3, 3), f"at least {MIN_SIDE}"),
    # Images: damaged
    "png truncated": ("cut.png", lambda: good_png()[:60], "damaged"),
    "png bad crc": ("crc.png", _bad_crc_png, "damaged PNG"),
    "jpeg truncated": ("cut.jpg", lambda: good_jpeg()[:300], "truncated"),
    "png signature only": ("sig.png", lambda: b"\x89PNG\r\n\x1a\n", "damaged PNG"),
    "random bytes as jpeg": ("noise.jpg", lambda: np.random.default_rng(1).bytes(2000), "not an image"),
    "text as png": ("text.png", lambda: b"definitely not a picture\n", "not an image"),
    # Images: values no bit depth explains
    "float tiff out of range": ("f.tif", lambda: _float_tiff([-5.0, 1000.0, 0.5, 0.0]), "floating-point image"),
    "float tiff with nan": ("nan.tif", lambda: _float_tiff([float("nan"), 0.5, 0.5, 0.5]), "NaN"),
    "int32 tiff with negatives": ("neg.tif", lambda: tiff_bytes(Image.fromarray(np.full((8, 8), -7, dtype=np.int32), mode="I")), "negative"),
    # .npy
    "npy bomb (3,100000,100000) header": ("bomb.npy", lambda: (CORPUS / "npy_bomb.npy").read_bytes(), "megapixels"),
    "npy bomb, version 2 header": ("bomb2.npy", lambda: npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (100000, 100000), }", version=2), "megapixels"),
    "npy many channels": ("chan.npy", lambda: npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (1000, 4000, 100), }"), "values"),
    "npy shape larger than data": ("short.npy", lambda: npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 64, 64), }", b"\0" * 10), "truncated"),
    "npy over-long header": ("long.npy", lambda: npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 8, 8), }", version=2, pad_to=20480), "over-long"),
    "npy object dtype": ("objects.npy", lambda: saved(np.array([{"a": 1}, None], dtype=object)), "pickle"),
    "npy structured dtype": ("struct.npy", lambda: saved(np.zeros((8, 8), dtype=[("r", "u1"), ("g", "u1")])), "numeric"),
    "npy complex": ("complex.npy", lambda: saved(np.zeros((3, 8, 8), dtype=np.complex64)), "numeric"),
    "npy strings": ("strings.npy", lambda: saved(np.array([["ab"] * 8] * 8)), "numeric"),
    "npy datetimes": ("dates.npy", lambda: saved(np.zeros((8, 8), dtype="M8[s]")), "numeric"),
    "npy no magic": ("text.npy", lambda: b"[[1, 2], [3, 4]]\n", "not a .npy file"),
    "npy header cut off": ("cut.npy", lambda: b"\x93NUMPY\x01\x00\x76", "truncated"),
    "npy header garbage": ("garbage.npy", lambda: npy_bytes("{'descr': '<f4', 'shape': (3, 8"), "damaged .npy header"),
    "npy 1x1 image": ("dot.npy", lambda: saved(np.zeros((3, 1, 1), dtype=np.float32)), f"at least {MIN_SIDE}"),
    "npy 0-d": ("scalar.npy", lambda: saved(np.array(1.0, dtype=np.float32)), "shape"),
    "npy infinite": ("inf.npy", lambda: saved(np.full((3, 8, 8), np.inf, dtype=np.float32)), "infinite"),
    "npy bool": ("bool.npy", lambda: saved(np.zeros((3, 8, 8), dtype=bool)), "bool"),
    # .pt
    "pt sparse declaring 10^10 pixels": ("sparse.pt", lambda: saved(_sparse((3, 100000, 100000))), "megapixels"),
    "pt dict": ("dict.pt", lambda: saved({"x": torch.zeros(3, 8, 8)}), "holds a dict"),
    "pt meta tensor": ("meta.pt", lambda: saved(torch.empty(3, 8, 8, device="meta")), "meta tensor"),
    "pt complex": ("complex.pt", lambda: saved(torch.zeros(3, 8, 8, dtype=torch.complex64)), "real-valued"),
    "pt 1x1": ("dot.pt", lambda: saved(torch.zeros(3, 1, 1)), f"at least {MIN_SIDE}"),
    "pt truncated zip": ("cut.pt", lambda: saved(torch.zeros(3, 8, 8))[:200], "torch.save"),
    "pt text": ("text.pt", lambda: b"not a tensor\n", "torch.save"),
    # File-system oddities
    "missing file": ("missing.png", lambda p: None, "does not exist"),
    "dangling symlink": ("dangling.png", lambda p: p.symlink_to(p.parent / "gone.png"), "symlink to"),
    "symlink loop": ("loop.png", lambda p: p.symlink_to(p), "symlink loop"),
    "folder": ("folder.png", lambda p: p.mkdir(), "is a folder"),
    "fifo": ("pipe.png", lambda p: os.mkfifo(p), "FIFO"),
    "path through a file": ("plain.png/inner.png", lambda p: p.parent.write_bytes(good_png()), "part of its path is a file"),
    "empty npy": ("empty.npy", lambda: b"", "empty"),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


def _make(name: str, folder: Path) -> Path:
    file_name, maker, _ = CASES[name]
    path = folder / name.replace(" ", "_").replace("/", "_") / file_name
    case = folder / name.replace(" ", "_").replace("/", "_")
    case.mkdir(exist_ok=True)
    if maker.__code__.co_argcount:
        if not (path.exists() or path.is_symlink()):
            maker(path)
    else:
        path.write_bytes(maker())
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_refused_in_one_line(name, hostile, cli, linear_script, tmp_path):
    if name == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = _make(name, hostile)
    out = tmp_path / "out"
    result = cli("run", linear_script, path, "--out", out, "--samples", "20")
    assert_refused(result, CASES[name][2], out=out)


def test_character_device_is_not_a_regular_file(cli, linear_script, tmp_path):
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    result = cli("run", linear_script, "/dev/null", "--out", tmp_path / "out", "--samples", "20")
    assert_refused(result, "character device", out=tmp_path / "out")


def test_hostile_tensor_variants_still_load(tmp_path):
    """Non-contiguous, requires_grad, sparse-but-small, big-endian and uint16 inputs are fine."""
    x = torch.rand(8, 8, 3)
    cases = {
        "noncontig.pt": saved(x.permute(2, 0, 1)),
        "grad.pt": saved(x.permute(2, 0, 1).contiguous().requires_grad_(True)),
        "param.pt": saved(torch.nn.Parameter(x.permute(2, 0, 1).contiguous())),
        "sparse.pt": saved(x.permute(2, 0, 1).contiguous().to_sparse()),
        "big_endian.npy": saved(x.numpy().transpose(2, 0, 1).astype(">f4")),
        "fortran.npy": saved(np.asfortranarray(x.numpy().transpose(2, 0, 1))),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        loaded = load_input(tmp_path / name)
        assert loaded.pixels.shape == (3, 8, 8), name
        assert not loaded.pixels.requires_grad and loaded.pixels.is_contiguous(), name
        torch.testing.assert_close(loaded.pixels, x.permute(2, 0, 1), msg=name)
    (tmp_path / "u16.npy").write_bytes(saved(np.array([[0, 65535] * 4] * 8, dtype=">u2")))
    assert load_input(tmp_path / "u16.npy").pixels.max() == 65535.0  # tensors are taken as stored


# ---------------------------------------------------------------------------------------------
# Bit depth: every Pillow mode comes out in [0, 1] with the values its bit depth means.
# ---------------------------------------------------------------------------------------------


def _png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def _palette(with_transparency: bool) -> Image.Image:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (4, 0, 8, 8))
    if with_transparency:
        img.info["transparency"] = 1
    return img


def _halves(mode: str, left, right) -> Image.Image:
    if mode.startswith("I;16"):  # paste() cannot fill 16-bit modes: build them from bytes
        values = np.array([[left] * 4 + [right] * 4] * 8, dtype=">u2" if mode == "I;16B" else "<u2")
        return Image.frombytes(mode, (8, 8), values.tobytes())
    img = Image.new(mode, (8, 8), left)
    img.paste(right, (4, 0, 8, 8))
    return img


def _pa() -> Image.Image:
    img = Image.new("PA", (8, 8), (0, 255))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste((1, 0), (4, 0, 8, 8))
    return img


WHITE, BLACK = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
# mode -> (image, how to store it, expected RGB of the left half, of the right half, tolerance)
MODES: dict[str, tuple[Callable[[], Image.Image], str, tuple, tuple, float]] = {
    "1": (lambda: _halves("1", 0, 1), "png", BLACK, WHITE, 0),
    "L": (lambda: _halves("L", 0, 128), "png", BLACK, (128 / 255,) * 3, 1e-7),
    "LA": (lambda: _halves("LA", (100, 255), (100, 0)), "png", (100 / 255,) * 3, WHITE, 1e-7),
    "P": (lambda: _palette(False), "png", (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), 0),
    "P transparency": (lambda: _palette(True), "png", (1.0, 0.0, 0.0), WHITE, 0),
    "PA": (_pa, "tiff", (1.0, 0.0, 0.0), WHITE, 0),
    "RGB": (lambda: _halves("RGB", (10, 20, 30), (255, 0, 128)), "png", (10 / 255, 20 / 255, 30 / 255), (1.0, 0.0, 128 / 255), 1e-7),
    "RGBA": (lambda: _halves("RGBA", (0, 0, 0, 255), (0, 0, 0, 51)), "png", BLACK, (0.8,) * 3, 1e-6),
    "CMYK": (lambda: _halves("CMYK", (0, 0, 0, 0), (255, 0, 0, 0)), "tiff", WHITE, (0.0, 1.0, 1.0), 0),
    "YCbCr": (lambda: _halves("YCbCr", (255, 128, 128), (0, 128, 128)), "tiff", WHITE, BLACK, 2 / 255),
    "LAB": (lambda: _halves("LAB", (255, 0, 0), (0, 0, 0)), "tiff", WHITE, BLACK, 2 / 255),
    "HSV": (lambda: _halves("HSV", (0, 255, 255), (85, 255, 255)), "memory", (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), 0),
    "I;16 (16-bit PNG)": (lambda: _halves("I;16", 0, 32768), "png", BLACK, (32768 / 65535,) * 3, 1e-7),
    "I;16 mid-grey": (lambda: _halves("I;16", 257, 65535), "png", (257 / 65535,) * 3, WHITE, 1e-7),
    "I;16B": (lambda: _halves("I;16B", 1000, 65535), "tiff", (1000 / 65535,) * 3, WHITE, 1e-7),
    "I (32-bit TIFF)": (lambda: _halves("I", 0, 2**31 - 1), "tiff", BLACK, WHITE, 1e-7),
    "I (16-bit values, no bit depth)": (lambda: _halves("I", 0, 32768), "memory", BLACK, (32768 / 65535,) * 3, 1e-7),
    "F in [0, 1]": (lambda: _halves("F", 0.25, 1.0), "tiff", (0.25,) * 3, WHITE, 0),
    "F in [0, 255]": (lambda: _halves("F", 51.0, 255.0), "tiff", (0.2,) * 3, WHITE, 1e-7),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_scales_by_its_bit_depth(mode, tmp_path):
    make, storage, left, right, tol = MODES[mode]
    img = make()
    if storage == "memory":  # no format Pillow writes keeps this mode
        rgb = image_to_float(img)
        rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb
        pixels = torch.from_numpy(rgb.transpose(2, 0, 1))
    else:
        path = tmp_path / f"img.{storage}"
        path.write_bytes(_png(img) if storage == "png" else tiff_bytes(img))
        with Image.open(path) as reopened:
            assert reopened.mode.split(";")[0] == img.mode.split(";")[0], reopened.mode  # the format kept it
        pixels = load_input(path).pixels
    assert pixels.dtype == torch.float32 and pixels.shape == (3, 8, 8)
    expected = torch.tensor([left] * 4 + [right] * 4, dtype=torch.float32).T[:, None, :].expand(3, 8, 8)
    torch.testing.assert_close(pixels, expected, atol=tol, rtol=0)


def test_16bit_png_keeps_its_precision_in_grey_and_display(tmp_path):
    """The issue's case: 16-bit grey came out all white. Levels 1/65535 apart stay apart."""
    values = np.array([[0, 1, 256, 257, 32768, 65534, 65535, 12345]] * 8, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode == "I;16"
    grey = load_input(tmp_path / "deep.png", channels=1)
    np.testing.assert_array_equal(grey.pixels[0].numpy(), (values / 65535).astype(np.float32))
    assert grey.source_mode == "I;16"
    np.testing.assert_array_equal(grey.display[0, :, 0], np.round(values[0] / 65535 * 255).astype(np.uint8))


def test_16bit_pgm_and_rgb_to_grey(tmp_path):
    (tmp_path / "deep.pgm").write_bytes(b"P5 4 4 65535\n" + np.full(16, 16384, dtype=">u2").tobytes())
    torch.testing.assert_close(load_input(tmp_path / "deep.pgm").pixels, torch.full((3, 4, 4), 16384 / 65535))
    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "red.png")
    torch.testing.assert_close(load_input(tmp_path / "red.png", channels=1).pixels, torch.full((1, 4, 4), 0.299))


# ---------------------------------------------------------------------------------------------
# Size checks answer from headers: fast and in bounded memory.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["png", "npy", "pt", "yaml"])
def test_bombs_are_refused_fast_in_bounded_memory(kind, tmp_path):
    if kind == "png":
        path = tmp_path / "bomb.png"
        path.write_bytes(png_bytes(12000, 12000))  # 144 Mpx, 140 kB: float32 RGB would be 1.7 GB
        assert path.stat().st_size < 420_000
        call = lambda: load_input(path)  # noqa: E731
    elif kind == "npy":
        path = CORPUS / "npy_bomb.npy"
        call = lambda: load_input(path)  # noqa: E731
    elif kind == "pt":
        path = tmp_path / "sparse.pt"
        path.write_bytes(saved(_sparse((3, 100000, 100000))))
        call = lambda: load_input(path)  # noqa: E731
    else:
        path = CORPUS / "billion_laughs.yaml"
        call = lambda: read_yaml(path)  # noqa: E731
    seconds, peak, rss = measure(lambda: pytest.raises(ExplainError, call))
    assert seconds < 2.0, seconds
    assert peak < 20 * 2**20, peak
    assert rss < 100 * 2**20, rss


def test_max_pixels_is_configurable(tmp_path):
    Image.new("L", (100, 50), 7).save(tmp_path / "wide.png")
    np.save(tmp_path / "wide.npy", np.zeros((3, 50, 100), dtype=np.float32))
    for name in ("wide.png", "wide.npy"):
        with pytest.raises(ExplainError, match=r"100×50 = 0.0 megapixels.*with `max_pixels`"):
            load_input(tmp_path / name, max_pixels=4999)
        assert load_input(tmp_path / name, max_pixels=5000).pixels.shape[1:] == (50, 100)
    with pytest.raises(ExplainError, match="max_pixels must be at least"):
        load_input(tmp_path / "wide.png", max_pixels=3)


def test_npy_header_is_read_without_the_data():
    shape, fortran, dtype, offset = read_npy_header(CORPUS / "npy_bomb.npy")
    assert (shape, fortran, dtype, offset) == ((3, 100000, 100000), False, np.dtype("<f8"), 128)


# ---------------------------------------------------------------------------------------------
# File system: the real reason, and permission errors that are not "damaged".
# ---------------------------------------------------------------------------------------------


def test_unreadable_file_says_permission_denied(tmp_path):
    """As root permissions are not enforced, so the check runs in a child as user nobody."""
    folder = Path(tempfile.mkdtemp(prefix="explain-perm-"))  # pytest's tmp is private to its user
    try:
        folder.chmod(0o755)
        secret = folder / "secret.png"
        secret.write_bytes(good_png())
        secret.chmod(0o000)
        code = textwrap.dedent(f"""
            import os, sys
            from explain_cli.inputs import load_input
            from explain_cli.errors import ExplainError
            if os.geteuid() == 0:  # drop root after importing: the interpreter may live under /root
                os.setgid(65534); os.setuid(65534)
            try:
                load_input({str(secret)!r})
            except ExplainError as exc:
                print(exc)
        """)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                              cwd="/")
        assert "permission denied" in done.stdout, (done.stdout, done.stderr)
        assert "damaged" not in done.stdout
    finally:
        (folder / "secret.png").unlink(missing_ok=True)
        folder.rmdir()


def test_permission_error_while_decoding_is_not_damaged(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    (tmp_path / "x.png").write_bytes(good_png())

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x.png"))

    monkeypatch.setattr(PILImage, "open", denied)
    with pytest.raises(ExplainError, match="permission denied") as info:
        load_input(tmp_path / "x.png")
    assert "damaged" not in str(info.value)


def test_require_file_allows_empty_when_asked(tmp_path):
    (tmp_path / "empty.yaml").write_bytes(b"")
    require_file(tmp_path / "empty.yaml", "config", "pass a file", allow_empty=True)
    with pytest.raises(ExplainError, match="is empty; pass a file"):
        require_file(tmp_path / "empty.yaml", "config", "pass a file")


# ---------------------------------------------------------------------------------------------
# Atomic writes: full disks, kills, and the sweep of what a kill leaves.
# ---------------------------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "no space left on device"),
    (getattr(errno, "EDQUOT", errno.ENOSPC), "disk quota exceeded" if hasattr(errno, "EDQUOT") else "no space"),
    (errno.EIO, "input/output error"),
])
def test_write_failure_is_a_clear_error_and_leaves_nothing(code, words, tmp_path, monkeypatch):
    def fail(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fileio.os, "fsync", fail)
    with pytest.raises(ExplainError, match=f"cannot write {tmp_path / 'a.png'}: {words}"):
        atomic_write_bytes(tmp_path / "a.png", b"data")
    assert _leftovers(tmp_path) == []


def test_read_only_folder_at_open(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(fileio.TEMP_SUFFIX):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(fileio.os, "open", read_only)
    with pytest.raises(ExplainError, match="read-only file system; choose another output folder"):
        atomic_write_bytes(tmp_path / "a.json", b"{}")
    assert _leftovers(tmp_path) == []


def test_interrupt_mid_write_removes_the_temp_and_keeps_the_old_file(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_bytes(b"old")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "a.json", b"new")
    assert _leftovers(tmp_path) == ["a.json"] and (tmp_path / "a.json").read_bytes() == b"old"


def test_written_file_has_umask_permissions(tmp_path):
    atomic_write_bytes(tmp_path / "a.png", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o666 & ~mask
    assert _leftovers(tmp_path) == ["a.png"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has this PID until the kernel reuses it


def test_sweep_removes_only_our_stale_temps(tmp_path):
    dead, me = _dead_pid(), os.getpid()
    ours_dead = tmp_path / f".a.png.{dead}.0123abcd.explain-tmp"
    ours_live_young = tmp_path / f".b.png.{me}.0123abcd.explain-tmp"
    ours_live_old = tmp_path / f".c.png.{me}.89abcdef.explain-tmp"
    keep = [
        ours_live_young,
        tmp_path / ".d.png.tmp",  # someone else's temp
        tmp_path / "e.explain-tmp",  # not our pattern
        tmp_path / f".f.png.{dead}.xyz.explain-tmp",  # not our pattern (token)
        tmp_path / "g.png",
    ]
    for path in [ours_dead, ours_live_old, *keep]:
        path.write_bytes(b"x")
    old = time.time() - 7200
    os.utime(ours_live_old, (old, old))
    link = tmp_path / f".h.png.{dead}.0123abcd.explain-tmp"
    link.symlink_to(tmp_path / "g.png")  # never delete through or as a symlink
    folder = tmp_path / f".i.{dead}.0123abcd.explain-tmp"
    folder.mkdir()
    removed = sweep_stale_temps(tmp_path, older_than_s=3600)
    assert sorted(removed) == sorted([ours_dead, ours_live_old])
    assert all(p.exists() for p in keep) and link.is_symlink() and folder.is_dir()
    assert sweep_stale_temps(tmp_path / "missing") == []


def test_sigterm_becomes_a_keyboard_interrupt():
    previous = install_termination_handlers()
    try:
        assert signal.SIGTERM in previous
        with pytest.raises(KeyboardInterrupt) as info:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode; this never completes
        assert isinstance(info.value, TerminatedBySignal) and info.value.signum == signal.SIGTERM
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_killed_writer_leaves_no_temp_file(tmp_path):
    """A real SIGTERM during a write: the temp file is removed and the exit status is 143."""
    code = textwrap.dedent(f"""
        import os, sys, time
        from explain_cli import fileio
        fileio.install_termination_handlers()
        def slow_fsync(fd):
            print("writing", flush=True)
            time.sleep(30)
        fileio.os.fsync = slow_fsync
        try:
            fileio.atomic_write_bytes(fileio.Path({str(tmp_path / 'out.png')!r}), b"x" * 1000)
        except KeyboardInterrupt as exc:
            sys.exit(128 + exc.signum)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env) as child:
        assert child.stdout.readline().strip() == "writing"
        assert any(p.name.endswith(".explain-tmp") for p in tmp_path.iterdir())
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == 128 + signal.SIGTERM
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# YAML: bombs, limits and errors with file, line and column.
# ---------------------------------------------------------------------------------------------


YAML_CASES = {
    "billion laughs": ("billion_laughs.yaml", r"expands to more than 100,000 nodes \(line \d+, column \d+\)"),
    "recursive alias": ("recursive_alias.yaml", "recursive alias"),
    "syntax error": ("bad_syntax.yaml", r"line 4, column 1"),
    "latin-1 text": ("latin1.yaml", r"not UTF-8 text \(byte 0xe9 on line 2\)"),
    "control character": ("control_char.yaml", r"unacceptable character #x0001 \(line 2, column 11\)"),
    "impossible date": ("bad_timestamp.yaml", "month must be in 1..12"),
    "python tag": ("python_tag.yaml", r"could not determine a constructor.*\(line 1, column 11\)"),
}


@pytest.mark.parametrize("name", list(YAML_CASES))
def test_yaml_refusals_name_the_file_in_one_line(name):
    file_name, pattern = YAML_CASES[name]
    path = CORPUS / file_name
    with pytest.raises(ExplainError) as info:
        read_yaml(path)
    message = str(info.value)
    assert message.startswith(f"config {path}"), message
    assert "\n" not in message
    assert re.search(pattern, message), message


@pytest.mark.parametrize("loader", ["C", "pure Python"])
def test_yaml_bomb_refused_with_either_loader(loader, monkeypatch):
    if loader == "pure Python":
        monkeypatch.setattr(yamlio, "_loader_class", lambda: yaml.SafeLoader)
    elif not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML without libyaml")
    seconds, peak, _ = measure(lambda: pytest.raises(ExplainError, read_yaml, CORPUS / "billion_laughs.yaml"))
    assert seconds < 1.0 and peak < 20 * 2**20


def test_yaml_limits_and_edges(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 2000 + "\n")
    with pytest.raises(ExplainError, match=r"2,004 bytes, over the 1,000-byte limit"):
        read_yaml(big, max_bytes=1000)
    items = tmp_path / "items.yaml"
    items.write_text("[" + ", ".join(["1"] * 50) + "]\n")
    with pytest.raises(ExplainError, match="more than 20 nodes"):
        read_yaml(items, max_nodes=20)
    assert read_yaml(items) == [1] * 50
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 300 + "]" * 300)
    with pytest.raises(ExplainError, match="nesting deeper than 200 levels"):
        read_yaml(deep)
    (tmp_path / "empty.yaml").write_bytes(b"")
    assert read_yaml(tmp_path / "empty.yaml") is None
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbfsamples: 500\n")
    assert read_yaml(tmp_path / "bom.yaml") == {"samples": 500}
    shared = tmp_path / "shared.yaml"
    shared.write_text("base: &b {seed: 1}\njobs: [{<<: *b, name: a}, {<<: *b, name: b}]\n")
    assert read_yaml(shared) == yaml.safe_load(shared.read_text())
    with pytest.raises(ExplainError, match=r"^config .*missing.yaml does not exist"):
        read_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ExplainError, match=r"^config .* is a folder"):
        read_yaml(tmp_path)


def test_yaml_reads_the_shipped_configs_like_safe_load():
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    for path in configs:
        assert read_yaml(path) == yaml.safe_load(path.read_text(encoding="utf-8")), path
