"""Files a Ray worker needs to load a model, and where it writes them, for clusters without a shared disk.

A model is usually one file; an ONNX model may keep its weights in *external data* files beside
it, named in the model by paths relative to its folder. :func:`model_files` lists them all so
the driver ships them together, and :func:`write_copies` lays them out again, under the same
relative names, in a temp folder on the worker. Only names inside the model's folder are shipped
or written: onnxruntime refuses the others locally, and a worker must never write outside its
folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Callable


def model_files(path: Path) -> list[tuple[str, Path]]:
    """``(relative name, path)`` of the model file, then of each external data file an ONNX model names.

    A file that is not ONNX, or that cannot be parsed (onnx missing, a corrupt file), is shipped
    alone: the worker's loader then reports it as the local backend would.
    """
    path = Path(path)
    files = [(path.name, path)]
    try:
        from explain_cli.models.onnx import is_onnx

        with open(path, "rb") as fh:
            if not is_onnx(fh.read(16), path):
                return files
        import onnx
        from onnx import external_data_helper as helper

        proto = onnx.load(str(path), load_external_data=False)
        tensors = helper._get_all_tensors(proto)  # initializers, and tensors in attributes and subgraphs
        locations = {helper.ExternalDataInfo(t).location for t in tensors if helper.uses_external_data(t)}
    except Exception:  # not readable here, or not a model onnx can parse: the worker's load says why
        return files
    folder = path.parent
    for location in sorted(locations):
        name = safe_name(location)
        if name is not None and (folder / name).is_file():
            files.append((name, folder / name))
    return files


def safe_name(location: str) -> str | None:
    """``location`` as a relative POSIX name inside its folder, or None (absolute, ``..``, empty)."""
    parts = PurePosixPath(location.replace("\\", "/")).parts
    if not parts or location.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", location) or ".." in parts:
        return None
    return "/".join(p for p in parts if p != ".") or None


def write_copies(folder: Path, files: list[tuple[str, str, bytes]], rename: Callable[[str, str], None]) -> Path:
    """Write shipped ``(name, original path, bytes)`` under ``folder``; the first is the model, whose copy is returned.

    ``rename(copy, original)`` records each copy (error messages name the driver's files). Names
    that would land outside ``folder`` are skipped, whatever a hostile model names.
    """
    root = Path(os.path.realpath(folder))
    written: list[Path] = []
    for name, original, data in files:
        safe = safe_name(name)
        target = root / safe if safe is not None else None
        if target is None or not os.path.realpath(target).startswith(str(root) + os.sep):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        rename(str(target), original)
        written.append(target)
    if not written:
        raise ValueError(f"no file to write for {files[0][1] if files else 'the model'}")
    return written[0]
