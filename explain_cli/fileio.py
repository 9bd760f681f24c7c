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
