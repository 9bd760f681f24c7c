"""Locks on the folders a batch writes: one run per folder at a time, the shards of one run together.

A lock is ``flock`` on ``FOLDER/.explain-batch.lock``, exclusive for a whole run and shared for
a shard (``--shard K/N`` runs of one config may write the same folders at once: their items are
disjoint; ``FOLDER/.explain-batch.shard-K-of-N.lock`` keeps one shard from running twice).
The kernel frees a lock when its holder dies, SIGKILL included, so a lock file left by a killed
run is stale and simply taken over. The last holder removes the file when it lets go.

A lock file is opened with ``O_NOFOLLOW`` and must be a regular file: a symlink planted in its
place is refused, never followed to a path outside the folder.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from explain_cli.errors import ExplainError

LOCK_NAME = ".explain-batch.lock"
_TRIES = 20  # an open that races with the previous holder's unlink is retried on the new file


@dataclass(frozen=True)
class LockSpec:
    """One lock to hold: the folder, the lock file's name, shared or exclusive, and what to say when busy."""

    folder: Path
    name: str
    shared: bool
    busy: str  # the error when another run holds it


def batch_locks(summary_dir: Path, out_dirs: Iterable[Path], shard: tuple[int, int] | None) -> list[LockSpec]:
    """The locks a batch run holds: its summary folder and every job's out folder (each once)."""
    folders: dict[str, Path] = {}
    for folder in [Path(summary_dir), *map(Path, out_dirs)]:
        folders.setdefault(os.path.realpath(folder), folder)  # ``x`` and ``y/../x`` are one folder
    busy = "another explain batch is running in {folder}; wait for it to finish, or give this run other out folders"
    specs = [LockSpec(folder, LOCK_NAME, shard is not None, busy) for _, folder in sorted(folders.items())]
    if shard is not None:
        k, n = shard
        specs.append(LockSpec(Path(summary_dir), f".explain-batch.shard-{k}-of-{n}.lock", False,
                              f"shard {k}/{n} of this batch is already running with summary folder {{folder}}"))
    return specs


class FolderLocks:
    """Hold every lock of ``specs`` (folders are created as needed), or none: a busy one is an ExplainError.

    On exit the locks are released, their files removed by their last holder, and the folders this
    context created are removed again when nothing was written to them.
    """

    def __init__(self, specs: list[LockSpec]) -> None:
        self.specs = specs
        self.held: list[tuple[LockSpec, int]] = []
        self.created: list[Path] = []

    def __enter__(self) -> "FolderLocks":
        from explain_cli.fileio import ensure_writable_dir

        try:
            for spec in self.specs:
                self.created += [p for p in _missing(spec.folder) if p not in self.created]
                ensure_writable_dir(spec.folder)
                self.held.append((spec, _acquire(spec)))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        while self.held:
            spec, fd = self.held.pop()
            _release(spec, fd)
        for folder in sorted(self.created, key=lambda p: -len(p.parts)):  # deepest first
            try:
                folder.rmdir()  # only when empty: a failed job leaves no empty folder behind
            except OSError:
                pass
        self.created = []


def _missing(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet (what creating it will make)."""
    missing = []
    p = Path(os.path.abspath(folder))
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def _acquire(spec: LockSpec) -> int:
    import fcntl

    path = spec.folder / spec.name
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TRIES):
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):  # a symlink, a folder, a socket
                raise _not_regular(path) from None
            raise ExplainError(f"cannot create the batch lock {path}: {exc.strerror}; choose another out folder") from None
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):  # a fifo or a device planted under the lock's name
            os.close(fd)
            raise _not_regular(path)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if spec.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ExplainError(spec.busy.format(folder=spec.folder)) from None
        if _same_file(path, opened):
            return fd
        os.close(fd)  # the previous holder removed the file between our open and flock: lock the new one
    raise ExplainError(spec.busy.format(folder=spec.folder))


def _release(spec: LockSpec, fd: int) -> None:
    """Let go of a lock; the last holder (the one that can take it exclusively) removes its file."""
    import fcntl

    path = spec.folder / spec.name
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _same_file(path, os.fstat(fd)):
            os.unlink(path)
    except OSError:
        pass  # another shard still holds it and will remove it
    finally:
        os.close(fd)


def _same_file(path: Path, opened: os.stat_result) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)


def _not_regular(path: Path) -> ExplainError:
    return ExplainError(f"batch lock {path} is not a regular file (a symlink, folder or fifo in its place); "
                        "remove it: explain batch never follows it")
