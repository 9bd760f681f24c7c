"""Runtimes: what runs the forward passes of a loaded model.

* ``eager``: the module as loaded.
* ``compile``: ``torch.compile`` of the module (compiles on the first batch; worth it for long runs).
* ``onnxruntime``: ONNX files always; a torch model on CPU is exported to ONNX once, cached under
  ``$XDG_CACHE_HOME/explain_cli/onnx/`` keyed by the model's weights and input shape, and used
  only if its outputs match eager on a probe batch.
* ``auto``: ONNX files run on onnxruntime. Otherwise the applicable candidates (eager,
  eager with channels-last inputs for convolutional models, and on CPU the verified ONNX
  export) are timed on a small probe batch, interleaved, and the fastest wins; the timings
  are kept in ``notes``.

Every candidate must agree with eager to ``MATCH_RTOL`` (relative to the largest output), so
results never depend on the runtime beyond float rounding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from explain_cli.errors import ExplainError, OptionError, install_hint, one_line, require_module
from explain_cli.models.base import LoadedModel

if TYPE_CHECKING:
    import torch

RUNTIMES = ("auto", "eager", "compile", "onnxruntime")
MATCH_RTOL = 1e-4  # max |runtime - eager| / max(1, max |eager|) accepted on the probe batch
PROBE_BATCH = 4  # rows in the probe batch used for matching and timing
ONNX_OPSET = 18


def cache_dir() -> Path:
    """Where exported ONNX graphs are cached: ``$XDG_CACHE_HOME/explain_cli/onnx`` (or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "explain_cli" / "onnx"


class ChannelsLast:
    """Feeds the module channels-last inputs; convolutions then pick NHWC kernels.

    The caller's module is not converted (``module.to(memory_format=...)`` would change it in
    place); PyTorch chooses the NHWC path from the input's layout alone.
    """

    def __init__(self, module: Callable) -> None:
        self.module = module

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor":
        import torch

        return self.module(x.contiguous(memory_format=torch.channels_last))


def select_runtime(
    model: LoadedModel,
    example: "torch.Tensor",
    runtime: str = "auto",
    *,
    cache: Path | None = None,
) -> LoadedModel:
    """Return ``model`` with the module that runs ``runtime`` (resolved, for ``auto``).

    Call once per model and input shape, after preprocessing.

    Parameters
    ----------
    model : LoadedModel
        As returned by ``load_model`` (or built around a live module).
    example : (C, H, W) or (B, C, H, W) tensor
        A model input on ``model.device``; only its shape and values for the probe are used.
    runtime : str
        ``auto``, ``eager``, ``compile`` or ``onnxruntime``.
    cache : Path, optional
        Folder for exported ONNX graphs; default :func:`cache_dir`.

    Returns
    -------
    LoadedModel
        A copy with ``module``, ``runtime`` and ``notes`` set; ``model`` itself is unchanged.

    Raises
    ------
    OptionError
        For an unknown runtime, or one that cannot run this model (the reason in one line).
    """
    import torch

    if runtime not in RUNTIMES:
        raise OptionError("runtime", f"must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    probe = _probe_batch(example, model.device)
    if model.kind == "onnx" or model.runtime == "onnxruntime":
        if runtime in ("eager", "compile"):
            raise OptionError("runtime", f"{runtime} needs a torch model; an ONNX model runs on onnxruntime (use auto)")
        return model
    with torch.inference_mode():
        reference = _as_tensor(model.module(probe.clone()))  # a copy: a model may write into its input
    if runtime == "eager":
        return dataclasses.replace(model, runtime="eager")
    if runtime == "compile":
        module = _compiled(model.module, probe, reference)
        return dataclasses.replace(model, module=module, runtime="compile")
    if runtime == "onnxruntime":
        runner, problem = _onnx_candidate(model, probe, reference, cache)
        if runner is None:
            raise OptionError("runtime", f"onnxruntime cannot run this model: {problem}; use `runtime` eager or auto")
        return dataclasses.replace(model, module=runner, runtime="onnxruntime")

    # auto: time the applicable candidates and keep the fastest.
    notes = list(model.notes)
    candidates: dict[str, Callable] = {"eager": model.module}
    if _has_conv(model.module):
        cl = ChannelsLast(model.module)
        if _matches(cl, probe, reference):
            candidates["eager+channels_last"] = cl
    if model.device.type == "cpu":
        runner, problem = _onnx_candidate(model, probe, reference, cache)
        if runner is not None:
            candidates["onnxruntime"] = runner
        elif problem:
            notes.append(f"runtime auto: onnxruntime not used ({problem}); running eager")
    timings = _time_interleaved(candidates, probe)
    best = min(timings, key=timings.get)
    if len(candidates) > 1:
        per_image = ", ".join(f"{k} {v / len(probe) * 1e3:.2f} ms" for k, v in sorted(timings.items(), key=lambda kv: kv[1]))
        notes.append(f"runtime auto chose {best} (per image on the probe: {per_image})")
    return dataclasses.replace(model, module=candidates[best], runtime=best, notes=notes)


def _probe_batch(example: "torch.Tensor", device: "torch.device") -> "torch.Tensor":
    import torch

    x = (example if example.dim() == 4 else example.unsqueeze(0)).to(device)
    # Rows differ slightly so a graph that mixes rows (a batch-norm in train mode) would show.
    scale = 1.0 + 0.05 * torch.arange(PROBE_BATCH, dtype=x.dtype, device=device).view(-1, 1, 1, 1)
    return (x[:1] * scale).contiguous()


def _as_tensor(out: Any) -> "torch.Tensor":
    if isinstance(out, (tuple, list)):
        out = out[0]  # (logits, aux) as the Evaluator reads it
    return out.float().reshape(out.shape[0], -1)


def _matches(fn: Callable, probe: "torch.Tensor", reference: "torch.Tensor") -> bool:
    return _mismatch(fn, probe, reference) is None


def _mismatch(fn: Callable, probe: "torch.Tensor", reference: "torch.Tensor") -> str | None:
    """None when ``fn`` reproduces the eager outputs to ``MATCH_RTOL``; else what differs."""
    import torch

    with torch.inference_mode():
        out = _as_tensor(fn(probe.clone())).to(reference.device)  # a copy: the probe serves every candidate
    if out.shape != reference.shape:
        return f"output shape {list(out.shape)} differs from eager {list(reference.shape)}"
    diff = float((out - reference).abs().max())
    bound = MATCH_RTOL * max(1.0, float(reference.abs().max()))
    return None if diff <= bound else f"outputs differ from eager by {diff:.2e} (allowed {bound:.1e})"


def _has_conv(module: Any) -> bool:
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        return any(m.original_name.startswith("Conv") for m in module.modules())
    return isinstance(module, torch.nn.Module) and any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules())


def _time_interleaved(candidates: dict[str, Callable], probe: "torch.Tensor", rounds: int = 3) -> dict[str, float]:
    """Median seconds per probe batch of each candidate, rounds interleaved so drift hits all alike."""
    import torch

    if len(candidates) == 1:
        return {name: 0.0 for name in candidates}
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.inference_mode():
        for fn in candidates.values():
            fn(probe.clone())  # warm-up: allocations, kernel selection, lazy initialisation
        for _ in range(rounds):
            for name, fn in candidates.items():
                batch = probe.clone()  # a model may write into its input; each call gets its own
                start = time.perf_counter()
                fn(batch)
                if probe.device.type == "cuda":
                    torch.cuda.synchronize(probe.device)
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in samples.items()}


