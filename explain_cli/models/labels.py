"""Class names: ImageNet's (shipped with torchvision, nothing downloaded) and label files."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from explain_cli.errors import ExplainError, OptionError
from explain_cli.fileio import require_file

#: The name ``--labels`` accepts for the 1000 ImageNet-1k classes.
IMAGENET = "imagenet"
#: Largest labels file read (bytes). ImageNet-21k's 21,841 names take about 0.5 MB.
MAX_LABELS_BYTES = 16 * 2**20
LABELS_HINT = "pass a text file (one name per line), a JSON list of strings, or `labels` imagenet"


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
        If the file is missing or not a regular file (a FIFO, a folder: the real reason), empty,
        over `MAX_LABELS_BYTES`, nested JSON, or not a list of strings.
    """
    p = Path(path)
    try:
        require_file(p, "file", LABELS_HINT)
    except ExplainError as exc:
        raise OptionError("labels", str(exc)) from None
    size = p.stat().st_size
    if size > MAX_LABELS_BYTES:
        raise OptionError("labels", f"file {p} is {size:,} bytes, over the {MAX_LABELS_BYTES:,}-byte limit for class "
                          "names; is it the right file?")
    text = p.read_bytes()[:MAX_LABELS_BYTES].decode("utf-8", errors="replace")
    if text.lstrip().startswith("["):
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExplainError(f"labels file {p} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        except RecursionError:  # a list nested thousands deep: Python's parser gives up
            raise ExplainError(f"labels file {p} must be a JSON list of strings, not lists nested deeply") from None
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

