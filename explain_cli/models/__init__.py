"""Model loading: a table of formats, detection by content, and :func:`load_model`.

Formats: TorchScript, torch.export ``.pt2``, ONNX (onnxruntime), ``torchvision:ARCH`` and
``timm:NAME`` with weights. None ever unpickles anything but plain tensors: see each module.
"""

from __future__ import annotations

import importlib.util
import zipfile
from dataclasses import dataclass
from pathlib import Path

from explain_cli.errors import ExplainError, OptionError, install_hint
from explain_cli.fileio import require_file
from explain_cli.models.base import (
    METADATA_FILE,
    TIMM_PREFIX,
    TORCHVISION_PREFIX,
    LoadedModel,
    parse_metadata,
    resolve_device,
    validate_metadata,
)
from explain_cli.models.runtime import RUNTIMES, select_runtime

__all__ = [
    "FORMATS",
    "METADATA_FILE",
    "RUNTIMES",
    "TIMM_PREFIX",
    "TORCHVISION_PREFIX",
    "LoadedModel",
    "Format",
    "detect_format",
    "formats",
    "load_model",
    "parse_metadata",
    "resolve_device",
    "select_runtime",
    "validate_metadata",
]

MODEL_HINT = "pass a .pt2, .onnx or TorchScript file, torchvision:ARCH or timm:NAME"


@dataclass(frozen=True)
class Format:
    """One model format, as ``explain info --models`` lists it."""

    name: str  # the LoadedModel.kind it produces
    example: str  # how MODEL looks on the command line
    description: str
    needs: tuple[str, ...]  # Python packages beyond the core dependencies
    extra: str | None  # the pip extra that installs them

    def installed(self) -> bool:
        return all(importlib.util.find_spec(p) is not None for p in self.needs)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("pt2", "model.pt2", "torch.export archive (torch.export.save); pickled entries refused", (), None),
        Format("onnx", "model.onnx", "ONNX graph run by onnxruntime; metadata_props explain_cli.json", ("onnxruntime",), "onnx"),
        Format("torchscript", "model.pt", "TorchScript archive (torch.jit.save); embedded explain_cli.json", (), None),
        Format("torchvision", "torchvision:resnet18", "torchvision architecture + --weights FILE|DEFAULT (.pth or .safetensors)", (), None),
        Format("timm", "timm:convnext_tiny", "timm architecture + --weights FILE|DEFAULT (.safetensors or .pth)", ("timm",), "timm"),
        Format("safetensors", "--weights w.safetensors", "safetensors weights for torchvision:/timm: architectures", ("safetensors",), "safetensors"),
    )
}


def formats() -> list[dict]:
    """Each format: example, description, what it needs installed and whether it is (for ``explain info``)."""
    return [
        {
            "format": f.name,
            "example": f.example,
            "description": f.description,
            "needs": list(f.needs),
            "install": install_hint(f.extra) if f.extra else None,
            "installed": f.installed(),
        }
        for f in FORMATS.values()
    ]


def detect_format(source: str) -> str:
    """The format of MODEL: by prefix for architectures, by content for files.

    Raises
    ------
    ExplainError
        For a missing, empty or unrecognised file; a torch.save pickle is explained and refused.
    """
    if source.startswith(TORCHVISION_PREFIX):
        return "torchvision"
    if source.startswith(TIMM_PREFIX):
        return "timm"
    path = Path(source)
    require_file(path, "model file", MODEL_HINT)
    from explain_cli.models import onnx, pt2, torchscript

    with open(path, "rb") as fh:
        head = fh.read(16)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                if pt2.is_pt2(archive):
                    return "pt2"
                if torchscript.is_torchscript(archive.namelist()):
                    return "torchscript"
        except (zipfile.BadZipFile, OSError):
            pass
        # A zip without compiled code or a torch.export layout: a torch.save pickle archive.
        torchscript.refuse_torch_save(path)
    if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
        torchscript.refuse_torch_save(path)  # legacy (non-zip) torch.save pickle
    if onnx.is_onnx(head, path):
        return "onnx"
    raise ExplainError(
        f"model file {path} is not a TorchScript archive, a torch.export .pt2 or an ONNX file; "
        "export your model with torch.export.save (.pt2), torch.onnx.export (.onnx) or "
        "torch.jit.script(model).save(PATH), or pass torchvision:ARCH with `weights` STATE_DICT"
    )


def load_model(
    source: str,
    *,
    weights: str | None = None,
    device: str = "auto",
    seed: int = 0,
) -> LoadedModel:
    """Load MODEL: a ``.pt2``, ``.onnx`` or TorchScript file, ``torchvision:ARCH`` or ``timm:NAME``.

    Parameters
    ----------
    source : str
        A model file (format detected by content) or an architecture name with its prefix.
    weights : str, optional
        For architectures only: a weights file (state dict or ``.safetensors``), ``DEFAULT``
        (pretrained, from the cache or downloaded), or None for random weights (noted loudly).
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    seed : int
        Seeds random initialisation, so random-weight models are reproducible.

    Returns
    -------
    LoadedModel
        In eval mode on ``device`` with runtime ``eager`` (``onnxruntime`` for ONNX files);
        call :func:`select_runtime` once the input shape is known to pick a faster one.

    Raises
    ------
    ExplainError
        For a missing or unreadable file, a pickle, an unknown architecture, weights that do
        not fit, malformed embedded metadata, or a missing optional package.
    """
    dev = resolve_device(device)
    kind = detect_format(source)
    if kind in ("torchvision", "timm"):
        if kind == "torchvision":
            from explain_cli.models.torchvision import load_torchvision as load_arch
        else:
            from explain_cli.models.timm import load_timm as load_arch
        return load_arch(source, weights, dev, seed)
    if weights is not None:
        raise OptionError(
            "weights", "applies to torchvision:ARCH and timm:NAME models only; a model file carries its own weights"
        )
    path = Path(source)
    if kind == "pt2":
        from explain_cli.models.pt2 import load_pt2

        return load_pt2(path, dev)
    if kind == "onnx":
        from explain_cli.models.onnx import load_onnx

        return load_onnx(path, dev)
    from explain_cli.models.torchscript import load_torchscript

    return load_torchscript(path, dev)
