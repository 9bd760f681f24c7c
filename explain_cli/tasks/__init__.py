"""Tasks: the one place where a model's raw output becomes (B, K) target scores.

``TASKS`` maps each task name to its class; :func:`get_task` builds one from option values.
See :mod:`explain_cli.tasks.base` for the protocol and the front door's sequence.
"""

from __future__ import annotations

from typing import Any

from explain_cli.errors import OptionError
from explain_cli.tasks.base import Target, TargetRequest, Task, reference_targets
from explain_cli.tasks.classification import ClassificationTask, ClassTarget
from explain_cli.tasks.detection import BoxTarget, DetectionTask
from explain_cli.tasks.segmentation import RegionTarget, SegmentationTask
from explain_cli.tasks.similarity import SimilarityTarget, SimilarityTask

__all__ = ["TASKS", "BoxTarget", "ClassTarget", "ClassificationTask", "DetectionTask", "RegionTarget",
           "SegmentationTask", "SimilarityTarget", "SimilarityTask", "Target", "TargetRequest", "Task", "get_task",
           "reference_targets"]

#: Task name -> class.
TASKS: dict[str, type[Task]] = {"classification": ClassificationTask, "detection": DetectionTask,
                                "segmentation": SegmentationTask, "similarity": SimilarityTask}


def get_task(name: str, **options: Any) -> Task:
    """The task called ``name`` built with its own options (e.g. ``min_score=0.3``).

    Raises
    ------
    OptionError
        For an unknown name (with a did-you-mean), or an option the task does not take.
    """
    key = str(name).strip().lower()
    if key not in TASKS:
        from explain_cli.errors import suggest

        hint = suggest(key, TASKS)
        hint = f" ({hint})" if hint else ""
        raise OptionError("task", f"must be one of {', '.join(TASKS)}, got {name!r}{hint}")
    cls = TASKS[key]
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise OptionError(unknown[0], f"applies to task {_owner(unknown[0])}, not {key}")
    return cls(**options)


def _owner(option: str) -> str:
    import inspect

    owners = [name for name, cls in TASKS.items() if option in inspect.signature(cls.__init__).parameters]
    return " or ".join(owners) if owners else "none (no task takes it)"
