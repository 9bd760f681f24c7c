"""File-system edges: atomic writes, clear reasons for unusable paths, and cleanup after a kill.

Every failure a user can fix (a full disk, a read-only folder, a missing or unreadable input)
becomes a one-line `ExplainError` naming the file and the reason, never an internal error.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import signal
import stat
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any, Callable

from explain_cli.errors import ExplainError

#: Suffix of our temp files. A temp file is ``.NAME.PID.TOKEN.explain-tmp`` next to NAME, so a
#: sweep can tell ours from anything else and knows which process wrote it.
TEMP_SUFFIX = ".explain-tmp"
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]{8})" + re.escape(TEMP_SUFFIX) + r"$")

#: Why a write failed, in words that suggest the fix (errno -> text).
_WRITE_REASONS = {
    errno.ENOSPC: "no space left on device; free some space or choose another output folder",
    errno.EROFS: "read-only file system; choose another output folder",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.EFBIG: "file too large for this file system; choose another output folder",
    errno.EIO: "input/output error (the disk or network share may be failing)",
    errno.ENAMETOOLONG: "file name too long; use a shorter input name or output folder",
}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _WRITE_REASONS[errno.EDQUOT] = "disk quota exceeded; free some space or choose another output folder"


def write_error_reason(exc: OSError) -> str:
    """The reason an OSError gives for a failed write, with the fix where there is one."""
    return _WRITE_REASONS.get(exc.errno or 0, exc.strerror or str(exc))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, then rename.

    ``os.replace`` is atomic on POSIX and Windows, so a run killed at any moment leaves either
    the old file, the new file, or a temp file named ``.NAME.PID.TOKEN.explain-tmp`` (which
    `sweep_stale_temps` removes later) — never a partial NAME.

    Raises
    ------
    ExplainError
        The write failed for a reason the user can fix: ``cannot write PATH: no space left on
        device; ...`` (also read-only file systems, quotas, permissions). The temp file is removed.
    """
    atomic_write_files([(Path(path), data)])


#: Bytes of NAME kept in a temp file's name: the temp stays within a file system's 255-byte
#: limit whenever NAME does (the rest of the temp's name is at most 40 bytes).
_TEMP_NAME_BYTES = 200


