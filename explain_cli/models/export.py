"""Write a loaded model as a torch.export ``.pt2`` or an ONNX file, metadata embedded.

The embedded ``explain_cli.json`` (labels, channels, preprocessing) lets ``explain run`` use
the file without ``--labels`` or ``--size``; a model built without weights is exported with a
warning and ``random_weights: true``, which loading the file turns back into a warning. Files
are written atomically.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from explain_cli.errors import ExplainError, one_line, warn_user
from explain_cli.fileio import atomic_write_bytes
from explain_cli.models.base import METADATA_FILE, LoadedModel, validate_metadata
from explain_cli.models.runtime import export_onnx_bytes

if TYPE_CHECKING:
    import torch

EXPORT_SUFFIXES = (".pt2", ".onnx")


def export_metadata(model: LoadedModel, labels: list[str] | None = None) -> dict:
    """The explain_cli.json to embed: the model's own metadata, updated with what it knows now."""
    meta = dict(model.metadata)
    labels = labels if labels is not None else model.labels
    if labels is not None:
        meta["labels"] = list(labels)
    if model.in_channels is not None:
        meta["in_channels"] = int(model.in_channels)
    if model.preprocess is not None:
        meta["preprocess"] = {k: v for k, v in model.preprocess.to_dict().items() if v is not None and k != "name"}
    meta.setdefault("exported_from", Path(model.source).name)  # a name, not a local path
    if random_weights(model):
        meta["random_weights"] = True  # so that explaining the exported file warns too
    return validate_metadata(meta, f"model {model.source}")


def random_weights(model: LoadedModel) -> bool:
    """Whether ``model`` runs on random weights: an architecture built without any, or a file exported from one."""
    return (model.kind in ("torchvision", "timm") and model.weights is None) or model.metadata.get("random_weights") is True


def export_model(
    model: LoadedModel,
    out_path: str | Path,
    *,
    example_shape: tuple[int, ...],
    labels: list[str] | None = None,
) -> Path:
    """Export ``model`` to ``out_path`` (``.pt2`` or ``.onnx``, chosen by suffix).

    Parameters
    ----------
    model : LoadedModel
        Its ``module`` must be an ``nn.Module``; ONNX also accepts a TorchScript module.
    out_path : str or Path
        Destination; written through a temp file and renamed.
    example_shape : (C, H, W) or (B, C, H, W)
        The input shape to trace with; the batch axis is exported as dynamic.
    labels : list of str, optional
        Class names to embed (default: the model's own).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ExplainError
        For an unknown suffix, a model that cannot be exported, or mismatched labels.
    """
    import torch

    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise ExplainError(f"cannot export to {out}: the file name must end in .pt2 or .onnx")
    shape = tuple(int(s) for s in example_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or min(shape) < 1:
        raise ExplainError(f"example shape {list(example_shape)} is not (C, H, W) or (B, C, H, W) of positive sizes")
    meta = export_metadata(model, labels)
    if meta.get("random_weights"):
        warn_user(f"exporting random weights: {model.source} was built without `weights`, so {out.name} explains "
                  "nothing real; pass `weights` FILE or DEFAULT (the file records random_weights: true)")
    module = model.module
    if not isinstance(module, torch.nn.Module):
        raise ExplainError(f"model {model.source} runs on {model.runtime}, not torch; only torch models can be exported")
    if suffix == ".onnx":
        data = export_onnx_bytes(module, shape, {METADATA_FILE: json.dumps(meta)})
    else:
        if isinstance(module, torch.jit.ScriptModule):
            raise ExplainError(
                f"model {model.source} is TorchScript, which torch.export cannot trace; rebuild the nn.Module, "
                "load the TorchScript's state_dict() into it and export that (or export to .onnx)"
            )
        data = _pt2_bytes(module, shape, meta, model.device)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)
    return out


def _pt2_bytes(module: "torch.nn.Module", shape: tuple[int, ...], meta: dict, device: "torch.device") -> bytes:
    import torch

    # Batch 2 for tracing: a size-1 dimension would be specialised to 1 by torch.export.
    example = torch.zeros((max(2, shape[0]),) + shape[1:], device=device)
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:
        raise ExplainError(f"torch.export could not trace the model: {one_line(exc)[:200]}") from None
    # The sample inputs are stored as a tensor pickle; a one-row example keeps the file small.
    program.example_inputs = ((example[:1].cpu().clone(),), {})  # clone: a view would save both rows
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={METADATA_FILE: json.dumps(meta)})
    return buffer.getvalue()
