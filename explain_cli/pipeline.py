"""Wiring: model + input files + config -> Explanation -> PNG/JSON/NPY files.

Every check that can fail on user input runs before the first output is written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from explain_cli.baselines import make_baseline
from explain_cli.config import RunConfig
from explain_cli.engines import build_params, get_engine
from explain_cli.errors import ExplainError
from explain_cli.fileio import atomic_write_bytes, ensure_writable_dir
from explain_cli.inputs import LoadedInput, load_input
from explain_cli.models import LoadedModel, load_model
from explain_cli.preprocess import apply_preprocess, map_to_original, resolve_preprocess
from explain_cli.progress import Progress, make_progress
from explain_cli.result import Explanation
from explain_cli.segmentation import segment, to_segmentation_space

if TYPE_CHECKING:
    import torch

SMALL_SEGMENT_COUNT = 8


def parse_batch_size(value: str | int, device: "torch.device") -> int:
    if isinstance(value, int) or str(value).strip().lstrip("-").isdigit():
        size = int(value)
        if size < 1:
            raise ExplainError(f"--batch-size must be at least 1 (or auto), got {size}")
        return size
    if str(value).strip().lower() != "auto":
        raise ExplainError(f"--batch-size {value!r} is not a number or auto")
    return 128 if device.type == "cuda" else 64


def load_labels(path: str | None, model: LoadedModel) -> list[str] | None:
    """Class names from --labels (text, one per line, or a JSON list), else the model's own."""
    if path is None:
        return model.labels
    p = Path(path)
    if not p.is_file():
        raise ExplainError(f"labels file {p} does not exist")
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


def resolve_targets(requested: Sequence[str], top_k: int, outputs: np.ndarray, labels: list[str] | None) -> list[int]:
    """Target indices from ``auto``/indices/labels; ``auto`` means the top-k classes of f(x)."""
    n = outputs.shape[0]
    if top_k < 1:
        raise ExplainError(f"--top-k must be at least 1, got {top_k}")
    if labels is not None and len(labels) != n:
        raise ExplainError(f"{len(labels)} labels were given but the model has {n} outputs; fix --labels")
    requested = [str(t).strip() for t in requested] or ["auto"]
    if requested == ["auto"]:
        if top_k > n:
            raise ExplainError(f"--top-k {top_k} is more than the model's {n} outputs")
        return [int(i) for i in np.argsort(-outputs, kind="stable")[:top_k]]
    if top_k != 1:
        raise ExplainError("--top-k applies to --target auto; list explicit targets instead")
    chosen: list[int] = []
    for item in requested:
        if item == "auto":
            index = int(np.argmax(outputs))
        elif item.lstrip("-").isdigit():
            index = int(item)
            if not 0 <= index < n:
                raise ExplainError(f"--target {index} is out of range: the model has {n} outputs (0..{n - 1})")
        else:
            index = _label_index(item, labels)
        if index not in chosen:
            chosen.append(index)
    return chosen


def _label_index(name: str, labels: list[str] | None) -> int:
    if labels is None:
        raise ExplainError(f"--target {name!r} is a name but the model has no labels; pass --labels FILE or an index")
    lowered = [v.lower() for v in labels]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    import difflib

    close = difflib.get_close_matches(name.lower(), lowered, n=3)
    if close:
        hint = f"; did you mean {', '.join(repr(labels[lowered.index(c)]) for c in close)}?"
    elif len(labels) <= 12:
        hint = f"; they are {', '.join(labels)}"
    else:
        hint = "; pass a class index instead"
    raise ExplainError(f"--target {name!r} is not one of the model's {len(labels)} labels{hint}")


def output_paths(out_dir: Path, stem: str, method: str, save_map: bool) -> dict[str, Path]:
    paths = {"png": out_dir / f"{stem}.{method}.png", "json": out_dir / f"{stem}.{method}.json"}
    if save_map:
        paths["npy"] = out_dir / f"{stem}.{method}.npy"
    return paths