def _stage(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new temp file beside ``path``, synced; returns the temp's path."""
    name = path.name.encode()[:_TEMP_NAME_BYTES].decode(errors="ignore")
    tmp = path.parent / f".{name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    # O_EXCL: never follow or reuse something already there. Mode 0o666 lets the umask decide
    # the permissions, as a plain open() would (mkstemp would make the output private).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with open(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            # A full disk often shows only here (delayed allocation), not at write().
            os.fsync(fh.fileno())
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def atomic_write_files(files: list[tuple[Path, bytes]]) -> None:
    """Write several files as one set: every one to a temp file first, then all renamed, in order.

    A failure while writing (a full disk, a name too long, a kill) removes every temp file and
    replaces nothing, so a set of outputs is never half new; only the renames, which do not
    write data, come after. Put the file whose presence marks a complete set last.

    Raises
    ------
    ExplainError
        ``cannot write PATH: no space left on device; ...`` (see :func:`atomic_write_bytes`).
    """
    staged: list[tuple[Path, Path]] = []
    current = None
    try:
        for current, data in files:
            staged.append((_stage(current, data), current))
        for tmp, current in staged:
            os.replace(tmp, current)
    except OSError as exc:
        for tmp, _ in staged:
            _unlink_quietly(tmp)
        raise ExplainError(f"cannot write {current}: {write_error_reason(exc)}") from None
    except BaseException:  # KeyboardInterrupt (and SIGTERM, see install_termination_handlers)
        for tmp, _ in staged:
            _unlink_quietly(tmp)
        raise
    for folder in dict.fromkeys(path.parent for path, _ in files):
        _fsync_folder(folder)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # already gone, or the folder went read-only: the sweep will get it


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; best effort, as some systems cannot fsync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    """True unless no process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True  # cannot tell: assume alive, never delete a file that may be in use
    return True


def sweep_stale_temps(folder: Path, *, older_than_s: float = 3600.0) -> list[Path]:
    """Remove temp files that `atomic_write_bytes` left behind in ``folder`` when killed.

    Only regular files named ``.NAME.PID.TOKEN.explain-tmp`` are touched (never symlinks,
    folders or any other name), and only when their writer process is gone or they are older
    than ``older_than_s`` seconds. The folder is not searched recursively.

    Parameters
    ----------
    folder : Path
        An output folder. A missing or unreadable folder sweeps nothing.
    older_than_s : float
        Age (by modification time) past which a temp file is stale even if a process with its
        writer's PID is alive (PIDs are reused). Must be >= 0.

    Returns
    -------
    list of Path
        The files removed.

    Notes
    -----
    The PID test looks at this machine's processes; on a folder shared by several machines,
    pass ``older_than_s`` and a sweep there may still remove a temp file of a live writer on
    another machine whose PID happens to be free here.
    """
    if older_than_s < 0:
        raise ValueError(f"older_than_s must be >= 0, got {older_than_s}")
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if match is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        pid = int(match["pid"])
        stale = now - st.st_mtime >= older_than_s or (pid != os.getpid() and not _pid_alive(pid))
        if stale:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass  # removed by another sweep, or not ours to remove
    return removed


class TerminatedBySignal(KeyboardInterrupt):
    """SIGTERM/SIGHUP turned into an interrupt, so ``finally`` blocks clean up temp files.

    ``signum`` lets the entry point exit with the conventional status 128 + signum.
    """

    last: int | None = None  # the latest one raised: the entry point's word when Typer swallowed the exception

    def __init__(self, signum: int) -> None:
        self.signum = signum
        TerminatedBySignal.last = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise TerminatedBySignal(signum)


def install_termination_handlers(signals: tuple[str, ...] = ("SIGTERM", "SIGHUP")) -> dict[int, Any]:
    """Make SIGTERM (and SIGHUP) raise `TerminatedBySignal`, a KeyboardInterrupt, as Ctrl-C does.

    Python's default for SIGTERM kills the process without running ``finally`` blocks, so a
    killed run would leave temp files; as an exception, the writer removes its temp file.
    Call once from the entry point's main thread; elsewhere it does nothing.

    Returns
    -------
    dict
        Signal number -> previous handler, for ``signal.signal(num, handler)`` to restore.
    """
    previous: dict[int, Any] = {}
    for name in signals:
        signum = getattr(signal, name, None)
        if signum is None:  # SIGHUP does not exist on Windows
            continue
        try:
            previous[signum] = signal.signal(signum, _raise_terminated)
        except ValueError:  # not the main thread: signal handlers cannot be set here
            break
    return previous


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
    try:
        longest = os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        longest = 255
    for name in names:
        if len(name.encode()) > longest:
            raise ExplainError(f"output name {name[:40]}… is {len(name.encode())} bytes, over this file system's "
                               f"{longest}; rename the input to something shorter")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ExplainError(f"cannot read {path}: {read_error_reason(exc)}") from None
    return digest.hexdigest()


def read_error_reason(exc: OSError) -> str:
    """The reason an OSError gives for a failed read, in words that suggest the fix."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied; check its permissions (and its folders')"
    if exc.errno == errno.ELOOP:
        return "symlink loop; point the link at a real file"
    if exc.errno == errno.EIO:
        return "input/output error (the disk or network share may be failing)"
    if exc.errno == errno.EISDIR:
        return "it is a folder"
    return exc.strerror or str(exc)


_FILE_KINDS: list[tuple[Callable[[int], bool], str]] = [
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
]


def require_file(path: Path, what: str, hint: str, *, allow_empty: bool = False) -> None:
    """Raise a one-line ExplainError unless ``path`` is a readable, non-empty regular file.

    Each refusal gives the real reason: missing, a dangling symlink, a symlink loop, a folder,
    not a regular file (FIFO, device, socket), empty, or unreadable (permission denied).

    Parameters
    ----------
    path : Path
        The file.
    what : str
        Its role, first word of the message ('input', 'model file', 'config', ...).
    hint : str
        What to pass instead, appended after a semicolon.
    allow_empty : bool
        Accept an empty file (an empty YAML config is a valid, empty document).
    """
    path = Path(path)
    try:
        st = os.stat(path)  # follows symlinks: we care about what they point at
    except FileNotFoundError:
        if os.path.islink(path):
            target = _readlink(path)
            raise ExplainError(f"{what} {path} is a symlink to {target}, which does not exist; {hint}") from None
        raise ExplainError(f"{what} {path} does not exist; {hint}") from None
    except NotADirectoryError:
        raise ExplainError(f"{what} {path} does not exist (part of its path is a file, not a folder); {hint}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ExplainError(f"{what} {path} is a symlink loop (the links never reach a file); {hint}") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ExplainError(
                f"{what} {path} cannot be reached: permission denied on one of its folders; check their permissions"
            ) from None
        raise ExplainError(f"{what} {path} cannot be read: {read_error_reason(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ExplainError(f"{what} {path} is a folder; {hint}")
    if not stat.S_ISREG(st.st_mode):
        kind = next((words for test, words in _FILE_KINDS if test(st.st_mode)), "not a regular file")
        raise ExplainError(f"{what} {path} is {kind}, not a regular file; {hint}")
    if st.st_size == 0 and not allow_empty:
        raise ExplainError(f"{what} {path} is empty; {hint}")
    try:
        # Opening proves we may read it (os.access is wrong under sudo and ACLs); the file is
        # regular, so open cannot block as it would on a FIFO.
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ExplainError(f"{what} {path} cannot be read: {read_error_reason(exc)}") from None


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "a missing file"
