"""The Explanation dataclass: everything one run learned about one input, and its JSON form.

JSON schema (``schema_version`` 1): see README.md, "Output files". Keys are only ever added
within a major version; renaming or removing one bumps ``schema_version``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explain_cli import __version__
from explain_cli.engines.base import Attribution
from explain_cli.preprocess import Geometry
from explain_cli.segmentation import Segmentation

SCHEMA_VERSION = 1


@dataclass
class Explanation:
    """One input explained for K targets by one method."""

    method: str
    params: dict[str, Any]  # the engine's resolved parameters
    seed: int
    output_space: str  # 'logits' or 'probs'
    baseline: str  # baseline spec, e.g. 'zero'
    model: dict[str, Any]  # LoadedModel.describe()
    input: dict[str, Any]  # LoadedInput.describe()
    preprocess: dict[str, Any]
    geometry: Geometry
    segmentation: Segmentation
    targets: list[int]
    labels: list[str | None]
    scores: np.ndarray  # (K,) f(x) per target
    attribution: Attribution
    evaluations: int
    timing: dict[str, float]
    batch_size: int = 0
    warnings: list[str] = field(default_factory=list)
    inputs: list[dict[str, Any]] | None = None  # batch engines: every input (``input`` is the first)
    example_scores: np.ndarray | None = None  # batch engines: (N, K) f(x_i)

    def segment_maps(self) -> np.ndarray:
        """(K, H, W) score maps at model resolution: pixel maps, or segment scores painted on segments."""
        if self.attribution.pixel_maps is not None:
            return self.attribution.pixel_maps
        return self.attribution.scores[:, self.segmentation.labels]

    def to_json(self) -> dict[str, Any]:
        seg = self.segmentation
        areas, boxes = seg.areas(), seg.bboxes()
        a = self.attribution
        targets = []
        for k, index in enumerate(self.targets):
            segments = []
            for g in range(seg.n_segments):
                entry: dict[str, Any] = {
                    "id": g,
                    "score": float(a.scores[k, g]),
                    "area": int(areas[g]),
                    "bbox": [int(v) for v in boxes[g]],
                }
                if a.stderr is not None:
                    entry["stderr"] = float(a.stderr[k, g])
                if a.std is not None:
                    entry["std"] = float(a.std[k, g])
                segments.append(entry)
            target: dict[str, Any] = {
                "index": int(index),
                "label": self.labels[k],
                "score": float(self.scores[k]),
                "baseline_score": _number(a.baseline_score[k]),
                "intercept": _number(a.base_value[k]),
                "r2": None if a.r2 is None else _number(a.r2[k]),
                "segments": segments,
            }
            if a.per_example is not None and self.inputs is not None:
                target["per_example"] = [
                    {"input": item["path"], "score": float(self.example_scores[i, k]),
                     "attributions": [float(v) for v in a.per_example[i, k]]}
                    for i, item in enumerate(self.inputs)
                ]
            targets.append(target)
        import torch
        import torchvision

        return {
            "schema_version": SCHEMA_VERSION,
            "tool_version": __version__,
            "method": self.method,
            "params": self.params,
            "seed": self.seed,
            "evaluations": int(self.evaluations),
            "batch_size": self.batch_size,
            "output_space": self.output_space,
            "baseline": self.baseline,
            "model": self.model,
            "input": self.input,
            **({"inputs": self.inputs} if self.inputs is not None else {}),
            "preprocessing": {**self.preprocess, "geometry": self.geometry.to_dict()},
            "segmentation": seg.to_dict(),
            "targets": targets,
            **({"extra": a.extra} if a.extra else {}),
            "warnings": self.warnings,
            "timing": {k: round(v, 6) for k, v in self.timing.items()},
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
                "numpy": np.__version__,
            },
        }


def _number(value: float) -> float | None:
    """JSON has no NaN: a quantity a method does not define is null."""
    value = float(value)
    return value if np.isfinite(value) else None
