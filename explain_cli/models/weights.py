"""Weights files for architecture-by-name models: a weights-only state dict or ``.safetensors``.

Neither path executes a pickle: ``torch.load(weights_only=True)`` admits only tensors and
plain containers, and safetensors is a JSON header followed by raw bytes.
"""

from __future__ import annotations

import contextlib
import struct
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from explain_cli.errors import ExplainError, OptionError, one_line, require_module, suggest
from explain_cli.fileio import require_file, sha256_file

if TYPE_CHECKING:
    import torch

WEIGHTS_HINT = "pass a state dict saved with torch.save(model.state_dict(), PATH) or a .safetensors file"
#: Largest safetensors header accepted (bytes): the safetensors library's own limit.
MAX_SAFETENSORS_HEADER = 100_000_000


def _safetensors_head(path: Path) -> tuple[int, int | None, bytes]:
    """The safetensors layout's first bytes: the file's size, the 8-byte little-endian header length n
    (None in a file too short for it) and the header's first byte (``{`` for a JSON object)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return size, None, b""
    return size, struct.unpack("<Q", head[:8])[0], head[8:9]


def is_safetensors(path: Path) -> bool:
    """Sniff the safetensors layout: an 8-byte little-endian header length, then a JSON object."""
    try:
        size, n, first = _safetensors_head(path)
    except OSError:
        return False
    return n is not None and 2 <= n <= size - 8 and first == b"{"


def read_state_dict(path: Path) -> dict[str, "torch.Tensor"]:
    """Tensors by name from a weights file, ``module.`` prefixes (DataParallel) removed.

    Raises
    ------
    ExplainError
        If the file is missing, a pickle of anything but tensors, or holds no state dict.
    """
    require_file(path, "weights file", WEIGHTS_HINT)
    # torch.load hands a .safetensors name to safetensors itself, so the name decides too
    safetensors = path.suffix.lower() == ".safetensors" or is_safetensors(path)
    state = _read_safetensors(path) if safetensors else _read_torch(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # common training-checkpoint layout
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict) and len(state) < 8:
        state = state["model"]  # timm / DeiT checkpoint layout
    if not isinstance(state, dict) or not state or not all(hasattr(v, "shape") for v in state.values()):
        raise ExplainError(f"weights file {path} does not hold a state dict (name -> tensor); {WEIGHTS_HINT}")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _read_torch(path: Path) -> object:
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notices; the outcome is what matters
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except MemoryError:
        raise ExplainError(f"weights file {path} does not fit in memory") from None
    except Exception as exc:  # noqa: BLE001 - pickle, zip and storage errors of every kind: a bad file
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text:
            raise ExplainError(
                f"weights file {path} is a pickled object, not a plain state dict; it is refused because "
                "unpickling can run code. Save it with torch.save(model.state_dict(), PATH)"
            ) from None
        raise ExplainError(f"cannot read weights file {path}: not a torch.save or .safetensors file") from None


def check_safetensors_header(path: Path) -> None:
    """Refuse a file that is not safetensors from its first bytes, before the library reads it.

    The layout is an 8-byte little-endian header length n, then n bytes of a JSON object, then
    the tensors' bytes; n must fit in the file and under `MAX_SAFETENSORS_HEADER`.

    Raises
    ------
    ExplainError
        ``weights file W is not a valid safetensors file (its header ...); pass ...``.
    """
    def refuse(why: str) -> ExplainError:
        return ExplainError(f"weights file {path} is not a valid safetensors file ({why}); {WEIGHTS_HINT}")

    try:
        size, n, first = _safetensors_head(path)
    except OSError as exc:
        raise ExplainError(f"weights file {path} cannot be read: {exc.strerror or exc}") from None
    if n is None:
        raise refuse(f"{size} bytes, too short for a header")
    if n > min(size - 8, MAX_SAFETENSORS_HEADER):
        raise refuse(f"its header claims {n:,} bytes in a file of {size:,}")
    if first != b"{":
        raise refuse("its header is not a JSON object")


def _read_safetensors(path: Path) -> dict:
    check_safetensors_header(path)
    load_file = require_module("safetensors.torch", f"weights file {path} is in safetensors format, which needs the "
                               "safetensors package", "safetensors").load_file
    try:
        return load_file(str(path), device="cpu")
    except MemoryError:
        raise ExplainError(f"weights file {path} does not fit in memory") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError, OSError, ...
        raise ExplainError(f"weights file {path} is not a valid safetensors file ({one_line(str(exc))[:200]}); "
                           f"{WEIGHTS_HINT}") from None


def head_width(state: dict, head: str | None) -> int | None:
    """The classifier width in ``state``: the output size of ``HEAD.weight``, so fine-tuned heads load.

    ``head`` names the classifier's parameter prefix (``fc``, ``classifier.1``); key order
    cannot be trusted to find it, since safetensors stores tensors sorted by name.
    """
    weight = state.get(f"{head}.weight") if head else None
    return int(weight.shape[0]) if weight is not None and weight.dim() >= 1 else None


def download_weights(default_weights: object, arch: str) -> dict:
    """Fetch torchvision's pretrained weights through torch.hub (cached); offline is a clear error."""
    import torch

    url = default_weights.url
    try:
        # torch.hub prints "Downloading: ..." on stdout even with progress=False; stdout belongs
        # to scripts (paths, JSON lines), so that chatter goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            return torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True, weights_only=True)
    except OSError as exc:  # URLError, socket errors and HTTP errors are all OSErrors
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise ExplainError(
            f"cannot download pretrained weights for {arch} from {url} ({getattr(exc, 'reason', exc)}); "
            f"when offline, fetch that file elsewhere and put it in {cache}, or pass `weights` FILE"
        ) from None


