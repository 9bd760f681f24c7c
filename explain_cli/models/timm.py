"""``timm:NAME``: a timm architecture plus weights (optional extra ``timm``).

Weights come from ``--weights FILE`` (safetensors or a weights-only state dict), ``DEFAULT``
(timm's pretrained tag through the Hugging Face cache), or nothing: random weights, with a
note saying the outputs mean nothing.
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explain_cli.errors import ExplainError, one_line, require_module
from explain_cli.fileio import sha256_file
from explain_cli.models.base import TIMM_PREFIX, LoadedModel
from explain_cli.models.labels import imagenet_labels
from explain_cli.models.weights import head_width, read_state_dict, unknown_name
from explain_cli.preprocess import INTERPOLATIONS, Preprocess

if TYPE_CHECKING:
    import torch

RANDOM_WEIGHTS_NOTE = "random weights (no --weights given): outputs are meaningless; use for tests and benchmarks only"


def require_timm() -> Any:
    """Import timm or say in one line how to install it."""
    return require_module("timm", "timm:NAME models need the timm package", "timm")


def load_timm(source: str, weights: str | None, device: "torch.device", seed: int) -> LoadedModel:
    """Build ``timm:NAME`` with weights from a file, ``DEFAULT`` (HF cache), or random.

    Raises
    ------
    ExplainError
        Unknown name (with suggestions), weights that do not fit, or DEFAULT weights offline.
    """
    import torch

    timm = require_timm()
    name = source[len(TIMM_PREFIX) :]
    if not timm.is_model(name):
        raise unknown_name("timm model", name, timm.list_models(), "timm.list_models('*PATTERN*') lists them")

    sha, notes = None, []
    if weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = timm.create_model(name, pretrained=False)
        notes.append(RANDOM_WEIGHTS_NOTE)
    elif weights.upper() == "DEFAULT":
        module = _pretrained(timm, name)
        weights = f"DEFAULT ({module.pretrained_cfg.get('hf_hub_id') or name})"
    else:
        path = Path(weights)
        state = read_state_dict(path)
        # timm's pretrained config names the classifier (e.g. 'fc', 'head.fc').
        classifier = timm.models.get_pretrained_cfg_value(name, "classifier")
        classes = head_width(state, classifier if isinstance(classifier, str) else None)
        kwargs = {"num_classes": classes} if classes else {}
        module = timm.create_model(name, pretrained=False, **kwargs)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            problem = one_line(str(exc))
            raise ExplainError(f"weights {path} do not fit timm:{name}: {problem[:300]}; check the model name") from None
        sha = sha256_file(path)
    module.eval()
    preprocess, approximations = _preprocess(timm, module)
    return LoadedModel(
        module=module.to(device),
        source=source,
        kind="timm",
        sha256=sha,
        weights=weights,
        device=device,
        labels=_labels(module),
        preprocess=preprocess,
        in_channels=int(getattr(module, "in_chans", 3) or 3),
        notes=notes + approximations,
    )


#: Seconds to reach the Hugging Face Hub before deciding it is offline (its own retries take a minute).
HUB_CONNECT_TIMEOUT_S = 3.0


def _hub_unreachable(name: str) -> str | None:
    """Why the Hub cannot serve ``name``'s pretrained weights now, or None (cached, offline mode, or reachable).

    Uncached weights need the Hub; without a network huggingface_hub retries for about a minute
    and prints each try, so its host is tried once, quickly, first.
    """
    import os
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants, try_to_load_from_cache
        from timm.models import get_pretrained_cfg
    except ImportError:
        return None
    cfg = get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None)
    if not repo or os.environ.get("HF_HUB_OFFLINE") or getattr(constants, "HF_HUB_OFFLINE", False):
        return None
    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in ("model.safetensors", "pytorch_model.bin")):
        return None
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443),
                                 timeout=HUB_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        return f"{url.hostname} unreachable: {one_line(exc)}"
    return None


def _pretrained(timm: Any, name: str) -> "torch.nn.Module":
    """timm's default pretrained weights; offline and not cached is one line naming the cache, within seconds."""
    try:
        reason = _hub_unreachable(name)
        if reason is not None:
            raise OSError(reason)
        # huggingface_hub and timm may print progress or notices; stdout belongs to scripts.
        with contextlib.redirect_stdout(sys.stderr):
            return timm.create_model(name, pretrained=True)
    except (OSError, RuntimeError) as exc:  # LocalEntryNotFoundError is an OSError
        try:
            from huggingface_hub import constants

            cache = constants.HF_HUB_CACHE
        except ImportError:
            cache = "~/.cache/huggingface/hub"
        raise ExplainError(
            f"cannot fetch pretrained weights for timm:{name} ({one_line(exc)[:120]}); when offline, "
            f"populate the Hugging Face cache {cache} elsewhere (or set HF_HUB_OFFLINE=1 with a filled cache), "
            "or pass `weights` FILE (.safetensors or state dict)"
        ) from None


def _labels(module: "torch.nn.Module") -> list[str] | None:
    """Class names from the pretrained config's dataset (ImageNet-1k, -21k, -12k), if the head fits."""
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(module)
    except (ImportError, AttributeError, KeyError, ValueError):
        return None
    n = getattr(module, "num_classes", None)
    if subset is None or n is None:
        return None
    if subset in ("imagenet-1k", "imagenet1k") and n == 1000:
        return imagenet_labels()  # the same short names torchvision models report
    info = ImageNetInfo(subset)
    if info.num_classes() != n:
        return None
    # Descriptions are "tench, Tinca tinca": the first lemma is the usual short name.
    return [d.split(",")[0].strip() for d in info.label_descriptions()]


def _preprocess(timm: Any, module: "torch.nn.Module") -> tuple[Preprocess, list[str]]:
    """timm's eval transform for ``resolve_data_config``, and notes where it is only approximated.

    As ``transforms_imagenet_eval``: ``center`` resizes the shorter side to floor(size / crop_pct)
    and centre-crops; ``squash`` resizes each side to floor(side / crop_pct) and centre-crops.
    ``border`` (pad to fit) and non-square ``center`` (scale to cover) become plain ``center``.
    """
    from timm.data import DEFAULT_CROP_PCT, resolve_data_config

    cfg = resolve_data_config({}, model=module)
    _, h, w = (int(v) for v in cfg["input_size"])
    crop_pct = float(cfg.get("crop_pct") or DEFAULT_CROP_PCT)
    mode = cfg.get("crop_mode") or "center"
    interpolation = cfg.get("interpolation") or "bilinear"
    notes = []
    if interpolation not in INTERPOLATIONS:
        notes.append(f"timm's {interpolation} resizing is not available for tensors; bicubic is used")
        interpolation = "bicubic"
    squash = mode == "squash"
    if not squash and (mode != "center" or h != w):
        notes.append(f"timm's {mode} crop for a {h}x{w} input is approximated by a centre crop "
                     "after resizing the shorter side")
    preprocess = Preprocess(
        "model",
        resize=None if squash else math.floor(min(h, w) / crop_pct),
        size=(math.floor(h / crop_pct), math.floor(w / crop_pct)) if squash else None,
        crop=(h, w),
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        interpolation=interpolation,
    )
    return preprocess, notes
