"""The Explanation: everything one run learned about one input, its JSON form, and its files.

JSON schema (``schema_version`` 1): see README.md, "Output files", and ``schema/explanation.schema.json``.
Keys are only ever added within a major version; renaming or removing one bumps ``schema_version``.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explain_cli._version import __version__
from explain_cli.engines.base import Attribution
from explain_cli.preprocess import Geometry
from explain_cli.segmentation import Segmentation

if TYPE_CHECKING:
    from PIL import Image

    from explain_cli.options.groups import OutputOptions

SCHEMA_VERSION = 1
TOP_NUMBERED = 5  # segments outlined and numbered on the heatmap
#: Targets drawn in the PNG (the first, i.e. the top-ranked with target auto); the JSON keeps every one.
#: Drawing costs ~0.1 s a panel, so --top-k 1000 would spend minutes on a picture nobody can read.
MAX_PANELS = 16
#: What ``targets[].r2`` measures, per method (the JSON's ``extra.r2_definition``).
R2_DEFINITIONS = {
    "lime": "kernel-weighted R² of the LIME surrogate (free intercept) over its samples; in [0, 1] when the "
            "samples outnumber the segments, and meaningless (≈ 1 by construction) when they do not",
    "kernelshap": "Shapley-kernel-weighted R² of the additive model φ0 + Σ φ_i z_i over the evaluated coalitions, "
                  "constrained to pass through f(baseline) and f(x), so it has no free intercept: 1 is a perfect "
                  "additive fit, 0 no better than the coalitions' weighted mean, and below 0 worse than that mean "
                  "(interactions dominate, or too few samples); it is undefined (reported as 1) when the "
                  "coalitions do not outnumber the segments",
}


@dataclass
class Explanation:
    """One input explained for K targets by one method.

    ``scores`` (K, M) are the per-segment attributions, ``stderr`` their standard errors (where
    the method estimates them), ``segments`` the (H, W) segment map at the model's resolution;
    :meth:`pixel_map` gives a target's map at the input's resolution, :meth:`top` the strongest
    segments, :meth:`to_dict` the JSON document, :meth:`save` the CLI's files and :meth:`render`
    the picture (a notebook shows an Explanation inline).
    """

    method: str
    params: dict[str, Any]  # the engine's resolved parameters
    seed: int
    output_space: str  # 'logits', 'probs', or 'callable' (a Python target function)
    baseline: str | None  # baseline spec, e.g. 'zero'; None for methods without one (permutation)
    model: dict[str, Any]  # LoadedModel.describe()
    input: dict[str, Any]  # LoadedInput.describe()
    preprocess: dict[str, Any]
    geometry: Geometry
    segmentation: Segmentation
    targets: list[int | None]  # class index per row (None: a box named without a class; boxes may share one)
    labels: list[str | None]
    target_scores: np.ndarray  # (K,) f(x) per target
    attribution: Attribution
    evaluations: int
    timing: dict[str, float]
    batch_size: int = 0  # the batch size used (smaller than asked after an out-of-memory back-off)
    memory: dict[str, Any] = field(default_factory=dict)  # batch_backoffs, peak_cuda_bytes (CUDA only)
    warnings: list[str] = field(default_factory=list)
    inputs: list[dict[str, Any]] | None = None  # batch engines: every input (``input`` is the first)
    example_scores: np.ndarray | None = None  # batch engines: (N, K) f(x_i)
    display: np.ndarray | None = None  # (H0, W0, 3) uint8 picture the heatmap is drawn over
    stem: str = "input"  # output file names: STEM.METHOD.png/json
    signed: bool = True  # signed scores (diverging colours) or non-negative (sequential)
    render_options: OutputOptions = field(default_factory=lambda: _default_output())  # how it is drawn and saved
    evaluation: dict[str, Any] = field(default_factory=dict)  # faithfulness metrics, when asked for
    curves: list[Any] = field(default_factory=list)  # deletion/insertion curves behind `evaluation`
    task: str = "classification"  # what a target is (explain_cli.tasks), or 'callable' (a Python target function)
    details: list[Any] | None = None  # the task's Target per row (a detection's box, its detector score)

    @property
    def scores(self) -> np.ndarray:
        """(K, M) attribution of every segment for every target."""
        return self.attribution.scores

    @property
    def stderr(self) -> np.ndarray | None:
        """(K, M) standard errors of the scores, where the method estimates them."""
        return self.attribution.stderr

    @property
    def segments(self) -> np.ndarray:
        """(H, W) segment id of every model-input pixel, 0..M-1."""
        return self.segmentation.labels

    def _target_row(self, target: int | str | None, class_index: int | None = None) -> int:
        """The row 0..K-1 of a target: a position (0: the first), a label, or ``class_index``."""
        from explain_cli.views import target_row

        return target_row(self.targets, self.labels, target, class_index=class_index)

    def segment_maps(self) -> np.ndarray:
        """(K, H, W) score maps at model resolution: pixel maps, or segment scores painted on segments."""
        if self.attribution.pixel_maps is not None:
            return self.attribution.pixel_maps
        return self.attribution.scores[:, self.segmentation.labels]

    def pixel_maps(self) -> np.ndarray:
        """(K, H0, W0) maps at the input's resolution; NaN outside the part the model saw."""
        from explain_cli.preprocess import map_to_original

        return map_to_original(self.segment_maps(), self.geometry)

    def pixel_map(self, target: int | str = 0, *, class_index: int | None = None) -> np.ndarray:
        """(H0, W0) map of one target at the input's resolution.

        ``target`` is a position among the explained targets (0: the first) or a label;
        ``class_index=`` picks one by the model's class. Anything not explained is an ExplainError.
        """
        return self.pixel_maps()[self._target_row(target, class_index)]

    def top(self, k: int = 5, target: int | str = 0, *, class_index: int | None = None) -> list[tuple[int, float]]:
        """The ``k`` segments with the largest score for one target, as (segment id, score), strongest first.

        ``target`` and ``class_index`` as in :meth:`pixel_map`.
        """
        return self._top_row(k, self._target_row(target, class_index))

    def tensors(self) -> dict[str, Any]:
        """The results as CPU torch tensors: ``scores``, ``stderr``, ``segments``, ``pixel_maps``, ``target_scores``."""
        from explain_cli.views import as_tensors

        return as_tensors(self)

    def plot(self, target: int | str = 0, *, class_index: int | None = None, ax: Any = None, **style: Any) -> Any:
        """Draw one target's map over the input on a matplotlib ``ax`` (optional: matplotlib is); returns the axes.

        ``style``: ``cmap``, ``alpha``, ``colorbar`` (see :func:`explain_cli.views.plot`).
        """
        from explain_cli.views import plot

        return plot(self, target, class_index=class_index, ax=ax, **style)

    def _top_row(self, k: int, row_index: int) -> list[tuple[int, float]]:
        row = self.scores[row_index]
        order = np.argsort(-row, kind="stable")[:k]
        return [(int(g), float(row[g])) for g in order]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema version 1), as the CLI writes it."""
        return self.to_json()

    def render(self, **options: Any) -> "Image.Image":
        """The heatmap picture as a PIL image (what the PNG holds).

        ``options`` change how it is drawn, by their option names: ``boundaries``, ``style``,
        ``opacity``, ``cmap``, ``scale`` (default: as explained).

        Raises
        ------
        OptionError
            A name that is not one of these (a misspelt one too), or a bad value.
        """
        from PIL import Image

        return Image.open(io.BytesIO(self._png(**options)))

    def _repr_png_(self) -> bytes:
        return self._png()

    def _png(self, **options: Any) -> bytes:
        from explain_cli.options.settings import output_options
        from explain_cli.preprocess import map_to_original
        from explain_cli.render.captions import (
            CENTRED_BAR_LABEL,
            heatmap_captions,
            heatmap_title,
            numbering_note,
            task_caption,
        )
        from explain_cli.render.figures import render_image, saliency_centres, strongest_segments
        from explain_cli.render.layout import to_png

        opts = output_options(self.render_options, **options) if options else self.render_options
        full = self.pixel_maps()
        # Boundaries help read segment-level scores; pixel-level maps (RISE) are clearer without them.
        show_edges = opts.boundaries and self.attribution.pixel_maps is None
        labels_full = map_to_original(self.segmentation.labels[None], self.geometry, nearest=True)[0] if show_edges else None
        drawn = min(len(self.targets), MAX_PANELS)
        full = full[:drawn]
        pixel_level = self.attribution.pixel_maps is not None
        # A per-pixel saliency (RISE, D-RISE) is drawn relative to its mean, its neutral value.
        centres = saliency_centres(full) if pixel_level and not self.signed else None
        overlays, reference = None, None
        if self.details is not None and self.task in ("detection", "segmentation", "similarity"):
            # a box or region drawn over each panel; a reference image beside them
            captions = [task_caption(k, entry, self.output_space) or "" for k, entry in enumerate(self._entries()[:drawn])]
            overlays = [t.overlay() for t in self.details[:drawn]]
            reference = next((o["thumbnail"] for o in overlays if o and o.get("thumbnail") is not None), None)
            if centres is not None and self.task != "detection":  # RISE: the neutral value, as classes show it
                captions = [f"{c} · mean saliency {centres[k]:.3g}" for k, c in enumerate(captions)]
        else:
            captions = heatmap_captions(self.labels[:drawn], self.targets[:drawn], self.target_scores[:drawn],
                                        self.output_space, mean=self.inputs is not None, centres=centres)
        title = heatmap_title(self.method, self.input["path"], None if pixel_level else self.segmentation.n_segments,
                              self.evaluations,
                              n_inputs=None if self.inputs is None else len(self.inputs), drawn=drawn,
                              total=len(self.targets))
        display = self.display if self.display is not None else np.full((*self.geometry.original, 3), 128, np.uint8)
        # the segments that matter most, of either sign, are outlined and numbered
        top = strongest_segments(self.scores[:drawn], TOP_NUMBERED) if show_edges else None
        note = numbering_note(min(TOP_NUMBERED, self.segmentation.n_segments)) if show_edges else None
        return to_png(render_image(display, full, captions, signed=self.signed, title=title, labels_full=labels_full,
                                   style=opts.style, opacity=opts.opacity, cmap=opts.cmap, scale=opts.scale,
                                   top_segments=top, note=note, centres=centres, overlays=overlays, reference=reference,
                                   bar_label=CENTRED_BAR_LABEL if centres is not None else None))

    def _entries(self) -> list[dict[str, Any]]:
        """Each target's JSON entry before its attribution: index, label, the task's fields (a box), score."""
        return [{**({"index": int(index), "label": self.labels[k]} if self.details is None
                    else self.details[k].describe()),  # a task's fields: a detection's box, its detector score
                 "score": float(self.target_scores[k])} for k, index in enumerate(self.targets)]

    def output_paths(self, out_dir: str | Path, stem: str | None = None) -> dict[str, Path]:
        """Where :meth:`save` writes: STEM.METHOD.png, .json, and .npy with ``save_map``."""
        return output_paths(Path(out_dir), stem or self.stem, self.method, self.render_options.save_map,
                            bool(self.curves))

    def files(self) -> dict[str, bytes]:
        """The bytes of every output file by kind (``png``, ``json``; ``npy``, ``curves`` when asked for).

        What :meth:`save` writes, built without touching the disk (``explain batch --backend ray``
        builds them on a worker and writes them on the driver).
        """
        doc = self.to_json()
        files = {"png": self._png()}
        if self.render_options.save_map:
            buffer = io.BytesIO()
            maps = self.pixel_maps().astype(np.float32)
            np.save(buffer, maps, allow_pickle=False)
            files["npy"] = buffer.getvalue()
            # the JSON names its own map: `explain evaluate` and `compare` refuse a stale or foreign .npy
            doc["map"] = {"sha256": hashlib.sha256(files["npy"]).hexdigest(), "shape": list(maps.shape)}
        files["json"] = json.dumps(doc, indent=2, allow_nan=False).encode() + b"\n"
        if self.curves:
            from explain_cli.render.captions import box_name, curve_labels, curves_title
            from explain_cli.render.curves import render_curves_image
            from explain_cli.render.layout import to_png

            names = ([box_name(k, entry) for k, entry in enumerate(self._entries())] if self.task == "detection"
                     else curve_labels(self.labels, self.targets))
            files["curves"] = to_png(render_curves_image(self.curves, curves_title(self.method, self.stem), labels=names,
                                                         score="box score" if self.task == "detection" else "probability"))
        return files

    def save(self, out_dir: str | Path, stem: str | None = None) -> list[Path]:
        """Write the PNG, the JSON (and with ``save_map`` the NPY) atomically; returns the paths, JSON last."""
        return write_files(out_dir, self.output_paths(out_dir, stem), self.files())

    def to_json(self) -> dict[str, Any]:
        seg = self.segmentation
        areas, boxes = seg.areas(), seg.bboxes()
        a = self.attribution
        targets = []
        heads = self._entries()
        for k in range(len(self.targets)):
            segments = []
            for g in range(seg.n_segments):
                entry: dict[str, Any] = {
                    "id": g,
                    "score": float(a.scores[k, g]),
                    "area": int(areas[g]),
                    "bbox": [int(v) for v in boxes[g]],
                }
                if a.stderr is not None:
                    entry["stderr"] = _number(a.stderr[k, g])  # null: unknown (an under-determined fit)
                if a.std is not None:
                    entry["std"] = float(a.std[k, g])
                segments.append(entry)
            target: dict[str, Any] = {
                **heads[k],
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

        extra = dict(a.extra)
        if self.method in R2_DEFINITIONS and a.r2 is not None:
            extra["r2_definition"] = R2_DEFINITIONS[self.method]  # what targets[].r2 means for this method
        return {
            "schema_version": SCHEMA_VERSION,
            "tool_version": __version__,
            "method": self.method,
            "params": self.params,
            "seed": self.seed,
            "evaluations": int(self.evaluations),
            "batch_size": self.batch_size,
            **({"memory": self.memory} if self.memory.get("batch_backoffs") or self.memory.get("peak_cuda_bytes") else {}),
            "output_space": self.output_space,
            "baseline": self.baseline,
            "model": self.model,
            "input": self.input,
            **({"inputs": self.inputs} if self.inputs is not None else {}),
            "preprocessing": {**self.preprocess, "geometry": self.geometry.to_dict()},
            "segmentation": seg.to_dict(),
            "targets": targets,
            **({"extra": extra} if extra else {}),
            **({"evaluation": self.evaluation} if self.evaluation else {}),
            "warnings": self.warnings,
            "timing": {k: round(v, 6) for k, v in self.timing.items()},
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
                "numpy": np.__version__,
            },
        }


def load_explanation(path: str | Path, *, check: bool = True) -> dict[str, Any]:
    """The document :meth:`Explanation.to_json` wrote to ``path``, read back: the one reader of explanation JSONs.

    With ``check`` (the default) it must follow the schema
    (:func:`explain_cli.schemacheck.check_explanation`), so a hand-edited JSON is refused in one
    line before anything reads a key; ``check=False`` only parses (for callers that just peek).

    Raises
    ------
    ExplainError
        ``X.json is not a readable JSON file: ...``, or (with ``check``) a document that breaks the schema.
    """
    from explain_cli.errors import ExplainError
    from explain_cli.schemacheck import check_explanation

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ExplainError(f"{path} is not a readable JSON file: {' '.join(str(exc).split())[:200]}") from None
    return check_explanation(doc, path) if check else doc


def _default_output() -> OutputOptions:
    from explain_cli.options.settings import default_output

    return default_output()


def _number(value: float) -> float | None:
    """JSON has no NaN: a quantity a method does not define is null."""
    value = float(value)
    return value if np.isfinite(value) else None


def write_files(out_dir: str | Path, paths: dict[str, Path], files: dict[str, bytes]) -> list[Path]:
    """Write ``files`` (kind -> bytes) to ``paths`` (kind -> path) atomically, the JSON last; returns png, json, others."""
    from explain_cli.fileio import atomic_write_files, sweep_stale_temps

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(Path(out_dir))  # temp files a killed run left behind
    others = [kind for kind in ("npy", "curves") if kind in paths]
    # one set: every file staged before any is replaced (a full disk leaves none of them new);
    # JSON last: its presence marks a complete set of outputs.
    atomic_write_files([(paths[kind], files[kind]) for kind in (*others, "png", "json")])
    return [paths["png"], paths["json"], *(paths[kind] for kind in others)]


def output_paths(out_dir: Path, stem: str, method: str, save_map: bool, curves: bool = False) -> dict[str, Path]:
    """The files one explanation writes: STEM.METHOD.png, .json (and .npy, .curves.png), all in ``out_dir``.

    Raises
    ------
    ExplainError
        A ``stem`` that is not a plain file name (``../x``, ``/etc/x``, ``..``): outputs never leave ``out_dir``.
    """
    from explain_cli.errors import ExplainError

    if not stem or stem in (".", "..") or any(sep in stem for sep in ("/", "\\", "\x00")):
        raise ExplainError(f"the output name {stem!r} must be a plain file name (no folders); pass the folder as "
                           "out_dir")
    paths = {"png": out_dir / f"{stem}.{method}.png", "json": out_dir / f"{stem}.{method}.json"}
    if save_map:
        paths["npy"] = out_dir / f"{stem}.{method}.npy"
    if curves:
        paths["curves"] = out_dir / f"{stem}.{method}.curves.png"
    return paths


def check_unique_stems(paths: list[Path], fix: str, where: str = "") -> list[str]:
    """The output stems of ``paths``; two different files with one stem would write the same outputs.

    Raises
    ------
    ExplainError
        Naming both files and ``fix`` (what the caller's interface offers to separate them).
    """
    from explain_cli.errors import ExplainError

    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen and seen[p.stem] != p:
            raise ExplainError(f"{where}inputs {seen[p.stem]} and {p} share the name {p.stem!r}, so their outputs "
                               f"would collide; {fix}")
        seen[p.stem] = p
    return list(seen)
