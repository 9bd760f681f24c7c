"""The library's front door: ``explain(model, inputs, **options)`` → ``[Explanation]``.

The CLI, ``explain run --config``, ``explain batch`` and Python callers all reach the engines
through :class:`Explainer`. It accepts live ``nn.Module``s, TorchScript modules, any callable
from a batch of tensors to scores, and the CLI's strings (paths, ``torchvision:NAME``);
inputs as paths, PIL images, numpy arrays and tensors. Nothing here imports Typer or rich.

Every check that can fail on user input runs before the first model evaluation.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from explain_cli import options as schema
from explain_cli.baselines import make_baseline, parse_baseline
from explain_cli.engines import build_params, get_engine
from explain_cli.errors import ExplainError, OptionError
from explain_cli.inputs import LoadedInput, load_input
from explain_cli.models import LoadedModel, load_model, resolve_device
from explain_cli.preprocess import (
    Prepared,
    Preprocess,
    apply_preprocess,
    labels_to_model,
    parse_floats,
    parse_size,
    resolve_preprocess,
)
from explain_cli.progress import NullProgress, Progress, as_progress
from explain_cli.result import Explanation
from explain_cli.segmentation import (
    SEGMENTERS,
    Segmentation,
    check_label_map,
    few_segments_advice,
    load_label_map,
    segment,
    to_segmentation_space,
)
from explain_cli.targets import check_callable_target, load_labels, resolve_targets

if TYPE_CHECKING:
    import torch

SMALL_SEGMENT_COUNT = 8
#: A run whose model evaluations are estimated to take longer than this (seconds) is announced.
LONG_RUN_S = 60.0
#: Options that change only the pictures and files, kept with each Explanation for `save` and `render`.
RENDER_OPTIONS = ("boundaries", "save_map", "style", "opacity", "cmap", "scale")
_PLAIN_NAME = re.compile(r"^[^/\\\x00-\x1f]+$")


# ---------------------------------------------------------------------------------------------
# Options: validated once, before anything is loaded.
# ---------------------------------------------------------------------------------------------

@dataclass
class Settings:
    """Validated option values for one method (every option; engine parameters resolved)."""

    values: dict[str, Any]
    params: Any  # the engine's parameter dataclass
    label_map: np.ndarray | None  # a user's segment map (Python array or the file `segments` names)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def engine(self):
        return get_engine(self.values["method"])

    def segmenter(self) -> str:
        """The segmentation algorithm: as configured, else grid for batch methods and slic otherwise."""
        if self.label_map is not None:
            return "labels"
        return self.values["segments"] or ("grid" if self.engine.batch else "slic")

    def segmentation_params(self) -> dict[str, Any]:
        params = dict(self.values["seg_param"] or {})
        for key in ("n_segments", "compactness"):
            if self.values[key] is not None:
                params[key] = self.values[key]
        return params


def settings(*layers: dict[str, Any]) -> Settings:
    """Merge option layers (lowest precedence first), validate every value, resolve the engine's parameters.

    Raises
    ------
    OptionError
        The first bad value, named by its option.
    """
    label_map = None
    clean_layers = []
    for layer in layers:
        layer = dict(layer)
        seg = layer.get("segments")
        if seg is not None and not isinstance(seg, str):
            label_map = check_label_map(seg, "(array)")
            layer["segments"] = None
        clean_layers.append(schema.check(layer))
    values = schema.merge(*clean_layers)
    engine = get_engine(values["method"])
    wrong = schema.misplaced({k: v for layer in clean_layers for k, v in layer.items()}, engine.name)
    if wrong:
        o = schema.OPTIONS[wrong[0]]
        raise OptionError(wrong[0], f"applies to {', '.join(o.methods)}, not {engine.name}")
    params = build_params(engine, values)
    # the resolved engine defaults become the values (so JSON, help and summaries agree)
    values.update({k: getattr(params, k) for k in params.__dataclass_fields__})
    if engine.uses_baseline:
        parse_baseline(values["baseline"])
    if values["size"]:
        parse_size(values["size"])
    for key in ("mean", "std"):
        if values[key]:
            parse_floats(values[key], key)
    if values["name"] is not None and (not _PLAIN_NAME.match(values["name"]) or values["name"] in (".", "..")):
        raise OptionError("name", f"must be a plain file name (no folders), got {values['name']!r}")
    from explain_cli.render import parse_scale

    parse_scale(values["scale"])
    seg = values["segments"]
    if isinstance(seg, str) and seg not in SEGMENTERS:
        label_map = load_label_map(seg)
    from explain_cli.core import resolve_batch_size

    import torch

    resolve_batch_size(values["batch_size"], torch.device("cpu"))  # the value's form, before any loading
    return Settings(values=values, params=params, label_map=label_map)


# ---------------------------------------------------------------------------------------------
# Models and inputs from whatever the caller has.
# ---------------------------------------------------------------------------------------------

def as_model(model: Any, *, weights: str | None = None, device: str = "auto", seed: int = 0) -> LoadedModel:
    """A LoadedModel from a path or ``torchvision:NAME`` string, an ``nn.Module`` or any batch callable."""
    import torch

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)):
        return load_model(str(model), weights=weights, device=device, seed=seed)
    if weights is not None:
        raise OptionError("weights", "applies to torchvision:NAME models; a Python model carries its own weights")
    if isinstance(model, torch.nn.Module):
        params = [p for p in model.parameters()] + [b for b in model.buffers()]
        here = params[0].device if params else torch.device("cpu")
        dev = here if device in (None, "auto") else resolve_device(device)
        if dev != here:
            model = model.to(dev)  # the caller asked for this device explicitly
        kind = "torchscript" if isinstance(model, torch.jit.ScriptModule) else "module"
        return LoadedModel(module=model, source=type(model).__name__, kind=kind, sha256=None, weights=None, device=dev)
    if callable(model):
        dev = torch.device("cpu") if device in (None, "auto") else resolve_device(device)
        name = getattr(model, "__name__", type(model).__name__)
        return LoadedModel(module=model, source=name, kind="callable", sha256=None, weights=None, device=dev)
    raise ExplainError(f"model must be a path, torchvision:NAME, an nn.Module or a callable, not {type(model).__name__}")


def as_inputs(inputs: Any, *, channels: int = 3, max_pixels: int | None = None) -> list[LoadedInput]:
    """LoadedInputs from paths, PIL images, numpy arrays (HWC/HW images) or tensors (CHW or NCHW)."""
    import torch

    if isinstance(inputs, (str, Path)) or not isinstance(inputs, (list, tuple)):
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            inputs = list(inputs)
        else:
            inputs = [inputs]
    loaded = []
    for i, item in enumerate(inputs):
        if isinstance(item, (str, Path)):
            loaded.append(load_input(item, channels=channels, max_pixels=max_pixels))
        else:
            loaded.append(_from_memory(item, f"input{i}", channels))
    if not loaded:
        raise ExplainError("no inputs given; pass one or more images, arrays, tensors or paths")
    return loaded


def _from_memory(obj: Any, name: str, channels: int) -> LoadedInput:
    import torch
    from PIL import Image

    from explain_cli.inputs import _canonical_chw, _display_from_tensor  # the file loader's own rules

    if isinstance(obj, Image.Image):
        obj = np.asarray(obj.convert("RGB" if channels == 3 else "L"))
    if isinstance(obj, np.ndarray):
        array = obj
        if array.dtype.kind not in "biuf":
            raise ExplainError(f"{name}: a numpy array must be numeric, not {array.dtype}")
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise ExplainError(f"{name}: a numpy image must be (H, W) or (H, W, C), got shape {list(obj.shape)}")
        scale = 255.0 if array.dtype == np.uint8 else 65535.0 if array.dtype == np.uint16 else 1.0
        pixels = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32) / scale)
        if pixels.shape[0] == 1 and channels == 3:
            pixels = pixels.expand(3, -1, -1).contiguous()
        if not bool(torch.isfinite(pixels).all()):
            raise ExplainError(f"{name}: the array contains NaN or infinite values")
        display = (pixels.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        if display.shape[-1] == 1:
            display = np.repeat(display, 3, axis=-1)
        kind = "image"
    elif isinstance(obj, torch.Tensor):
        pixels = _canonical_chw(obj.detach().cpu(), Path(name))
        display = _display_from_tensor(pixels)
        kind = "tensor"
    else:
        raise ExplainError(f"{name}: inputs must be paths, PIL images, numpy arrays or tensors, not {type(obj).__name__}")
    digest = hashlib.sha256(pixels.numpy().tobytes()).hexdigest()
    return LoadedInput(path=Path(name), sha256=digest, kind=kind, pixels=pixels, display=display)


# ---------------------------------------------------------------------------------------------
# Preparation: the one path from an input to the model's view and its superpixels.
# ---------------------------------------------------------------------------------------------

@dataclass
class PreparedInput:
    """An input as the model sees it, and its segmentation (None when not asked for)."""

    item: LoadedInput
    spec: Preprocess
    prepared: Prepared
    segmentation: Segmentation | None


def prepare(model: LoadedModel | None, item: LoadedInput, cfg: Settings, *, with_segments: bool = True,
            cache: "OrderedDict | None" = None) -> PreparedInput:
    """Preprocess one input and segment the image the model sees; ``explain segment`` uses this too.

    ``cache`` (if given) memoises by everything that changes the result: the input's content, the
    preprocessing, the segmenter and its parameters, and the user's label map.
    """
    spec = resolve_preprocess(cfg.preprocess, model_default=model.preprocess if model else None,
                              input_kind=item.kind, size=cfg.size, mean=cfg.mean, std=cfg.std)
    algorithm = cfg.segmenter()
    key = None
    if cache is not None:
        label_key = hashlib.sha256(cfg.label_map.tobytes()).hexdigest() if cfg.label_map is not None else None
        key = json.dumps([item.sha256, item.kind, spec.to_dict(), with_segments and algorithm,
                          cfg.segmentation_params(), label_key], sort_keys=True, default=str)
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    prepared = apply_preprocess(item.pixels, spec)
    seg = None
    if with_segments:
        if cfg.label_map is not None:
            seg = _user_segmentation(cfg.label_map, item, prepared, spec)
        else:
            image = to_segmentation_space(prepared.pixels.numpy(), rescale=item.kind == "tensor")
            seg = segment(image, algorithm, **cfg.segmentation_params())
    result = PreparedInput(item=item, spec=spec, prepared=prepared, segmentation=seg)
    if cache is not None:
        cache[key] = result
        while len(cache) > 16:  # a batch visits each input's methods in a row; keep a few
            cache.popitem(last=False)
    return result


def _user_segmentation(labels: np.ndarray, item: LoadedInput, prepared: Prepared, spec: Preprocess) -> Segmentation:
    """A user's label map at the input's resolution (carried through resize and crop) or at the model's."""
    from explain_cli.segmentation import relabel

    model_shape = tuple(prepared.x.shape[1:])
    input_shape = tuple(item.pixels.shape[1:])
    if labels.shape == model_shape:
        mapped = labels
    elif labels.shape == input_shape:
        mapped = labels_to_model(labels, spec)
    else:
        raise OptionError("segments", f"label map is {list(labels.shape)} but the input is {list(input_shape)} "
                          f"and the model sees {list(model_shape)}; give one of those shapes")
    return Segmentation(labels=relabel(mapped), algorithm="labels", params={"shape": list(labels.shape)})