def load_state_checked(model: Any, state: dict, arch_name: str, weights: str | None) -> None:
    """Load a torchvision state dict strictly but for BatchNorm counters (frozen-BN weights lack them).

    A mismatch is one line naming the architecture (detectors and segmenters share the rule).
    """
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        problem = " ".join(str(exc).split())
        raise ExplainError(f"weights {weights} do not fit torchvision:{arch_name}: {problem[:300]}; "
                           "check the architecture name") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ExplainError(f"weights {weights} do not fit torchvision:{arch_name}: {detail}; "
                           "check the architecture name")


@dataclass(frozen=True)
class WeightsChoice:
    """What a torchvision architecture's ``weights`` resolved to (one rule for classifiers, detectors, segmenters)."""

    state: dict[str, "torch.Tensor"] | None  # None: random initialisation, reproducible from the seed
    label: str | None  # what the JSON's ``model.weights`` records: the file, or DEFAULT and its enum
    sha256: str | None  # a weights file's digest

    @property
    def from_file(self) -> bool:
        """The user's file (its head may be fine-tuned to other classes)."""
        return self.sha256 is not None


def choose_weights(arch: str, weights: str | None, default_weights: Any | None) -> WeightsChoice:
    """Read ``weights``: None (random), ``DEFAULT`` (torchvision's, downloaded and cached) or a file.

    Raises
    ------
    OptionError
        DEFAULT for an architecture torchvision has no pretrained weights for.
    ExplainError
        A file that is missing or not a plain state dict, or DEFAULT while offline.
    """
    if weights is None:
        return WeightsChoice(None, None, None)
    if weights.upper() == "DEFAULT":
        if default_weights is None:
            raise OptionError("weights", f"DEFAULT: torchvision has no pretrained weights for {arch}; pass `weights` FILE")
        return WeightsChoice(download_weights(default_weights, arch), f"DEFAULT ({default_weights})", None)
    path = Path(weights)
    state = read_state_dict(path)
    return WeightsChoice(state, weights, sha256_file(path))


def unknown_name(what: str, name: str, known: Iterable[str], tail: str) -> ExplainError:
    """``unknown WHAT 'NAME'; did you mean ...? TAIL``: the error for an architecture name not in ``known``
    (``what``: ``torchvision detector``, ``timm model``, ...)."""
    hint = suggest(name, list(known), n=3)
    return ExplainError(f"unknown {what} {name!r}; {hint + ' ' if hint else ''}{tail}")
