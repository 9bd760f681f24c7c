"""Model loading: TorchScript files, or torchvision architectures plus a state dict.

Nothing here unpickles user data: TorchScript is loaded by ``torch.jit.load`` (no pickle
execution of arbitrary classes), state dicts with ``weights_only=True``.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from explain_cli.errors import ExplainError
from explain_cli.fileio import require_file, sha256_file
from explain_cli.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

if TYPE_CHECKING:
    import torch

#: Name of the optional JSON metadata file embedded in a TorchScript archive
#: (``torch.jit.save(m, path, _extra_files={METADATA_FILE: json})``): labels, preprocessing, channels.
METADATA_FILE = "explain_cli.json"
TORCHVISION_PREFIX = "torchvision:"


@dataclass
class LoadedModel:
    """A model ready for evaluation, with what the JSON records about it."""

    module: "torch.nn.Module"
    source: str  # the MODEL argument as given
    kind: str  # 'torchscript' or 'torchvision'
    sha256: str | None  # of the TorchScript file or the weights file; None for random weights
    weights: str | None  # weights file, 'DEFAULT', or None (random initialisation)
    device: "torch.device"
    labels: list[str] | None = None
    preprocess: Preprocess | None = None  # the model's own preprocessing, if it declares one
    in_channels: int | None = None  # image channels the model takes, if known
    metadata: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "source": self.source,
            "kind": self.kind,
            "sha256": self.sha256,
            "weights": self.weights,
            "device": str(self.device),
        }


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
        raise ExplainError(f"unknown --device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ExplainError("--device cuda: no CUDA GPU is available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ExplainError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ExplainError("--device mps: Apple MPS is not available here; use --device cpu or auto")
    elif device.type != "cpu":
        raise ExplainError(f"unsupported --device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def load_model(source: str, *, weights: str | None = None, device: str = "auto", seed: int = 0) -> LoadedModel:
    """Load MODEL: a TorchScript file or ``torchvision:ARCH``.

    Raises
    ------
    ExplainError
        For a missing or unreadable file, a pickle, an unknown architecture, or weights that do not fit.
    """
    dev = resolve_device(device)
    if source.startswith(TORCHVISION_PREFIX):
        model = _load_torchvision(source, source[len(TORCHVISION_PREFIX) :], weights, dev, seed)
    else:
        if weights is not None:
            raise ExplainError(
                "--weights applies to torchvision:ARCH models only; a TorchScript file carries its own weights"
            )
        model = _load_torchscript(Path(source), dev)
    model.module.eval()
    return model


def _archive_names(path: Path) -> list[str] | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def _load_torchscript(path: Path, device: "torch.device") -> LoadedModel:
    import torch

    require_file(path, "model file", "pass a TorchScript file or torchvision:ARCH")
    names = _archive_names(path)
    if names is None:
        raise ExplainError(
            f"model file {path} is not a TorchScript archive; export your model with "
            "torch.jit.script(model).save(PATH), or pass torchvision:ARCH --weights STATE_DICT"
        )
    # A TorchScript archive holds compiled code; torch.save archives (pickles) do not.
    if not any("/code/" in n for n in names):
        _refuse_pickle(path)
    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            # torch>=2.10 marks TorchScript deprecated; it is still the pickle-free format we accept.
            warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=FutureWarning)
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError with long C++ traces
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExplainError(f"cannot load TorchScript model {path}: {first}") from None
    metadata: dict = {}
    if extra[METADATA_FILE]:
        try:
            metadata = json.loads(extra[METADATA_FILE])
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ExplainError(f"model {path}: embedded {METADATA_FILE} is not valid JSON") from None
    return LoadedModel(
        module=module,
        source=str(path),
        kind="torchscript",
        sha256=sha256_file(path),
        weights=None,
        device=device,
        labels=metadata.get("labels"),
        preprocess=Preprocess.from_dict(metadata["preprocess"]) if metadata.get("preprocess") else None,
        in_channels=metadata.get("in_channels"),
        metadata=metadata,
    )


def _refuse_pickle(path: Path) -> None:
    """Explain why a torch.save archive is not accepted as MODEL, and what to pass instead."""
    import pickle

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError):
        raise ExplainError(
            f"model file {path} is a pickled Python object, which can run arbitrary code, so it is refused; "
            "export it with torch.jit.script(model).save(PATH), or save model.state_dict() and pass "
            "torchvision:ARCH --weights FILE"
        ) from None
    if isinstance(obj, dict):
        raise ExplainError(
            f"model file {path} is a state dict (weights only), not a model; pass the architecture too: "
            f"explain run torchvision:ARCH --weights {path}"
        )
    raise ExplainError(f"model file {path} holds a {type(obj).__name__}, not a TorchScript model")


def _load_torchvision(
    source: str, arch: str, weights: str | None, device: "torch.device", seed: int
) -> LoadedModel:
    import torch
    import torchvision

    available = sorted(torchvision.models.list_models(module=torchvision.models))
    if arch not in available:
        import difflib

        close = difflib.get_close_matches(arch, available, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ExplainError(
            f"unknown torchvision architecture {arch!r}; {hint}`explain info --models` lists all {len(available)}"
        )
    try:
        default_weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, AttributeError):
        default_weights = None
    labels = (list(default_weights.meta.get("categories") or []) or None) if default_weights else None
    preprocess = _preprocess_from_weights(default_weights)

    sha = None
    if weights is None:
        # Random initialisation, reproducible from --seed; useful for benchmarks and tests only.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = torchvision.models.get_model(arch, weights=None)
    elif weights.upper() == "DEFAULT":
        if default_weights is None:
            raise ExplainError(f"torchvision has no pretrained weights for {arch}; pass --weights FILE")
        module = torchvision.models.get_model(arch, weights=None)
        state = _download_weights(default_weights, arch)
        module.load_state_dict(state)
        weights = f"DEFAULT ({default_weights})"
    else:
        path = Path(weights)
        state = _read_state_dict(path)
        num_classes = _num_classes(state)
        module = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        if labels is not None and len(labels) != num_classes:
            labels = None  # a fine-tuned head: ImageNet names no longer apply
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            problem = " ".join(str(exc).split())
            raise ExplainError(
                f"weights {path} do not fit torchvision:{arch}: {problem[:300]}; check the architecture name"
            ) from None
        sha = sha256_file(path)
    return LoadedModel(
        module=module.to(device),
        source=source,
        kind="torchvision",
        sha256=sha,
        weights=weights,
        device=device,
        labels=labels,
        preprocess=preprocess,
        in_channels=3,
    )


def _preprocess_from_weights(weights: object) -> Preprocess | None:
    """The transforms a torchvision weights enum declares (read from metadata; nothing is downloaded)."""
    if weights is None:
        return None
    try:
        t = weights.transforms()
        crop, resize = list(t.crop_size), list(t.resize_size)
        return Preprocess(
            "model",
            resize=int(resize[0]),
            crop=(int(crop[0]), int(crop[-1])),
            mean=tuple(float(v) for v in t.mean),
            std=tuple(float(v) for v in t.std),
        )
    except (AttributeError, TypeError, IndexError):
        return Preprocess("model", resize=256, crop=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _download_weights(default_weights: object, arch: str) -> dict:
    """Fetch torchvision's pretrained weights through torch.hub (cached); offline is a clear error."""
    import torch

    url = default_weights.url
    try:
        return torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True, weights_only=True)
    except OSError as exc:  # URLError, socket errors and HTTP errors are all OSErrors
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise ExplainError(
            f"cannot download pretrained weights for {arch} from {url} ({getattr(exc, 'reason', exc)}); "
            f"when offline, fetch that file elsewhere and put it in {cache}, or pass --weights FILE"
        ) from None


def _read_state_dict(path: Path) -> dict:
    import pickle

    import torch

    require_file(path, "weights file", "pass a state dict saved with torch.save(model.state_dict(), PATH)")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError) as exc:
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text:
            raise ExplainError(
                f"weights file {path} is a pickled object, not a plain state dict; it is refused because "
                "unpickling can run code. Save it with torch.save(model.state_dict(), PATH)"
            ) from None
        raise ExplainError(f"cannot read weights file {path}: not a torch.save file") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # common checkpoint layout
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise ExplainError(f"weights file {path} does not hold a state dict (name -> tensor)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _num_classes(state: dict) -> int:
    """Infer the classifier width from the last 2-D weight, so fine-tuned heads load."""
    matrices = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    return int(matrices[-1].shape[0]) if matrices else 1000