def _compiled(module: Callable, probe: "torch.Tensor", reference: "torch.Tensor") -> Callable:
    import torch

    try:
        compiled = torch.compile(module)
        problem = _mismatch(compiled, probe, reference)  # the first call compiles
    except Exception as exc:  # inductor needs a C++ compiler on CPU; errors are long
        raise OptionError("runtime", f"compile failed: {one_line(exc)[:160]}; use `runtime` eager") from None
    if problem:
        raise OptionError("runtime", f"compile changed the results ({problem}); use `runtime` eager")
    return compiled


# --------------------------------------------------------------------------- ONNX export


def model_fingerprint(model: LoadedModel) -> str | None:
    """A hash naming the model's weights: the file's sha256, else a hash of its tensors."""
    import torch

    digest = hashlib.sha256()
    digest.update(f"{model.kind}|{model.source}|{model.weights}|{torch.__version__}|{ONNX_OPSET}".encode())
    if model.sha256:
        digest.update(model.sha256.encode())
        return digest.hexdigest()
    if not isinstance(model.module, torch.nn.Module):
        return None
    for name, tensor in model.module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def export_onnx_cached(model: LoadedModel, shape: tuple[int, ...], cache: Path | None = None) -> Path:
    """The ONNX export of ``model`` for inputs of ``shape`` (batch axis dynamic), from the cache if there.

    Raises
    ------
    ExplainError
        If the model cannot be exported.
    """
    fingerprint = model_fingerprint(model)
    if fingerprint is None:
        raise ExplainError("the model is not an nn.Module, so it cannot be exported to ONNX")
    folder = Path(cache) if cache is not None else cache_dir()
    path = folder / f"{fingerprint[:32]}-{'x'.join(str(s) for s in shape[1:])}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    data = export_onnx_bytes(model.module, shape)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic: a concurrent run sees the whole file or none
    return path


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


def _onnx_candidate(model: LoadedModel, probe: "torch.Tensor", reference: "torch.Tensor", cache: Path | None):
    """(runner, None) for a verified ONNX export, else (None, why not)."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return None, f"onnx/onnxruntime not installed: {install_hint('onnx')}"
    from explain_cli.models.onnx import OnnxRunner, make_session

    try:
        path = export_onnx_cached(model, tuple(probe.shape), cache)
        runner = OnnxRunner(make_session(path, model.device), model.device)
        problem = _mismatch(runner, probe, reference)
    except ExplainError as exc:
        return None, str(exc)
    except Exception as exc:  # onnxruntime rejecting the exported graph
        return None, f"onnxruntime rejected the export: {one_line(exc)[:160]}"
    return (None, problem) if problem else (runner, None)