def _prepare(model: LoadedModel, item: LoadedInput, cfg: RunConfig, algorithm: str, cache: dict | None = None):
    """Preprocess one input and segment the image the model sees (memoised in ``cache`` if given).

    The batch runner passes one cache per input, so every method of a job sees the same
    superpixels and the work is done once.
    """
    if cache is not None:
        key = (str(item.path), algorithm)
        if key not in cache:
            cache[key] = _prepare(model, item, cfg, algorithm)
        return cache[key]
    spec = resolve_preprocess(cfg.preprocess, model_default=model.preprocess, input_kind=item.kind,
                              size=cfg.size, mean=cfg.mean, std=cfg.std)
    prepared = apply_preprocess(item.pixels, spec)
    seg = segment(to_segmentation_space(prepared.pixels.numpy(), rescale=item.kind == "tensor"),
                  algorithm, **cfg.segmentation_params())
    return spec, prepared, seg


def _outputs(evaluator, x: "torch.Tensor", items: Sequence[LoadedInput]) -> np.ndarray:
    """All model outputs for the unperturbed inputs (N, n_outputs); a rejected input is a usage error."""
    try:
        return np.concatenate([evaluator(x[a:b]).cpu().numpy() for a, b in evaluator.chunks(len(x))])
    except ExplainError:
        raise
    except Exception as exc:  # the model rejected the input: shape, channels, dtype
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        names = ", ".join(str(i.path) for i in items[:3])
        raise ExplainError(
            f"the model rejected input {names} of shape {list(x[:1].shape)}: {first[:200]}; "
            "check channels and size (--size, --preprocess)"
        ) from None


def explain_items(model: LoadedModel, items: Sequence[LoadedInput], cfg: RunConfig, *,
                  progress: Progress | None = None, cache: dict | None = None) -> Explanation:
    """Explain one input, or for a batch engine (permutation) several inputs together."""
    import torch

    from explain_cli.core import Evaluator, Problem

    engine = get_engine(cfg.method)
    params = build_params(engine, cfg.engine_values())
    if engine.batch and len(items) < 2:
        raise ExplainError(f"{engine.name} explains a batch: pass at least 2 inputs (files, or a shell glob like DIR/*.png)")
    started = time.perf_counter()
    algorithm = cfg.segmenter(engine.batch)
    spec, first, seg = _prepare(model, items[0], cfg, algorithm, cache)
    xs = [first.x]
    for item in items[1:]:
        _, other, _ = _prepare(model, item, cfg, "grid", cache)  # the batch shares the first input's groups
        if other.x.shape != first.x.shape:
            raise ExplainError(
                f"{engine.name} needs inputs of one size after preprocessing: {items[0].path} gives "
                f"{list(first.x.shape)}, {item.path} gives {list(other.x.shape)}; pass --size H,W"
            )
        xs.append(other.x)
    device = model.device
    evaluator = Evaluator(model.module, device, batch_size=parse_batch_size(cfg.batch_size, device),
                          output=cfg.output, precision=cfg.precision, progress=progress)
    x = torch.stack(xs).to(device)
    all_outputs = _outputs(evaluator, x, items)  # (N, n_outputs)
    labels = load_labels(cfg.labels, model)
    targets = resolve_targets(cfg.target, cfg.top_k, all_outputs.mean(axis=0), labels)
    evaluator.select_targets(targets)
    chosen = all_outputs[:, targets]
    problem = Problem(
        x=x if engine.batch else x[0],
        baseline=make_baseline(cfg.baseline, first.x, spec, input_kind=items[0].kind).to(device),
        segments=torch.from_numpy(seg.labels).to(device),
        evaluator=evaluator,
        reference=torch.from_numpy(chosen if engine.batch else chosen[0]).double(),
    )
    attribution = engine.run(problem, params, torch.Generator().manual_seed(cfg.seed))
    evaluator.progress.stop()
    warnings = list(attribution.warnings)
    if seg.n_segments < SMALL_SEGMENT_COUNT:
        warnings.append(
            f"only {seg.n_segments} superpixels; the map will be coarse. Raise --n-segments or try `explain segment`"
        )
    return Explanation(
        method=engine.name,
        params=dict(params.__dict__),
        seed=cfg.seed,
        output_space=cfg.output,
        baseline=cfg.baseline,
        model=model.describe(),
        input=items[0].describe(),
        preprocess=spec.to_dict(),
        geometry=first.geometry,
        segmentation=seg,
        targets=targets,
        labels=[labels[t] if labels else None for t in targets],
        scores=chosen.mean(axis=0),
        attribution=attribution,
        evaluations=evaluator.evaluations,
        timing={"total_s": time.perf_counter() - started, "forward_s": evaluator.forward_s},
        batch_size=evaluator.batch_size,
        warnings=warnings,
        inputs=[item.describe() for item in items] if engine.batch else None,
        example_scores=chosen if engine.batch else None,
    )


