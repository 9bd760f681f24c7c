"""What every model loader returns (:class:`LoadedModel`), device choice, and metadata checks.

Embedded metadata is the ``explain_cli.json`` document a model file may carry (a TorchScript
extra file, an ONNX ``metadata_props`` entry, a ``.pt2`` extra file)::

    {"labels": ["circle", ...], "in_channels": 3, "task": "classification",
     "preprocess": {"size": [64, 64], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}

``task`` (default ``classification``) is what the outputs are; it is the ``task`` option's default.

It is validated like a config file: a bad value is a one-line error naming the file and the key.
Sizes obey the ``size`` option's bound (:data:`MAX_SIDE` a side), and the document its own
bounds (:data:`MAX_METADATA_BYTES`, no nesting Python's parser cannot take), so a model file
cannot ask for more work than a command line could.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from explain_cli.errors import ExplainError, OptionError
from explain_cli.options.parse import MAX_SIDE
from explain_cli.preprocess import INTERPOLATIONS, Preprocess

if TYPE_CHECKING:
    import torch

#: Name of the optional JSON metadata embedded in a model file (TorchScript ``_extra_files``,
#: ``.pt2`` ``extra_files``, ONNX ``metadata_props`` key): labels, preprocessing, channels.
METADATA_FILE = "explain_cli.json"
TORCHVISION_PREFIX = "torchvision:"
TIMM_PREFIX = "timm:"
#: Largest embedded metadata document (bytes): 100,000 labels of 40 characters fit.
MAX_METADATA_BYTES = 4 * 2**20
#: Most channels a model may declare (``in_channels``).
MAX_CHANNELS = 4096
#: The note a model file exported from random weights (``random_weights: true``) carries.
RANDOM_FILE_NOTE = ("random weights: this file was exported from an architecture without trained weights "
                    "(random_weights in its metadata); its outputs are meaningless")
#: What a model file may declare as its ``task`` (the names of :data:`explain_cli.tasks.TASKS`,
#: spelt out here: the loaders know no task; a test keeps the two in step).
MODEL_TASKS = ("classification", "detection", "segmentation", "similarity")


@dataclass
class LoadedModel:
    """A model ready for evaluation, with what the JSON records about it.

    ``module`` is any callable mapping a batch ``(B, C, H, W)`` float tensor on ``device`` to
    scores ``(B, n_outputs)``: an ``nn.Module``, a TorchScript module, or an onnxruntime
    wrapper. Fields after ``metadata`` have defaults, so callers may build one directly
    around a live ``nn.Module``.
    """

    module: Callable[["torch.Tensor"], "torch.Tensor"]
    source: str  # the MODEL argument as given
    kind: str  # 'torchscript', 'pt2', 'onnx', 'torchvision', 'timm' (or what a caller sets)
    sha256: str | None  # of the model file or the weights file; None for random weights
    weights: str | None  # weights file, 'DEFAULT', or None (random initialisation / embedded)
    device: "torch.device"
    labels: list[str] | None = None
    preprocess: Preprocess | None = None  # the model's own preprocessing, if it declares one
    in_channels: int | None = None  # image channels the model takes, if known
    metadata: dict = field(default_factory=dict)
    runtime: str = "eager"  # what runs the forward passes: eager, eager+channels_last, compile, onnxruntime
    notes: list[str] = field(default_factory=list)  # warnings for the user (random weights, fallbacks)
    task: str = "classification"  # what the outputs are (explain_cli.tasks): 'detection' for detectors
    labels_from: str | None = None  # where `labels` came from, when the model did not declare them itself

    def describe(self) -> dict:
        """What the result JSON records about the model."""
        info = {
            "source": self.source,
            "kind": self.kind,
            "sha256": self.sha256,
            "weights": self.weights,
            "device": str(self.device),
            "runtime": self.runtime,
        }
        if self.task != "classification":
            info["task"] = self.task
        if self.notes:
            info["notes"] = list(self.notes)
        if self.labels_from:
            info["labels_from"] = self.labels_from
        return info


def resolve_device(name: str = "auto") -> "torch.device":
    """``auto`` picks CUDA, then MPS, then CPU; an unavailable device is a usage error."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError("device", f"{name!r} is unknown; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError("device", "cuda: no CUDA GPU is available here; use `device` cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionError("device", f"{name}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise OptionError("device", "mps: Apple MPS is not available here; use `device` cpu or auto")
    elif device.type != "cpu":
        raise OptionError("device", f"{name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device


# --------------------------------------------------------------------------- metadata


def parse_metadata(text: str | bytes | None, origin: str) -> dict:
    """Decode and validate an embedded ``explain_cli.json``; empty or missing gives ``{}``.

    Parameters
    ----------
    text : str, bytes or None
        The document as stored in the model file.
    origin : str
        How errors name it, e.g. ``"model m.pt"``; the key path follows.

    Raises
    ------
    ExplainError
        ``model m.pt: explain_cli.json: preprocess.std: must be positive, got [0, 0, 0]``.
    """
    if text is None or (isinstance(text, (str, bytes)) and not text.strip()):
        return {}
    if len(text) > MAX_METADATA_BYTES:
        raise ExplainError(f"{origin}: embedded {METADATA_FILE} is {len(text):,} bytes, over the "
                           f"{MAX_METADATA_BYTES:,}-byte limit; re-export the model with labels and preprocessing only")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExplainError(
            f"{origin}: embedded {METADATA_FILE} is not valid JSON ({getattr(exc, 'msg', exc)}); "
            "re-export the model with a json.dumps(...) document"
        ) from None
    except RecursionError:  # thousands of nested brackets: no document of ours nests more than 3 deep
        raise ExplainError(f"{origin}: embedded {METADATA_FILE} is nested too deeply to be metadata; re-export the "
                           "model with a json.dumps(...) document of labels and preprocessing") from None
    return validate_metadata(data, origin)


def validate_metadata(data: Any, origin: str) -> dict:
    """Check the known keys of a metadata dict and return a normalised copy.

    ``size`` and ``crop`` given as one int become ``[n, n]``; unknown keys are kept as they
    are (they are recorded, never interpreted).
    """
    where = f"{origin}: {METADATA_FILE}"
    if not isinstance(data, dict):
        raise ExplainError(f"{where}: must be a JSON object, got {type(data).__name__}")
    out = dict(data)
    if "labels" in data and data["labels"] is not None:
        labels = data["labels"]
        if not isinstance(labels, list) or not labels or not all(isinstance(v, str) for v in labels):
            raise ExplainError(f"{where}: labels: must be a non-empty list of strings, got {_short(labels)}")
    if "in_channels" in data and data["in_channels"] is not None:
        if not _positive_int(data["in_channels"]):
            raise ExplainError(f"{where}: in_channels: must be a positive integer, got {_short(data['in_channels'])}")
        if data["in_channels"] > MAX_CHANNELS:
            raise ExplainError(f"{where}: in_channels: must be at most {MAX_CHANNELS}, got {_short(data['in_channels'])}")
    if data.get("task") is not None and data["task"] not in MODEL_TASKS:
        raise ExplainError(f"{where}: task: must be one of {', '.join(MODEL_TASKS)}, got {_short(data['task'])}")
    pre = data.get("preprocess")
    if pre is not None:
        if not isinstance(pre, dict):
            raise ExplainError(f"{where}: preprocess: must be an object, got {_short(pre)}")
        out["preprocess"] = _validate_preprocess(pre, where)
    return out


def _validate_preprocess(pre: dict, where: str) -> dict:
    out = dict(pre)
    for key in ("size", "crop"):
        value = pre.get(key)
        if value is None:
            continue
        pair = [value, value] if _positive_int(value) else value
        if not (isinstance(pair, list) and len(pair) in (1, 2) and all(_positive_int(v) for v in pair)):
            raise ExplainError(f"{where}: preprocess.{key}: must be a positive int or [H, W] of positive ints, got {_short(value)}")
        if max(pair) > MAX_SIDE:  # the `size` option's bound: a model file may not ask for more
            raise ExplainError(f"{where}: preprocess.{key}: must be at most {MAX_SIDE} pixels a side, got {_short(value)}")
        out[key] = pair * 2 if len(pair) == 1 else pair
    if pre.get("resize") is not None and not _positive_int(pre["resize"]):
        raise ExplainError(f"{where}: preprocess.resize: must be a positive integer, got {_short(pre['resize'])}")
    if pre.get("resize") is not None and pre["resize"] > MAX_SIDE:
        raise ExplainError(f"{where}: preprocess.resize: must be at most {MAX_SIDE} pixels, got {_short(pre['resize'])}")
    for key in ("mean", "std"):
        value = pre.get(key)
        if value is None:
            continue
        if not (isinstance(value, list) and value and all(_finite(v) for v in value)):
            raise ExplainError(f"{where}: preprocess.{key}: must be a non-empty list of finite numbers, got {_short(value)}")
        if key == "std" and any(v <= 0 for v in value):
            raise ExplainError(f"{where}: preprocess.std: must be positive, got {_short(value)}")
    if pre.get("interpolation") is not None and pre["interpolation"] not in INTERPOLATIONS:
        raise ExplainError(f"{where}: preprocess.interpolation: must be one of {', '.join(INTERPOLATIONS)}, "
                           f"got {_short(pre['interpolation'])}")
    return out


def metadata_fields(metadata: dict) -> dict:
    """The LoadedModel fields a validated metadata dict provides: notes, labels, preprocess, in_channels, task."""
    pre = metadata.get("preprocess")
    return {
        "notes": [RANDOM_FILE_NOTE] if metadata.get("random_weights") is True else [],
        "labels": list(metadata["labels"]) if metadata.get("labels") else None,
        "preprocess": Preprocess.from_dict(pre) if pre else None,
        "in_channels": metadata.get("in_channels"),
        "task": metadata.get("task") or "classification",
    }


def _positive_int(value: Any) -> bool:
    # bool is an int subclass; `true` is not a channel count.
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
