"""Atomic file writes: a reader never sees a half-written output."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from explain_cli.errors import ExplainError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, then rename.

    ``os.replace`` is atomic on POSIX and Windows, so a run killed at any moment
    leaves either the old file, the new file, or nothing — never a partial one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and prove we can write there, before any work is done."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ExplainError(f"output folder {path} is a file; pass --out with a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".explain-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ExplainError(
            f"cannot write to output folder {path}: {exc.strerror or exc}; choose another --out"
        ) from None
    return path


def check_output_dir(path: Path, names: list[str]) -> None:
    """Check, without creating anything, that outputs ``names`` can be written in folder ``path``.

    A failing run must not leave an empty folder behind, so the folder itself is only created
    when the first file is written; here its nearest existing ancestor must be a writable folder,
    and no output name may already be a folder or another non-file.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ExplainError(f"output folder {path} is a file; pass --out with a folder path")
        for name in names:
            target = path / name
            if target.exists() and not target.is_file():
                raise ExplainError(f"output {target} exists and is not a regular file; move it away or choose another --out")
        probe = path
    else:
        probe = path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise ExplainError(f"cannot write to output folder {path}: {probe} is not a folder; choose another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ExplainError(f"cannot write to output folder {path}: permission denied on {probe}; choose another --out")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def require_file(path: Path, what: str, hint: str) -> None:
    """Raise a one-line ExplainError unless ``path`` is a non-empty regular file.

    ``what`` names the role ('input', 'model file', ...); ``hint`` says what to pass instead.
    """
    if not path.exists():
        raise ExplainError(f"{what} {path} does not exist; {hint}")
    if path.is_dir():
        raise ExplainError(f"{what} {path} is a folder; {hint}")
    if path.stat().st_size == 0:
        raise ExplainError(f"{what} {path} is empty; {hint}")
