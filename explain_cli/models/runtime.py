"""Runtimes: what runs the forward passes of a loaded model.

* ``eager``: the module as loaded.
* ``compile``: ``torch.compile`` of the module (compiles on the first batch; worth it for long runs).
* ``onnxruntime``: ONNX files always; a torch model on CPU is exported to ONNX once, cached
  (:mod:`~explain_cli.models.onnx_cache`, keyed on what defines the graph) and used only if
  its outputs match eager on a probe batch, checked on every load.
* ``auto`` (the default): ONNX files run on onnxruntime. Otherwise the cached verdict
  (:mod:`~explain_cli.models.verdict`) for this model, shape, batch size, device, libraries
  and CPU names the runtime; without one the candidates (eager, eager with channels-last
  inputs for convolutional models, and on CPU the verified ONNX export) are timed once,
  interleaved, and the verdict is stored. Without the ``onnx`` extra ``auto`` runs eager.

Every candidate must agree with eager to ``MATCH_RTOL`` (relative to the largest output), so
results never depend on the runtime beyond float rounding. The choice is information for the
user (``on_info``), never a warning, and the result records only the runtime's name.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from explain_cli.errors import OptionError, install_hint, one_line
from explain_cli.models.base import LoadedModel
from explain_cli.models.onnx_cache import MATCH_RTOL, cache_dir, cached_onnx, deviation, onnx_available
from explain_cli.models.verdict import Verdict, load_verdict, save_verdict, verdict_key, verdict_lock

if TYPE_CHECKING:
    import torch

RUNTIMES = ("auto", "eager", "compile", "onnxruntime")
PROBE_BATCH = 2  # rows in the probe batch used for matching (two, so a graph that mixes rows shows)
TIMING_ROWS = 8  # rows in each timed batch (fewer when the batch size is smaller)
TIMING_BUDGET_S = 3.0  # timing rounds stop once they have taken this long (after the first round)
CHEAP_S = 5e-4  # seconds per image (a warm call) under which eager is kept: no export could pay for itself
MARGIN = 1.05  # a candidate must beat eager by this factor to replace it (timing noise)
NO_ONNX_HINT = f"onnxruntime usually runs CPU models 1.5-4× faster than eager: {install_hint('onnx')}"

__all__ = ["RUNTIMES", "MATCH_RTOL", "ChannelsLast", "cache_dir", "select_runtime"]


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
    batch_size: int | None = None,
    on_info: Callable[[str], Any] | None = None,
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
        Folder for exports and verdicts; default :func:`cache_dir`.
    batch_size : int, optional
        Rows per forward pass in the run; part of the verdict's key (default ``PROBE_BATCH``).
    on_info : callable, optional
        Hears one-line information: the probe starting and its verdict, a rebuilt export, the
        hint to install the ``onnx`` extra.

    Returns
    -------
    LoadedModel
        A copy with ``module`` and ``runtime`` set; ``model`` itself is unchanged.

    Raises
    ------
    OptionError
        For an unknown runtime, or one that cannot run this model (the reason in one line).
    """
    import torch

    if runtime not in RUNTIMES:
        raise OptionError("runtime", f"must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if model.kind == "onnx" or model.runtime == "onnxruntime":
        if runtime in ("eager", "compile"):
            raise OptionError("runtime", f"{runtime} needs a torch model; an ONNX model runs on onnxruntime (use auto)")
        return model
    if runtime == "eager":
        return dataclasses.replace(model, runtime="eager")
    folder = Path(cache) if cache is not None else cache_dir()
    if runtime == "auto" and model.device.type == "cpu" and not onnx_available():
        _hint_once(folder, on_info)
        return dataclasses.replace(model, runtime="eager")
    probe = _probe_batch(example, model.device)
    try:
        with torch.inference_mode():
            reference = _as_tensor(model.module(probe.clone()))  # a copy: a model may write into its input
    except Exception:  # the model fails on this input: the Evaluator's first call says why, in one line
        return dataclasses.replace(model, runtime="eager")
    if runtime == "compile":
        module = _compiled(model.module, probe, reference)
        return dataclasses.replace(model, module=module, runtime="compile")
    if runtime == "onnxruntime":
        entry = cached_onnx(model, probe, reference, folder, on_info=on_info)
        if entry.runner is None:
            raise OptionError("runtime", f"onnxruntime cannot run this model: {entry.problem}; use `runtime` eager or auto")
        return dataclasses.replace(model, module=entry.runner, runtime="onnxruntime")
    return _auto(model, probe, reference, folder, batch_size or PROBE_BATCH, on_info)


def _auto(model: LoadedModel, probe: "torch.Tensor", reference: "torch.Tensor", cache: Path,
          batch_size: int, on_info: Callable[[str], Any] | None) -> LoadedModel:
    """The cached verdict's runtime; without a verdict, time the candidates once and store one.

    A model whose warm eager call costs under ``CHEAP_S`` per image gets an eager verdict,
    silently and without an export (stored, so a model near the line does not flip between runs).
    """
    from explain_cli.models.fingerprint import graph_fingerprint

    tell = on_info or (lambda message: None)
    fingerprint = graph_fingerprint(model)
    if fingerprint is None:  # a plain callable: nothing else can run it
        return dataclasses.replace(model, runtime="eager")
    key = verdict_key(fingerprint, tuple(probe.shape[1:]), batch_size, model.device)
    verdict = load_verdict(cache, key)
    if verdict is not None:
        module = _build(verdict.runtime, model, probe, reference, cache, fingerprint, tell)
        if module is not None:
            return dataclasses.replace(model, module=module, runtime=verdict.runtime)
        tell(f"the cached runtime verdict ({verdict.runtime}) no longer applies; measuring again")
    with verdict_lock(cache, key):  # concurrent runs (make -j, Ray workers): one measures, the others reuse
        again = load_verdict(cache, key)
        if verdict is None and again is not None:
            module = _build(again.runtime, model, probe, reference, cache, fingerprint, tell)
            if module is not None:
                return dataclasses.replace(model, module=module, runtime=again.runtime)
        warm_s = _warm_cost(model.module, probe)
        if warm_s < CHEAP_S:
            # No batched time is measured, so the long-run estimate times the run's first batches instead.
            save_verdict(cache, key, Verdict("eager", f"{warm_s * 1e3:.2g} ms per image, under {CHEAP_S * 1e3:.1f}: "
                                             "nothing to gain", {}, len(probe), {"eager": 0.0}))
            return dataclasses.replace(model, runtime="eager")
        tell("choosing the fastest runtime for this model (once; later runs reuse the choice)…")
        verdict, candidates = _measure(model, probe, reference, cache, fingerprint, batch_size, tell)
        save_verdict(cache, key, verdict)
    tell(f"runtime: {verdict.summary()}")
    return dataclasses.replace(model, module=candidates[verdict.runtime], runtime=verdict.runtime)


def _build(name: str, model: LoadedModel, probe: "torch.Tensor", reference: "torch.Tensor", cache: Path,
           fingerprint: str, tell: Callable[[str], Any]) -> Callable | None:
    """The verdict's runtime for ``model``, or None when it cannot be built any more."""
    if name == "eager":
        return model.module
    if name == "eager+channels_last":
        return ChannelsLast(model.module)
    if name == "onnxruntime" and model.device.type == "cpu":
        return cached_onnx(model, probe, reference, cache, fingerprint=fingerprint, on_info=tell).runner
    return None


def _measure(model: LoadedModel, probe: "torch.Tensor", reference: "torch.Tensor", cache: Path, fingerprint: str,
             batch_size: int, tell: Callable[[str], Any]) -> tuple[Verdict, dict[str, Callable]]:
    """Time every applicable candidate that matches eager; the verdict and the candidates built."""
    candidates: dict[str, Callable] = {"eager": model.module}
    deviations = {"eager": 0.0}
    rows = max(1, min(batch_size, TIMING_ROWS))
    batch = probe.repeat((rows + len(probe) - 1) // len(probe), 1, 1, 1)[:rows].contiguous()
    notes = []
    onnx_sha = None
    if _has_conv(model.module):
        diff, problem = deviation(ChannelsLast(model.module), probe, reference)
        if problem is None:
            candidates["eager+channels_last"], deviations["eager+channels_last"] = ChannelsLast(model.module), diff
    if model.device.type == "cpu":
        entry = cached_onnx(model, probe, reference, cache, fingerprint=fingerprint, on_info=tell)
        if entry.runner is not None:
            candidates["onnxruntime"], deviations["onnxruntime"], onnx_sha = entry.runner, entry.diff or 0.0, entry.sha256
        else:
            notes.append(f"onnxruntime not used: {entry.problem}")
    # Every candidate has just run on the probe (the reference, the deviation checks): warm enough.
    timings = {k: v / rows for k, v in _time_interleaved(candidates, batch, warm_up=False).items()}
    best = min(timings, key=lambda k: timings[k])
    if timings[best] * MARGIN > timings["eager"]:
        best = "eager"
    reason = "; ".join(["fastest measured" if len(candidates) > 1 else "the only candidate", *notes])
    verdict = Verdict(best, reason, timings, rows, deviations, onnx_sha if best == "onnxruntime" else None)
    return verdict, candidates


def _warm_cost(module: Callable, probe: "torch.Tensor") -> float:
    """Eager's seconds per image on the probe: the least of up to 3 warm calls (a loaded machine's
    scheduler can stretch any one), stopping at once for a model far above ``CHEAP_S``."""
    import torch

    best = float("inf")
    with torch.inference_mode():
        for _ in range(3):
            x = probe.clone()
            start = time.perf_counter()
            module(x)
            best = min(best, (time.perf_counter() - start) / len(probe))
            if best < CHEAP_S or best > 20 * CHEAP_S:
                break
    return best


def _hint_once(cache: Path, on_info: Callable[[str], Any] | None) -> None:
    """The hint to install the onnx extra, the first time this cache runs without it."""
    marker = cache / "hinted-onnx-extra"
    if on_info is None or marker.exists():
        return
    on_info(NO_ONNX_HINT)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # a read-only cache: the hint shows again next time


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


def _has_conv(module: Any) -> bool:
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        return any(m.original_name.startswith("Conv") for m in module.modules())
    return isinstance(module, torch.nn.Module) and any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules())


def _time_interleaved(candidates: dict[str, Callable], batch: "torch.Tensor", rounds: int = 3,
                      warm_up: bool = True) -> dict[str, float]:
    """Median seconds per batch of each candidate, rounds interleaved so drift hits all alike.

    One warm-up call each first (unless ``warm_up`` is False); rounds stop early once
    ``TIMING_BUDGET_S`` is spent.
    """
    import torch

    samples: dict[str, list[float]] = {name: [] for name in candidates}
    started = time.perf_counter()
    with torch.inference_mode():
        for fn in candidates.values() if warm_up else ():
            fn(batch.clone())  # warm-up: allocations, kernel selection, lazy initialisation
        for _ in range(rounds):
            for name, fn in candidates.items():
                x = batch.clone()  # a model may write into its input; each call gets its own
                start = time.perf_counter()
                fn(x)
                if batch.device.type == "cuda":
                    torch.cuda.synchronize(batch.device)
                samples[name].append(time.perf_counter() - start)
            if time.perf_counter() - started > TIMING_BUDGET_S:
                break
    return {name: statistics.median(v) for name, v in samples.items()}


def _compiled(module: Callable, probe: "torch.Tensor", reference: "torch.Tensor") -> Callable:
    import torch

    try:
        compiled = torch.compile(module)
        _, problem = deviation(compiled, probe, reference)  # the first call compiles
    except Exception as exc:  # inductor needs a C++ compiler on CPU; errors are long
        raise OptionError("runtime", f"compile failed: {one_line(exc)[:160]}; use `runtime` eager") from None
    if problem:
        raise OptionError("runtime", f"compile changed the results ({problem}); use `runtime` eager")
    return compiled
