"""What a task reads from the user, read by the front door: regions (segmentation) and references (similarity).

Tasks never open files; :func:`build_task` turns the settled target options into a task, reading
on the way a ``region`` file (within ``max_pixels``, as inputs are) and a ``reference`` (an image
embedded by the same model after the same preprocessing as the input, or a ``.npy`` embedding).

In Python, ``region`` may be an array or tensor, and ``reference`` a tensor or array (1-D or 2-D:
embeddings; 3-D, or (1, C, H, W): an image) or a PIL image.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explain_cli.errors import ExplainError, OptionError

if TYPE_CHECKING:
    from explain_cli.inputs import LoadedInput
    from explain_cli.models import LoadedModel
    from explain_cli.options.groups import Settings
    from explain_cli.preprocess import PreparedInput
    from explain_cli.tasks import Task

#: Most numbers a reference ``.npy`` may hold (checked from its header before it is read).
MAX_REFERENCE_VALUES = 50_000_000


def build_task(cfg: "Settings", model: "LoadedModel") -> "Task":
    """The task ``cfg`` settles on, built from its options; reads the region or reference it names.

    Built once per call and shared by its inputs: a reference image is embedded here, with one
    forward pass of ``model`` outside the evaluator.

    Raises
    ------
    OptionError
        A region or reference that cannot be read or is malformed, or ``baseline reference``
        without a reference image.
    """
    from explain_cli.tasks import TASKS, SegmentationTask

    name = cfg.targets.task or model.task
    if name == "segmentation":
        region = None if cfg.targets.region is None else read_region(cfg.targets.region, cfg.input.max_pixels)
        return SegmentationTask(cfg.targets.output, region=region, min_area=cfg.targets.min_area)
    if name == "similarity":
        return similarity_task(cfg, model)
    return TASKS[name].from_options(cfg.targets)


def check_task_fits(cfg: "Settings", task: "Task", first: "PreparedInput") -> None:
    """What ``task`` read, checked against one input: ``baseline reference`` needs the reference image at the
    input's size after preprocessing.

    Raises
    ------
    OptionError
        A reference image of another size.
    """
    from explain_cli.tasks.similarity import reference_baseline

    image = getattr(task, "image", None)
    if image is not None and cfg.baseline is not None and cfg.baseline.kind == "reference":
        reference_baseline(image, first.prepared.x)


def read_region(region: Any, max_pixels: int) -> np.ndarray:
    """A region as an (H, W) int64 label map; a binary mask (any one non-zero value) becomes ids 0 and 1."""
    from explain_cli.inputs.maps import read_map
    from explain_cli.tasks.regions import region_ids

    if isinstance(region, (str, Path)):
        region = read_map(region, "region", "region mask", max_pixels=max_pixels, lossless=True)
    ids = region_ids(region)
    return (ids > 0).astype(np.int64) if len(np.unique(ids)) == 2 else ids


def similarity_task(cfg: "Settings", model: "LoadedModel") -> "Task":
    """The similarity task of ``cfg``'s reference: embeddings as given, or an image embedded by ``model``."""
    from explain_cli.preprocess import prepare
    from explain_cli.tasks.similarity import SimilarityTask

    targets = cfg.targets
    if targets.reference is None:
        raise OptionError("reference", "is required for task similarity: a reference image, a .npy (D,) embedding, "
                                       "or (K, D) prompt embeddings with labels")
    vectors, item = read_reference(targets.reference, channels=model.in_channels or 3,
                                   max_pixels=cfg.input.max_pixels)
    pixels_baseline = cfg.baseline is not None and cfg.baseline.kind == "reference"
    if item is None:
        if pixels_baseline:
            raise OptionError("baseline", "reference needs a reference image, but the reference is an embedding; "
                                          "give an image as reference, or another baseline")
        return SimilarityTask(vectors, temperature=targets.temperature)
    x_ref = prepare(item, cfg, model_default=model.preprocess, with_segments=False).prepared.x
    thumbnail = item.display.astype(np.float32) / 255.0
    return SimilarityTask.from_reference_image(model.module, x_ref.to(model.device), temperature=targets.temperature,
                                               thumbnail=thumbnail, image=x_ref)


def read_reference(reference: Any, *, channels: int, max_pixels: int) -> tuple[np.ndarray | None, "LoadedInput | None"]:
    """``(embeddings, None)`` for a ``.npy`` file, array or tensor of 1 or 2 dimensions; ``(None, image)`` otherwise."""
    import torch

    from explain_cli.inputs.memory import as_inputs

    if isinstance(reference, (str, Path)):
        if Path(reference).suffix.lower() == ".npy":
            return _read_npy(Path(reference)), None
        source: Any = str(reference)
    elif isinstance(reference, torch.Tensor):
        if reference.dim() <= 2:
            return reference.detach().cpu().double().numpy(), None
        if reference.dim() == 4 and reference.shape[0] != 1:
            raise OptionError("reference", f"is a batch of {reference.shape[0]} images; give one reference image")
        source = reference[0] if reference.dim() == 4 else reference
    elif isinstance(reference, (np.ndarray, list, tuple)):
        array = np.asarray(reference)
        if array.ndim <= 2:
            return array, None
        source = array
    else:
        source = reference  # a PIL image, or what as_inputs refuses with its own message
    try:
        (item,) = as_inputs([source], channels=channels, max_pixels=max_pixels)
    except OptionError:
        raise
    except ExplainError as exc:
        raise OptionError("reference", f"cannot be read as an image: {exc}") from None
    return None, item


def _read_npy(path: Path) -> np.ndarray:
    """A (D,) or (K, D) array from a ``.npy`` file: no pickles, size checked from the header."""
    from explain_cli.fileio import require_file

    try:
        require_file(path, "reference", "pass an image, or a .npy (D,) or (K, D) array")
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except ExplainError as exc:
        raise OptionError("reference", str(exc)) from None
    except (ValueError, OSError, EOFError) as exc:
        raise OptionError("reference", f"{path} is not a readable .npy array: {' '.join(str(exc).split())}") from None
    if not isinstance(mapped, np.ndarray) or mapped.ndim not in (1, 2):
        shape = list(getattr(mapped, "shape", []))
        raise OptionError("reference", f"{path} holds an array of shape {shape}; give a (D,) embedding or (K, D) "
                                       "prompt embeddings")
    if mapped.size > MAX_REFERENCE_VALUES:
        raise OptionError("reference", f"{path} holds {mapped.size} numbers, over the limit of {MAX_REFERENCE_VALUES}")
    return np.array(mapped)
