"""Input globs walked with a bound, so a symlink cycle or a huge tree cannot hang a config's validation.

:func:`bounded_glob` matches as ``glob.glob(pattern, recursive=True)`` does (``**`` is any
depth of folders, names starting with a dot only match a pattern that starts with one,
symlinked folders are followed), except that ``**`` never goes round a symlink cycle (a link
to a folder's own ancestor is skipped: its files are found by their own path), and a pattern that would look at more than ``limit`` folder
entries is refused with one line instead of walking on.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Iterator

from explain_cli.errors import ExplainError

#: Folder entries one pattern may look at (a few seconds of walking at most).
MAX_ENTRIES = 200_000


def has_magic(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def bounded_glob(pattern: str, where: str = "", limit: int | None = None) -> list[str]:
    """The paths ``pattern`` matches, in walking order (callers sort).

    Raises
    ------
    ExplainError
        If matching would look at more than ``limit`` (default :data:`MAX_ENTRIES`) entries; the
        message names ``where`` (the config's key path) and asks for a narrower pattern.
    """
    walker = _Walker(pattern, where, MAX_ENTRIES if limit is None else limit)
    drive, rest = os.path.splitdrive(pattern)
    absolute = rest.startswith(os.sep) or (os.altsep is not None and rest.startswith(os.altsep))
    parts = [p for p in rest.replace(os.altsep or os.sep, os.sep).split(os.sep) if p]
    candidates = [drive + os.sep] if absolute else [drive]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        step: list[str] = []
        for base in candidates:
            if part == "**":
                step += walker.recurse(base, files=last)
            elif has_magic(part):
                step += walker.matches(base, part, dirs_only=not last)
            else:
                path = os.path.join(base, part)
                if os.path.isdir(path) if not last else os.path.lexists(path):
                    step.append(path)
        candidates = step
    return [c for c in candidates if c]


class _Walker:
    def __init__(self, pattern: str, where: str, limit: int) -> None:
        self.pattern, self.where, self.limit, self.seen = pattern, where, limit, 0

    def _entries(self, folder: str) -> Iterator[os.DirEntry]:
        try:
            with os.scandir(folder or os.curdir) as it:
                for entry in it:
                    self.seen += 1
                    if self.seen > self.limit:
                        raise ExplainError(f"{self.where + ': ' if self.where else ''}{self.pattern!r} looks at more "
                                           f"than {self.limit:,} files and folders; narrow the pattern")
                    yield entry
        except OSError:  # unreadable, vanished, or too many symlink levels: nothing matches there
            return

    @staticmethod
    def _is_dir(entry: os.DirEntry) -> bool:
        try:
            return entry.is_dir()  # follows symlinks, as glob does
        except OSError:
            return False

    def matches(self, base: str, part: str, *, dirs_only: bool) -> list[str]:
        hidden_ok = part.startswith(".")
        return [os.path.join(base, e.name) for e in self._entries(base)
                if (hidden_ok or not e.name.startswith(".")) and fnmatch.fnmatch(e.name, part)
                and (not dirs_only or self._is_dir(e))]

    def recurse(self, base: str, *, files: bool) -> list[str]:
        """``base`` and every folder below it (and the files, for a final ``**``), hidden names
        skipped; a symlink to one of its own ancestors is neither matched nor entered."""
        if base and not os.path.isdir(base):
            return []
        found = [os.path.join(base, "")] if base else [""]
        stack: list[tuple[str, tuple[str, ...]]] = [(base, (os.path.realpath(base or os.curdir),))]
        while stack:
            folder, ancestors = stack.pop()
            for e in self._entries(folder):
                if e.name.startswith("."):
                    continue
                path = os.path.join(folder, e.name)
                if self._is_dir(e):
                    real = os.path.realpath(path)
                    if real in ancestors:  # a symlink back up the tree: its files are found by their own path
                        continue
                    found.append(path)
                    stack.append((path, ancestors + (real,)))
                elif files:
                    found.append(path)
        return found