def write_explanation(expl: Explanation, display: np.ndarray, out_dir: Path, stem: str, cfg: RunConfig) -> list[Path]:
    """Write PNG, JSON (and NPY) atomically; returns the paths written."""
    from explain_cli.render import render_png

    engine = get_engine(expl.method)
    paths = output_paths(out_dir, stem, expl.method, cfg.save_map)
    full = map_to_original(expl.segment_maps(), expl.geometry)
    # Boundaries help read segment-level scores; pixel-level maps (RISE) are clearer without them.
    show_edges = cfg.boundaries and expl.attribution.pixel_maps is None
    labels_full = map_to_original(expl.segmentation.labels[None], expl.geometry, nearest=True)[0] if show_edges else None
    captions = []
    for k, index in enumerate(expl.targets):
        name = expl.labels[k] if expl.labels[k] is not None else f"class {index}"
        space = "prob" if expl.output_space == "probs" else "logit"
        if expl.inputs is not None:
            space = f"mean {space}"
        captions.append(f"{name} ({index}): {space} {expl.scores[k]:.3g}")
    name = Path(expl.input["path"]).name
    if expl.inputs is not None:
        name = f"{len(expl.inputs)} inputs (global importance, drawn on {name})"
    title = f"{expl.method} · {name} · {expl.segmentation.n_segments} segments · {expl.evaluations} evals"
    png = render_png(display, full, captions, signed=engine.signed, title=title, labels_full=labels_full)
    document = json.dumps(expl.to_json(), indent=2, allow_nan=False).encode() + b"\n"
    written = []
    if "npy" in paths:
        import io

        buffer = io.BytesIO()
        np.save(buffer, full.astype(np.float32), allow_pickle=False)
        atomic_write_bytes(paths["npy"], buffer.getvalue())
        written.append(paths["npy"])
    atomic_write_bytes(paths["png"], png)
    # JSON last: its presence marks a complete set of outputs.
    atomic_write_bytes(paths["json"], document)
    return [paths["png"], paths["json"], *written]


def check_unique_stems(paths: Sequence[Path]) -> None:
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen and seen[p.stem] != p:
            raise ExplainError(f"inputs {seen[p.stem]} and {p} share the name {p.stem!r}, so their outputs would collide; explain them into different --out folders")
        seen[p.stem] = p


def run(model_source: str, inputs: Sequence[str], cfg: RunConfig,
        on_result: Callable[[Explanation, list[Path]], None] | None = None) -> list[Path]:
    """`explain run`: validate and load everything, then explain each input and write its files.

    ``on_result`` is called after each input's files are written (the CLI prints paths and warnings).
    """
    engine = get_engine(cfg.method)
    build_params(engine, cfg.engine_values())  # parameter errors before any loading
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ExplainError("no INPUT given; pass one or more image or tensor files")
    if engine.batch and len(paths) < 2:
        raise ExplainError(f"{engine.name} explains a batch: pass at least 2 inputs (files, or a shell glob like DIR/*.png)")
    if not engine.batch:
        check_unique_stems(paths)
    out_dir = ensure_writable_dir(Path(cfg.out))
    model = load_model(model_source, weights=cfg.weights, device=cfg.device, seed=cfg.seed)
    loaded = [load_input(p, channels=model.in_channels or 3) for p in paths]
    progress = make_progress(quiet=cfg.quiet)
    written: list[Path] = []
    # A batch engine explains all inputs together; the others explain each input alone.
    groups = [(loaded, cfg.name or "batch")] if engine.batch else [([item], item.stem) for item in loaded]
    for items, stem in groups:
        expl = explain_items(model, items, cfg, progress=progress)
        files = write_explanation(expl, items[0].display, out_dir, stem, cfg)
        written += files
        if on_result is not None:
            on_result(expl, files)
    return written
