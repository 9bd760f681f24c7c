"""ONNX models run by onnxruntime (optional extra ``onnx``).

An ONNX file is a protobuf: reading it never unpickles anything. Labels and preprocessing
come from the model's ``metadata_props`` entry ``explain_cli.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from explain_cli.errors import ExplainError, OptionError, one_line, require_module
from explain_cli.fileio import sha256_file
from explain_cli.models.base import METADATA_FILE, LoadedModel, metadata_fields, parse_metadata

if TYPE_CHECKING:
    import numpy as np
    import torch

def is_onnx(head: bytes, path: Path) -> bool:
    """An ONNX protobuf starts with field 1 (ir_version, a varint: byte 0x08); the suffix settles it.

    Protobuf has no magic number, so content alone cannot prove ONNX; a ``.onnx`` name, or a
    file starting with the ir_version tag that is not a zip, is tried as ONNX.
    """
    if path.suffix.lower() == ".onnx":
        return True
    return len(head) >= 2 and head[0] == 0x08 and 3 <= head[1] <= 15


def require_onnxruntime() -> Any:
    """Import onnxruntime or say in one line how to install it."""
    return require_module("onnxruntime", "running ONNX models needs onnxruntime", "onnx")


class OnnxRunner:
    """A batch callable over an onnxruntime session: torch tensor in, torch tensor out.

    A fixed batch axis (exported with batch size N) is served by running chunks of N rows and
    padding the last chunk with copies of its final row; the padding rows are dropped. A model
    with several outputs gives its first, except a detector's (one output named ``boxes``):
    then every output, as a ``{name: tensor}`` dict of padded batch tensors.
    """

    def __init__(self, session: Any, device: "torch.device") -> None:
        self.session = session
        self.device = device
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        dim0 = inp.shape[0] if inp.shape else None
        self.fixed_batch: int | None = dim0 if isinstance(dim0, int) and dim0 > 0 else None
        self.input_shape = list(inp.shape)
        names = [o.name for o in session.get_outputs()]
        self.output_names: list[str] | None = names if len(names) > 1 and "boxes" in names else None

    def _run(self, batch: "np.ndarray") -> list["np.ndarray"]:
        outputs = self.session.run(None, {self.input_name: batch})
        return outputs if self.output_names is not None else outputs[:1]

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor | dict[str, torch.Tensor]":
        import numpy as np
        import torch

        # onnxruntime works on float32 numpy arrays; autocast (fp16 on CUDA) does not apply.
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        n = self.fixed_batch
        if n is None or array.shape[0] == n:
            outs = self._run(array)
        else:
            parts = []
            for start in range(0, array.shape[0], n):
                chunk = array[start : start + n]
                rows = chunk.shape[0]
                if rows < n:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], n - rows, axis=0)])
                parts.append([out[:rows] for out in self._run(chunk)])
            outs = [np.concatenate(column) for column in zip(*parts)]
        tensors = [torch.from_numpy(np.ascontiguousarray(out)).to(x.device) for out in outs]
        return tensors[0] if self.output_names is None else dict(zip(self.output_names, tensors))

    def eval(self) -> "OnnxRunner":
        """No-op, so callers may treat the runner like an nn.Module."""
        return self


def providers_for(device: "torch.device") -> list[str]:
    """CPU by default; CUDA first (CPU as fallback for unsupported nodes) when the device is CUDA."""
    ort = require_onnxruntime()
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise OptionError(
                "device", "cuda with an ONNX model needs onnxruntime's CUDA provider: "
                "pip install onnxruntime-gpu, or use `device` cpu",
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(model: str | bytes | Path, device: "torch.device") -> Any:
    """An onnxruntime InferenceSession for a path or serialized model bytes."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: onnxruntime's warnings would flood stderr
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, sess_options=options, providers=providers_for(device))


def load_onnx(path: Path, device: "torch.device") -> LoadedModel:
    """Load an ONNX file into an onnxruntime session with its embedded metadata.

    Raises
    ------
    ExplainError
        If onnxruntime is missing or rejects the file, or the metadata is malformed.
    """
    require_onnxruntime()
    try:
        session = make_session(path, device)
    except ExplainError:
        raise
    except Exception as exc:  # onnxruntime raises InvalidGraph / Fail / RuntimeException
        raise ExplainError(f"cannot load ONNX model {path}: {one_line(exc)[:200]}; export it with torch.onnx.export") from None
    props = session.get_modelmeta().custom_metadata_map
    metadata = parse_metadata(props.get(METADATA_FILE), f"model {path}")
    runner = OnnxRunner(session, device)
    fields = metadata_fields(metadata)
    if fields["in_channels"] is None and len(runner.input_shape) == 4 and isinstance(runner.input_shape[1], int):
        fields["in_channels"] = runner.input_shape[1]
    return LoadedModel(
        module=runner,
        source=str(path),
        kind="onnx",
        sha256=sha256_file(path),
        weights=None,
        device=device,
        metadata=metadata,
        runtime="onnxruntime",
        **fields,
    )