# ---------------------------------------------------------------------------------------------
# Explaining.
# ---------------------------------------------------------------------------------------------

class Explainer:
    """A model loaded once, explained many times: ``Explainer(model, **options).explain(inputs)``.

    Options given here are defaults for every call; options given to :meth:`explain` override them.
    """

    def __init__(self, model: Any, *, progress: Any = None, on_warning: Callable[[str], Any] | None = None,
                 on_info: Callable[[str], Any] | None = None, **options: Any) -> None:
        """``on_warning(message)``, if given, hears each warning the moment it is known (random
        weights, a run estimated to be long, before the engine starts); every warning also ends
        up in the Explanation's ``warnings`` (and the JSON) as before. ``on_info(message)`` hears
        information that is no warning (the runtime probe and its verdict); without it, that
        goes to stderr when ``progress`` is shown.
        """
        self.options = options
        cfg = settings(options)
        self.on_warning = on_warning
        self.on_info = on_info
        self.model = as_model(model, weights=cfg.weights, device=cfg.device, seed=cfg.seed)
        for note in self.model.notes:
            self._emit(note)
        self.progress = progress
        self._cache: OrderedDict = OrderedDict()
        self._runtimes: dict[tuple, LoadedModel] = {}  # (runtime, input shape) -> the model running it

    def _emit(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)

    def _info(self, message: str) -> None:
        if self.on_info is not None:
            self.on_info(message)
        elif self.progress is True:
            import sys

            print(f"explain: {message}", file=sys.stderr, flush=True)

    def _runtime(self, cfg: Settings, x: "torch.Tensor") -> LoadedModel:
        """The model on the runtime asked for, chosen once per input shape and batch size (an export is per shape)."""
        from explain_cli.core import resolve_batch_size
        from explain_cli.models import select_runtime

        batch_size = resolve_batch_size(cfg.batch_size, self.model.device)
        key = (cfg.runtime, tuple(x.shape[1:]), batch_size)
        if key not in self._runtimes:
            self._runtimes[key] = (self.model if cfg.runtime is None or cfg.runtime == self.model.runtime
                                   else select_runtime(self.model, x[0], cfg.runtime, batch_size=batch_size,
                                                       on_info=self._info))
        return self._runtimes[key]

    def settings(self, **options: Any) -> Settings:
        return settings(self.options, options)

    def explain(self, inputs: Any, *, progress: Any = None, **options: Any) -> list["Explanation"]:
        """Explain each input (a batch method: all inputs together); one Explanation each (or one for the batch)."""
        cfg = self.settings(**options)
        items = inputs if _all_loaded(inputs) else as_inputs(inputs, channels=self.model.in_channels or 3,
                                                             max_pixels=cfg.max_pixels)
        engine = cfg.engine
        if engine.batch and len(items) < 2:
            raise ExplainError(f"{engine.name} explains a batch: pass at least 2 inputs (files, or a shell glob like DIR/*.png)")
        bar = as_progress(progress if progress is not None else self.progress)
        groups = [items] if engine.batch else [[item] for item in items]
        return [self._explain_group(group, cfg, bar) for group in groups]

    def prepare(self, inputs: Any, **options: Any) -> list[PreparedInput]:
        """Each input as the model sees it with its superpixels (what ``explain segment`` draws)."""
        cfg = self.settings(**options)
        items = inputs if _all_loaded(inputs) else as_inputs(inputs, channels=self.model.in_channels or 3,
                                                             max_pixels=cfg.max_pixels)
        return [prepare(self.model, item, cfg, cache=self._cache) for item in items]

    def _explain_group(self, items: Sequence[LoadedInput], cfg: Settings, progress: Progress) -> "Explanation":
        import torch

        from explain_cli.core import Evaluator, Problem, resolve_batch_size

        engine = cfg.engine
        started = time.perf_counter()
        first = prepare(self.model, items[0], cfg, cache=self._cache)
        seg = first.segmentation
        if engine.name == "kernelshap" and seg.n_segments < 2:  # before any evaluation, with the knob that helps
            params = ", ".join(f"{k}={v}" for k, v in seg.params.items() if v is not None)
            raise ExplainError(f"{seg.algorithm} segmentation ({params}) gave {seg.n_segments} segment of "
                               f"{items[0].path.name}; kernelshap needs at least 2: {few_segments_advice(seg.algorithm)} "
                               "(see `explain segment`)")
        xs = [first.prepared.x]
        for item in items[1:]:
            other = prepare(self.model, item, cfg, with_segments=False, cache=self._cache)
            if other.prepared.x.shape != first.prepared.x.shape:
                raise ExplainError(
                    f"{engine.name} needs inputs of one size after preprocessing: {items[0].path} gives "
                    f"{list(first.prepared.x.shape)}, {item.path} gives {list(other.prepared.x.shape)}; pass size H,W"
                )
            xs.append(other.prepared.x)
        if engine.batch and len({item.sha256 for item in items}) < len(items):
            raise ExplainError(f"{engine.name} needs distinct inputs: the same content was given twice, "
                               "so swapping groups between them changes nothing")
        device = self.model.device
        x = torch.stack(xs).to(device)
        model = self._runtime(cfg, x)
        callable_target = check_callable_target(cfg.target)
        head = cfg.target[0] if callable_target else None
        evaluator = Evaluator(model.module, device, batch_size=resolve_batch_size(cfg.batch_size, device),
                              output=cfg.output, precision=cfg.precision, progress=progress, head=head)
        chosen_targets: list[int] = []
        with _eval_mode(self.model.module if self.model.kind == "module" else None):
            evaluator.progress = NullProgress()  # f(x) comes before the engine starts the bar (it counts it)
            all_outputs = np.concatenate([evaluator(x[a:b].clone()).cpu().numpy() for a, b in evaluator.chunks(len(x))])
            for note in evaluator.warnings:
                self._emit(note)
            early: list[str] = []  # warnings known before the engine's first evaluation
            seconds_per_eval = evaluator.forward_s / max(1, evaluator.evaluations)
            evaluator.progress = _OnStart(progress, lambda total: self._announce_long_run(
                total, seconds_per_eval, cfg, len(chosen_targets), early, lambda: _probe_cost(model.module, x[0], evaluator)))
            if callable_target:
                labels, targets = [getattr(head, "__name__", "target")] * all_outputs.shape[1], list(range(all_outputs.shape[1]))
            else:
                labels, source = load_labels(cfg.labels, self.model.labels)
                targets = resolve_targets(cfg.target, cfg.top_k, all_outputs.mean(axis=0), labels, source,
                                          model_source=self.model.source)
                evaluator.select_targets(targets)
            chosen_targets[:] = targets
            chosen = all_outputs[:, targets]
            kind = items[0].kind
            problem = Problem(
                x=x if engine.batch else x[0],
                baseline=(make_baseline(cfg.baseline, first.prepared.x, first.spec, input_kind=kind)
                          if engine.uses_baseline else torch.zeros_like(first.prepared.x)).to(device),
                segments=torch.from_numpy(first.segmentation.labels).to(device),
                evaluator=evaluator,
                reference=torch.from_numpy(chosen if engine.batch else chosen[0]).double(),
            )
            attribution = engine.run(problem, cfg.params, torch.Generator().manual_seed(cfg.seed))
            evaluations, forward_s, explained_s = evaluator.evaluations, evaluator.forward_s, time.perf_counter() - started
            evaluation, curves = self._evaluate(problem, attribution, first, cfg)  # counts its own evaluations
        progress.stop()
        seg = first.segmentation
        warnings = list(model.notes) + evaluator.warnings + early + list(attribution.warnings)
        from explain_cli.result import MAX_PANELS

        if len(targets) > MAX_PANELS:
            warnings.append(f"the PNG draws the first {MAX_PANELS} of the {len(targets)} targets; the JSON has them all")
        if seg.n_segments < SMALL_SEGMENT_COUNT and engine.name != "rise":
            warnings.append(f"only {seg.n_segments} superpixels; the map will be coarse: "
                            f"{few_segments_advice(seg.algorithm)} (see `explain segment`)")
        return Explanation(
            method=engine.name,
            params=dict(cfg.params.__dict__),
            seed=cfg.seed,
            output_space="callable" if callable_target else cfg.output,
            baseline=cfg.baseline if engine.uses_baseline else None,
            model=model.describe(),
            input=items[0].describe(),
            preprocess=first.spec.to_dict(),
            geometry=first.prepared.geometry,
            segmentation=seg,
            targets=targets,
            labels=[labels[t] if labels else None for t in targets],
            target_scores=chosen.mean(axis=0),
            attribution=attribution,
            evaluations=evaluations,
            timing={"total_s": explained_s, "forward_s": forward_s,
                    **({"evaluation_s": time.perf_counter() - started - explained_s} if evaluation else {})},
            batch_size=evaluator.batch_size,
            memory={"batch_backoffs": evaluator.backoffs, "peak_cuda_bytes": evaluator.peak_memory()},
            warnings=warnings,
            inputs=[item.describe() for item in items] if engine.batch else None,
            example_scores=chosen if engine.batch else None,
            display=items[0].display,
            stem=(cfg.name or "batch") if engine.batch else items[0].stem,
            signed=engine.signed,
            render_options={k: cfg.values[k] for k in RENDER_OPTIONS},
            evaluation=evaluation,
            curves=curves,
        )

    def _announce_long_run(self, total: int, seconds_per_eval: float, cfg: Settings, n_targets: int,
                           early: list[str], probe: Callable[[], float]) -> None:
        """Warn, before the engine's first evaluation, when its evaluations will take long.

        The cost per evaluation is f(x)'s. A first call also pays the model's warm-up, so when
        that says "long", a small uncounted batch (``probe``) measures the warm cost per image;
        it is still an upper bound (full batches are cheaper per image). The evaluation options
        multiply the count.
        """
        runs = 1 + (max(0, cfg.stability - 1) if cfg.stability >= 2 else 0) + (1 if cfg.sanity else 0)
        evaluations = total * runs
        if cfg.evaluate and not cfg.engine.batch:
            evaluations += 4 * (int(np.ceil(1.0 / cfg.eval_step)) + 1) * max(1, n_targets)
        if evaluations * seconds_per_eval <= LONG_RUN_S:
            return
        seconds_per_eval = min(seconds_per_eval, probe())
        estimate = evaluations * seconds_per_eval
        if estimate <= LONG_RUN_S:
            return
        message = (f"this run will take long: {evaluations:,} model evaluations at up to {seconds_per_eval * 1e3:.3g} ms "
                   f"each, up to about {_duration(estimate)}; lower --samples/--masks/--repeats, "
                   "--n-segments or --size, or use a GPU (--device cuda)")
        early.append(message)
        self._emit(message)

    def _evaluate(self, problem: Any, attribution: Any, first: PreparedInput, cfg: Settings) -> tuple[dict, list]:
        """The evaluation block (faithfulness metrics) the options ask for: more batches on the same core."""
        if not (cfg.evaluate or cfg.mask or cfg.stability >= 2 or cfg.sanity) or cfg.engine.batch:
            return {}, []
        import dataclasses

        import torch

        from explain_cli.core import Evaluator, Problem
        from explain_cli.metrics.suite import run_metrics as evaluate
        from explain_cli.preprocess import map_to_original

        seg = first.segmentation
        maps = attribution.pixel_maps if attribution.pixel_maps is not None else attribution.scores[:, seg.labels]
        pixel_maps = map_to_original(maps, first.prepared.geometry)

        def rerun(seed: int, module: Any) -> np.ndarray:
            ev = problem.evaluator
            other = ev if module is None else Evaluator(module, ev.device, batch_size=ev.batch_size, output=ev.output,
                                                        precision=ev.precision, head=ev.head)
            if module is not None and ev.targets is not None:
                other.targets = ev.targets
            reference = problem.reference if module is None else other(problem.x[None].clone())[0].cpu()
            again = dataclasses.replace(problem, evaluator=other, reference=reference)
            return cfg.engine.run(again, cfg.params, torch.Generator().manual_seed(seed)).scores

        return evaluate(problem, attribution.scores, maps, pixel_maps, cfg, rerun, eager_module=self.model.module)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


