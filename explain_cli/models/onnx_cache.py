"""The ONNX export cache: a torch model exported once per graph and input shape, checked on every load.

An entry is ``KEY-CxHxW.onnx`` with ``KEY-CxHxW.onnx.sha256`` beside it. ``KEY`` hashes what
defines the graph (:func:`~explain_cli.models.fingerprint.graph_fingerprint`: code, plain
attributes, weights) and the exporter's versions, so an edited module never meets an old
export. Every load checks the file against its recorded sha256 and the session's outputs
against eager on the probe batch; an entry failing either is rebuilt once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from explain_cli.errors import ExplainError, install_hint, one_line
from explain_cli.models.base import LoadedModel

if TYPE_CHECKING:
    import torch

MATCH_RTOL = 1e-4  # max |runtime - eager| / max(1, max |eager|) accepted on the probe batch


def cache_dir() -> Path:
    """Where exports and runtime verdicts live: ``$XDG_CACHE_HOME/explain_cli/onnx`` (or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "explain_cli" / "onnx"


def version(package: str) -> str | None:
    """An installed distribution's version, or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def onnx_available() -> bool:
    """Both onnx (the exporter needs it) and onnxruntime are importable."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def export_key(fingerprint: str) -> str:
    """The cache key of an export: the graph's fingerprint and everything the exporter's output depends on."""
    from explain_cli.models.export import ONNX_OPSET

    tools = "|".join(f"{p} {version(p)}" for p in ("torch", "onnx", "onnxscript"))
    return hashlib.sha256(f"{fingerprint}|{tools}|opset {ONNX_OPSET}".encode()).hexdigest()


def deviation(fn: Callable, probe: "torch.Tensor", reference: "torch.Tensor") -> tuple[float, str | None]:
    """(max |fn(probe) - reference|, None when within ``MATCH_RTOL``, else what differs)."""
    import torch

    with torch.inference_mode():
        out = fn(probe.clone())  # a copy: the probe serves every candidate
    out = (out[0] if isinstance(out, (tuple, list)) else out).float().reshape(len(probe), -1).to(reference.device)
    if out.shape != reference.shape:
        return float("inf"), f"output shape {list(out.shape)} differs from eager {list(reference.shape)}"
    diff = float((out - reference).abs().max())
    bound = MATCH_RTOL * max(1.0, float(reference.abs().max()))
    return diff, (None if diff <= bound else f"outputs differ from eager by {diff:.2e} (allowed {bound:.1e})")


def cached_onnx(model: LoadedModel, probe: "torch.Tensor", reference: "torch.Tensor", cache: Path | None = None,
                *, fingerprint: str | None = None, on_info: Callable[[str], Any] | None = None) -> "OnnxEntry":
    """The verified onnxruntime runner for ``model`` on inputs shaped like ``probe``, exporting once.

    A cached entry is used only when its bytes match their recorded sha256 and its outputs
    match ``reference`` (eager on ``probe``); otherwise it is rebuilt, once.

    Returns
    -------
    OnnxEntry
        ``runner`` None with ``problem`` saying why when the model cannot run on onnxruntime.
    """
    from explain_cli.models.fingerprint import graph_fingerprint

    if not onnx_available():
        return OnnxEntry(None, f"onnx/onnxruntime not installed: {install_hint('onnx')}")
    fingerprint = fingerprint or graph_fingerprint(model)
    if fingerprint is None:
        return OnnxEntry(None, "the model is not an nn.Module, so it cannot be exported to ONNX")
    folder = Path(cache) if cache is not None else cache_dir()
    path = folder / f"{export_key(fingerprint)[:32]}-{'x'.join(str(s) for s in probe.shape[1:])}.onnx"
    if path.is_file():
        entry = _load_checked(path, model, probe, reference)
        if entry.runner is not None:
            return entry
        if on_info is not None:
            on_info(f"rebuilding the cached ONNX export {path.name} ({entry.problem})")
    try:
        _write_export(model, tuple(probe.shape), path)
    except ExplainError as exc:
        return OnnxEntry(None, str(exc))
    entry = _load_checked(path, model, probe, reference)
    if entry.runner is None:
        _remove(path)  # an export that disagrees with eager is no use to a later run either
    return entry


class OnnxEntry:
    """A checked cache entry: its runner, the file's sha256 and the probe's deviation; or why not."""

    def __init__(self, runner: Any, problem: str | None, sha256: str | None = None, diff: float | None = None) -> None:
        self.runner, self.problem, self.sha256, self.diff = runner, problem, sha256, diff


def _load_checked(path: Path, model: LoadedModel, probe: "torch.Tensor", reference: "torch.Tensor") -> OnnxEntry:
    from explain_cli.models.onnx import OnnxRunner, make_session

    try:
        data = path.read_bytes()
        recorded = _sidecar(path).read_text().strip()
    except OSError as exc:
        return OnnxEntry(None, f"cannot read it: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    if sha != recorded:
        return OnnxEntry(None, "its bytes do not match the recorded sha256")
    try:
        runner = OnnxRunner(make_session(data, model.device), model.device)
        diff, problem = deviation(runner, probe, reference)
    except ExplainError as exc:
        return OnnxEntry(None, str(exc))
    except Exception as exc:  # onnxruntime rejecting the graph
        return OnnxEntry(None, f"onnxruntime rejected the export: {one_line(exc)[:160]}")
    return OnnxEntry(None if problem else runner, problem, sha, diff)


def _write_export(model: LoadedModel, shape: tuple[int, ...], path: Path) -> None:
    from explain_cli.fileio import atomic_write_bytes
    from explain_cli.models.export import export_onnx_bytes

    data = export_onnx_bytes(model.module, shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The sidecar first: a reader that sees the new export also sees its hash (a race costs a rebuild).
    atomic_write_bytes(_sidecar(path), hashlib.sha256(data).hexdigest().encode())
    atomic_write_bytes(path, data)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _remove(path: Path) -> None:
    for p in (path, _sidecar(path)):
        try:
            p.unlink()
        except OSError:
            pass
