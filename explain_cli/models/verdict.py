"""The runtime verdict: which runtime is fastest for one model and setting, measured once and cached.

A verdict is keyed on the model's graph fingerprint, the input shape, the batch size, the
device, the versions of the libraries that run the model, the CPU and its thread count. It is
a small JSON file beside the ONNX exports (``verdict-KEY.json``) holding the chosen runtime,
every candidate's measured seconds per image and its deviation from eager on the probe. Later
runs read it and build only the chosen runtime, so a given cache always gives the same
runtime, hence the same numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from explain_cli.models.onnx_cache import version

if TYPE_CHECKING:
    import torch

    from explain_cli.models.base import LoadedModel

VERDICT_VERSION = 1


@dataclass
class Verdict:
    """What the probe found; ``runtime`` is what every later run with the same key uses."""

    runtime: str  # eager | eager+channels_last | onnxruntime
    reason: str  # one line: how it was chosen
    per_image_s: dict[str, float] = field(default_factory=dict)  # measured seconds per image, per candidate
    rows: int = 0  # rows in each timed batch
    deviation: dict[str, float] = field(default_factory=dict)  # max |candidate - eager| on the probe batch
    onnx_sha256: str | None = None  # of the export the verdict timed, when it chose onnxruntime

    def speedup(self) -> float | None:
        """Eager's time over the chosen runtime's, when both were measured."""
        eager, chosen = self.per_image_s.get("eager"), self.per_image_s.get(self.runtime)
        return eager / chosen if eager and chosen else None

    def summary(self) -> str:
        """``onnxruntime 1.9× eager`` or the reason, for the one information line."""
        ratio = self.speedup()
        if ratio is not None and self.runtime != "eager":
            return f"{self.runtime} {ratio:.1f}× eager"
        return f"{self.runtime} ({self.reason})"


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def verdict_key(fingerprint: str, shape: tuple[int, ...], batch_size: int, device: "torch.device") -> str:
    """A hex hash of everything a verdict depends on (see the module docstring)."""
    import torch

    parts = {
        "v": VERDICT_VERSION,
        "model": fingerprint,
        "shape": [int(s) for s in shape],
        "batch_size": int(batch_size),
        "device": str(device),
        "libraries": {p: version(p) for p in ("torch", "onnx", "onnxruntime", "onnxscript", "numpy")},
        "python": list(sys.version_info[:2]),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def verdict_path(cache: Path, key: str) -> Path:
    return Path(cache) / f"verdict-{key[:32]}.json"


def load_verdict(cache: Path, key: str) -> Verdict | None:
    """The cached verdict for ``key``, or None (absent, unreadable or malformed: probe again)."""
    try:
        data = json.loads(verdict_path(cache, key).read_text(encoding="utf-8"))
        if data.pop("key", None) != key:
            return None
        verdict = Verdict(**data)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(verdict.runtime, str) or not isinstance(verdict.per_image_s, dict):
        return None
    return verdict


def save_verdict(cache: Path, key: str, verdict: Verdict) -> None:
    """Write the verdict atomically; a cache that cannot be written only costs a probe next time."""
    from explain_cli.errors import ExplainError
    from explain_cli.fileio import atomic_write_bytes

    path = verdict_path(cache, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps({"key": key, **asdict(verdict)}, indent=1, sort_keys=True).encode())
    except (OSError, ExplainError):
        pass


@contextlib.contextmanager
def verdict_lock(cache: Path, key: str) -> Iterator[None]:
    """Hold an exclusive lock on one verdict while it is measured (POSIX ``flock``; elsewhere, no lock).

    A cache that cannot be written is not locked: each run then measures, as before.
    """
    try:
        import fcntl
    except ImportError:  # Windows: concurrent first runs may each measure; the last verdict written wins
        yield
        return
    path = Path(cache) / f"verdict-{key[:32]}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lookup_verdict(model: "LoadedModel", shape: tuple[int, ...], batch_size: int, cache: Path | None = None) -> Verdict | None:
    """This machine's cached verdict for ``model`` on inputs of ``shape`` (C, H, W), or None; never measures."""
    from explain_cli.models.fingerprint import graph_fingerprint
    from explain_cli.models.onnx_cache import cache_dir

    if model.kind == "onnx":
        return None
    fingerprint = graph_fingerprint(model)
    if fingerprint is None:
        return None
    return load_verdict(cache or cache_dir(), verdict_key(fingerprint, tuple(shape), batch_size, model.device))