PROBE_BATCH = 4


def _probe_cost(module: Any, x: "torch.Tensor", evaluator: Any) -> float:
    """Seconds per image of the model on a small batch of copies of ``x`` (not counted, not kept)."""
    import torch

    batch = x.unsqueeze(0).repeat(PROBE_BATCH, *([1] * x.dim()))  # its own memory: the model may write into it
    start = time.perf_counter()
    with torch.inference_mode(), evaluator._autocast():
        module(batch)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return (time.perf_counter() - start) / PROBE_BATCH


class _OnStart:
    """A progress that calls ``hook(total)`` at the engine's first ``start``, before any of its evaluations."""

    def __init__(self, inner: Any, hook: Callable[[int], Any]) -> None:
        self.inner, self.hook, self.fired = inner, hook, False

    def start(self, total: int, description: str) -> None:
        if not self.fired:
            self.fired = True
            self.hook(int(total))
        self.inner.start(total, description)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _all_loaded(inputs: Any) -> bool:
    return isinstance(inputs, (list, tuple)) and bool(inputs) and all(isinstance(i, LoadedInput) for i in inputs)


class _eval_mode:
    """Run an nn.Module in eval mode and give it back in the mode it came in."""

    def __init__(self, module: Any) -> None:
        """``module``: a live user module (loaders already put their models in eval mode), or None."""
        self.module = module
        self.was_training = bool(getattr(module, "training", False)) and hasattr(module, "train")

    def __enter__(self) -> None:
        if self.was_training:
            self.module.eval()

    def __exit__(self, *exc: Any) -> None:
        if self.was_training:
            self.module.train(True)


