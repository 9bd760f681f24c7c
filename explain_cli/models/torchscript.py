"""TorchScript archives (``torch.jit.save``): compiled code plus tensors, no Python pickles.

``torch.jit.load`` rebuilds modules from TorchScript source and restores tensors through its
own restricted unpickler, which cannot import arbitrary Python callables.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from explain_cli.errors import ExplainError, one_line
from explain_cli.fileio import sha256_file
from explain_cli.models.base import METADATA_FILE, LoadedModel, metadata_fields, parse_metadata

if TYPE_CHECKING:
    import torch


def is_torchscript(names: list[str]) -> bool:
    """A TorchScript archive holds compiled code (``ROOT/code/...``); a torch.save pickle does not."""
    return any("/code/" in n for n in names)


def load_torchscript(path: Path, device: "torch.device") -> LoadedModel:
    """Load a TorchScript file and its embedded ``explain_cli.json``.

    Raises
    ------
    ExplainError
        If torch cannot load it, or the embedded metadata is malformed.
    """
    import torch

    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            # torch>=2.10 marks TorchScript deprecated; it is still a pickle-free format we accept.
            warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=FutureWarning)
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError with long C++ traces
        raise ExplainError(f"cannot load TorchScript model {path}: {one_line(exc)}") from None
    metadata = parse_metadata(extra[METADATA_FILE], f"model {path}")
    module.eval()
    return LoadedModel(
        module=module,
        source=str(path),
        kind="torchscript",
        sha256=sha256_file(path),
        weights=None,
        device=device,
        metadata=metadata,
        **metadata_fields(metadata),
    )


def refuse_torch_save(path: Path) -> None:
    """Explain why a torch.save archive is not accepted as MODEL, and what to pass instead.

    The archive is opened with ``weights_only=True`` only to tell a state dict from a pickled
    module; a pickle of anything else is refused without being executed.
    """
    import pickle

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notices; the refusal says what matters
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError):
        raise ExplainError(
            f"model file {path} is a pickled Python object, which can run arbitrary code, so it is refused; "
            "export it with torch.export.save (.pt2), torch.onnx.export (.onnx) or torch.jit.script(model).save(PATH), "
            "or save model.state_dict() and pass torchvision:ARCH with `weights` FILE"
        ) from None
    if isinstance(obj, dict):
        raise ExplainError(
            f"model file {path} is a state dict (weights only), not a model; pass the architecture too: "
            f"torchvision:ARCH with `weights` {path} (or timm:NAME with `weights` {path})"
        )
    raise ExplainError(f"model file {path} holds a {type(obj).__name__}, not a model; export it to .pt2, .onnx or TorchScript")
