"""Class names: ImageNet's (shipped with torchvision, nothing downloaded) and label files."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from explain_cli.errors import ExplainError, OptionError

#: The name ``--labels`` accepts for the 1000 ImageNet-1k classes.
IMAGENET = "imagenet"


@lru_cache(maxsize=1)
def _imagenet_tuple() -> tuple[str, ...]:
    from torchvision.models import ResNet18_Weights

    # The weights enum's metadata ships inside torchvision: reading it downloads nothing.
    return tuple(ResNet18_Weights.DEFAULT.meta["categories"])


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in the standard (synset id) order, e.g. ``'tench'``."""
    return list(_imagenet_tuple())


def read_labels_file(path: str | Path) -> list[str]:
    """Class names from a text file (one per line) or a JSON list of strings.

    Raises
    ------
    ExplainError
        If the file is missing, empty, or not a list of strings.
    """
    p = Path(path)
    if not p.is_file():
        raise OptionError("labels", f"file {p} does not exist; pass a text file (one name per line) or `labels` imagenet")
    text = p.read_text(encoding="utf-8", errors="replace")
    if text.lstrip().startswith("["):
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExplainError(f"labels file {p} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
            raise ExplainError(f"labels file {p} must be a JSON list of strings")
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ExplainError(f"labels file {p} is empty")
    return labels


def resolve_labels(spec: str | None, default: list[str] | None = None) -> list[str] | None:
    """What ``--labels`` names: ``None`` keeps ``default`` (the model's own), ``imagenet`` the
    ImageNet-1k names, anything else a labels file.

    A file literally called ``imagenet`` is reached as ``./imagenet``.
    """
    if spec is None:
        return default
    if str(spec).strip().lower() == IMAGENET:
        return imagenet_labels()
    return read_labels_file(spec)