def explain(
    model: Any,
    inputs: Any,
    *,
    method: str | None = None,
    target: Any = None,
    top_k: int | None = None,
    segments: Any = None,
    n_segments: int | None = None,
    baseline: str | None = None,
    samples: int | str | None = None,
    seed: int | None = None,
    device: str | None = None,
    batch_size: int | str | None = None,
    preprocess: str | None = None,
    progress: "bool | Callable[[int, int, str], Any] | Progress | None" = None,
    on_warning: Callable[[str], Any] | None = None,
    **options: Any,
) -> list["Explanation"]:
    """Explain what ``model`` looks at in each input.

    Parameters
    ----------
    model
        An ``nn.Module`` (live or TorchScript), any callable mapping a (B, C, H, W) batch to
        scores, or what the CLI accepts: a model file path or ``torchvision:NAME``.
    inputs
        A path or paths, PIL images, numpy arrays ((H, W, C) uint8 or float in [0, 1]), or
        tensors ((C, H, W), or (N, C, H, W) for N inputs; used as model input as they are).
    method, target, top_k, segments, n_segments, baseline, samples, seed, device, batch_size, preprocess
        Options as in ``explain run --help`` (same names; None takes the default). ``segments``
        may also be an (H, W) integer label map (captum's ``feature_mask``) at the input's or the
        model's resolution. ``target`` may be a callable mapping the model's raw output batch to
        one score per row (no softmax applied), to explain any scalar of any model.
    progress
        True for a line on stderr, a callable ``fn(done, total, description)``, or None.
    on_warning
        A callable ``fn(message)`` told each warning as soon as it is known (random weights, a
        long run, before the engine starts); the warnings are in each Explanation either way.
    **options
        Every other option (``kernel_width``, ``masks``, ``output``, ...); see ``explain info``.

    Returns
    -------
    list of Explanation
        One per input (a batch method such as permutation: one for all inputs).

    Raises
    ------
    ExplainError
        Bad options or inputs (``OptionError`` names the option), a model that fails.
    """
    given = dict(method=method, target=target, top_k=top_k, segments=segments, n_segments=n_segments,
                 baseline=baseline, samples=samples, seed=seed, device=device, batch_size=batch_size,
                 preprocess=preprocess, **options)
    given = {k: v for k, v in given.items() if v is not None}
    if "batch_size" in given:
        given["batch_size"] = str(given["batch_size"])
    if callable(target) and not isinstance(target, (list, tuple)):
        given["target"] = [target]
    elif target is not None and not isinstance(target, (list, tuple)):
        given["target"] = [target]
    return Explainer(model, progress=progress, on_warning=on_warning, **given).explain(inputs)
