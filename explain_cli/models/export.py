"""Write a loaded model as a torch.export ``.pt2`` or an ONNX file, metadata embedded.

The embedded ``explain_cli.json`` (labels, channels, preprocessing) lets ``explain run`` use
the file without ``--labels`` or ``--size``; a model built without weights is exported with a
warning and ``random_weights: true``, which loading the file turns back into a warning. Files
are written atomically.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explain_cli.errors import ExplainError, one_line, require_module, warn_user
from explain_cli.fileio import atomic_write_bytes
from explain_cli.models.base import METADATA_FILE, LoadedModel, validate_metadata

if TYPE_CHECKING:
    import torch

EXPORT_SUFFIXES = (".pt2", ".onnx")
ONNX_OPSET = 18


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


def export_onnx_bytes(module: Any, shape: tuple[int, ...], metadata: dict[str, str] | None = None) -> bytes:
    """Serialise ``module`` to ONNX with a dynamic batch axis; ``metadata`` goes to metadata_props.

    Uses the torch.export-based exporter for ``nn.Module`` and the TorchScript exporter for
    TorchScript modules (which torch.export cannot trace). Exporter chatter is kept off stdout.
    """
    import torch

    require_module("onnx", "exporting to ONNX needs the onnx package", "onnx")  # both exporters need it
    example = torch.zeros((max(2, shape[0]),) + tuple(shape[1:]))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")  # deprecation notices from the exporters
            if isinstance(module, torch.jit.ScriptModule):
                torch.onnx.export(module, (example,), buffer, dynamo=False, input_names=["input"],
                                  output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                                  opset_version=ONNX_OPSET)
            else:
                batch = torch.export.Dim("batch", min=1)
                program = torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                                            opset_version=ONNX_OPSET, verbose=False, optimize=True)
                program.save(buffer, external_data=False)
    except ExplainError:
        raise
    except Exception as exc:
        raise ExplainError(f"ONNX export failed: {one_line(exc)[:200]}") from None
    data = buffer.getvalue()
    if metadata:
        import onnx

        proto = onnx.load_from_string(data)
        for key, value in metadata.items():
            entry = next((p for p in proto.metadata_props if p.key == key), None) or proto.metadata_props.add()
            entry.key, entry.value = key, value
        data = proto.SerializeToString()
    return data
