"""The library's front door: ``explain(model, inputs, **options)`` → ``[Explanation]``.

The CLI, ``explain run --config``, ``explain batch`` and Python callers all reach the engines
through :class:`Explainer`. It accepts live ``nn.Module``s, TorchScript modules, any callable
from a batch of tensors to scores, and the CLI's strings (paths, ``torchvision:NAME``);
inputs as paths, PIL images, numpy arrays and tensors. Nothing here imports Typer or rich.
:func:`make_evaluator` and :func:`make_problem` are the one wiring from options, a model and a
prepared input to what engines and metrics run on (``explain evaluate`` uses them too).

Every check that can fail on user input runs before the first model evaluation.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from explain_cli.announce import Announcer, auto_budget, planned_evaluations, speed_hints
from explain_cli.budget import check_budget
from explain_cli.errors import ExplainError, OptionError, warn_user
from explain_cli.inputs import LoadedInput
from explain_cli.inputs.memory import as_inputs
from explain_cli.metrics.localisation import check_mask_fits
from explain_cli.models import LoadedModel, load_model, resolve_device
from explain_cli.models.heads import imagenet_head
from explain_cli.models.labels import imagenet_labels
from explain_cli.options.groups import Settings
from explain_cli.options.settings import for_task, settings
from explain_cli.preprocess import PreparedInput, prepare
from explain_cli.progress import NullProgress, Progress, as_progress
from explain_cli.result import Explanation
from explain_cli.segmentation import few_segments_advice
from explain_cli.targeting import box_masks, call_task, choose_targets, default_preprocess

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Evaluator, Problem
    from explain_cli.tasks import Target, Task

SMALL_SEGMENT_COUNT = 8


# ---------------------------------------------------------------------------------------------
# The model, and the wiring engines and metrics run on.
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
        from explain_cli.models.detectors import as_detector

        params = [p for p in model.parameters()] + [b for b in model.buffers()]
        here = params[0].device if params else torch.device("cpu")
        dev = here if device in (None, "auto") else resolve_device(device)
        if dev != here:
            model = model.to(dev)  # the caller asked for this device explicitly
        kind = "torchscript" if isinstance(model, torch.jit.ScriptModule) else "module"
        module = as_detector(model)  # a torchvision detector: its list of dicts, with per-box probs where it can
        task = "classification" if module is model else "detection"
        labels_from = imagenet_head(model) if task == "classification" else None  # caption 'tabby (281)'
        return LoadedModel(module=module, source=type(model).__name__, kind=kind, sha256=None, weights=None, device=dev,
                           task=task, in_channels=3 if task == "detection" else None,
                           labels=imagenet_labels() if labels_from else None, labels_from=labels_from)
    if callable(model):
        dev = torch.device("cpu") if device in (None, "auto") else resolve_device(device)
        name = getattr(model, "__name__", type(model).__name__)
        return LoadedModel(module=model, source=name, kind="callable", sha256=None, weights=None, device=dev)
    raise ExplainError(f"model must be a path, torchvision:NAME, an nn.Module or a callable, not {type(model).__name__}")


def make_evaluator(model: LoadedModel, cfg: Settings, *, progress: Progress | None = None,
                   head: Callable[[Any], Any] | None = None) -> "Evaluator":
    """The evaluator that runs ``model`` as the options ask: batch size (auto: by device), output space, precision.

    Without ``head`` it gives every raw output column; :func:`choose_targets` makes it score the targets.
    """
    from explain_cli.core import Evaluator, resolve_batch_size

    return Evaluator(model.module, model.device, batch_size=resolve_batch_size(cfg.model.batch_size, model.device),
                     output=cfg.targets.output, precision=cfg.model.precision, progress=progress, head=head)


def make_problem(cfg: Settings, x: "torch.Tensor", first: PreparedInput, evaluator: "Evaluator",
                 reference: "torch.Tensor", task: Any = None) -> "Problem":
    """What an engine (or a metric) solves: ``x`` on the evaluator's device, (C, H, W) or (N, C, H, W)
    for a batch method; the baseline of ``first`` (zeros for methods without one; ``baseline reference``:
    ``task.image``); its segments (zeros when it was not segmented); ``reference``, f(x) for the targets.
    """
    import torch

    from explain_cli.baselines import make_baseline
    from explain_cli.core import Problem

    device = evaluator.device
    one = first.prepared.x
    baseline = (make_baseline(cfg.baseline, one, first.spec, input_kind=first.item.kind,
                              reference=getattr(task, "image", None)) if cfg.baseline is not None else torch.zeros_like(one))
    segments = (torch.from_numpy(first.segmentation.labels) if first.segmentation is not None
                else torch.zeros(one.shape[1:], dtype=torch.long))
    return Problem(x=x, baseline=baseline.to(device), segments=segments.to(device), evaluator=evaluator,
                   reference=reference)


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
        weights, before the engine starts); every warning also ends up in the Explanation's
        ``warnings`` (and the JSON), and is issued once through :func:`warnings.warn` as an
        :class:`~explain_cli.errors.ExplainWarning`. ``on_info(message)`` hears information that
        is no warning and never goes into the JSON (the runtime probe and its verdict, the
        estimate of a run longer than a minute); without it, that goes to stderr when ``progress``
        is True.
        """
        self.options = options
        cfg = settings(options)
        self.on_warning = on_warning
        self.on_info = on_info
        self._warned: set[str] = set()  # issued through warnings.warn for the explanation under way
        self.model = as_model(model, weights=cfg.model.weights, device=cfg.model.device, seed=cfg.seed)
        for note in self.model.notes:
            self._emit(note)
        self._notes = set(self.model.notes)  # warned once, at load
        self.progress = progress
        self._cache: OrderedDict = OrderedDict()
        self._runtimes: dict[tuple, LoadedModel] = {}  # (runtime, input shape) -> the model running it

    def _emit(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)
        self._warn(message)

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warn_user(message)

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

        runtime = cfg.model.runtime
        if cfg.targets.task != "classification":  # the runtimes' probes and exports compare tensors, not detections
            if runtime not in (None, "eager", "auto", self.model.runtime):
                raise OptionError("runtime", f"{runtime} runs classifiers; task {cfg.targets.task} runs its model as "
                                             "loaded (eager, or onnxruntime for ONNX files): use eager or auto")
            return self.model
        batch_size = resolve_batch_size(cfg.model.batch_size, self.model.device)
        key = (runtime, tuple(x.shape[1:]), batch_size)
        if key not in self._runtimes:
            self._runtimes[key] = (self.model if runtime is None or runtime == self.model.runtime
                                   else select_runtime(self.model, x[0], runtime, batch_size=batch_size,
                                                       on_info=self._info))
        return self._runtimes[key]

    def settings(self, **options: Any) -> Settings:
        """The settings of a call: this explainer's options, overridden by ``options``."""
        return settings(self.options, options)

    def explain(self, inputs: Any, *, progress: Any = None, **options: Any) -> list["Explanation"]:
        """Explain each input (a batch method: all inputs together); one Explanation each (or one for the batch)."""
        cfg = self.settings(**options)
        items = self._inputs(inputs, cfg)
        engine = cfg.engine
        engine.check_inputs(len(items))
        if cfg.evaluation.mask and not engine.batch:  # a mask that cannot be scored fails before any evaluation
            check_mask_fits(cfg.evaluation.mask, [(item.path.name, tuple(item.pixels.shape[-2:])) for item in items])
        bar = as_progress(progress if progress is not None else self.progress)
        cfg = for_task(cfg, self.model.task)
        task = call_task(cfg, self.model)  # reads a region or embeds a reference once, for every input
        groups = [items] if engine.batch else [[item] for item in items]
        done = []
        for group in groups:
            self._warned = set(self._notes)
            done.append(self._explain_group(group, cfg, task, bar))
            for message in done[-1].warnings:  # those the engine found, and any not issued yet
                self._warn(message)
        return done

    def prepare(self, inputs: Any, **options: Any) -> list[PreparedInput]:
        """Each input as the model sees it with its superpixels (what ``explain segment`` draws)."""
        cfg = self.settings(**options)
        cfg = for_task(cfg, self.model.task)
        return [prepare(item, cfg, model_default=default_preprocess(self.model, cfg, item), cache=self._cache)
                for item in self._inputs(inputs, cfg)]

    def _inputs(self, inputs: Any, cfg: Settings) -> list[LoadedInput]:
        return as_inputs(inputs, channels=self.model.in_channels or 3, max_pixels=cfg.input.max_pixels)

    def _batch(self, items: Sequence[LoadedInput], cfg: Settings) -> tuple[PreparedInput, "torch.Tensor"]:
        """The first input prepared and segmented, and every input's model view stacked (N, C, H, W) on the device."""
        import torch

        engine = cfg.engine
        first = prepare(items[0], cfg, model_default=default_preprocess(self.model, cfg, items[0]), cache=self._cache)
        seg = first.segmentation
        assert seg is not None  # prepared with segments
        if engine.name == "kernelshap" and seg.n_segments < 2:  # before any evaluation, with the knob that helps
            params = ", ".join(f"{k}={v}" for k, v in seg.params.items() if v is not None)
            raise ExplainError(f"{seg.algorithm} segmentation ({params}) gave {seg.n_segments} segment of "
                               f"{items[0].path.name}; kernelshap needs at least 2: {few_segments_advice(seg.algorithm)} "
                               "(see `explain segment`)")
        xs = [first.prepared.x]
        for item in items[1:]:
            other = prepare(item, cfg, model_default=default_preprocess(self.model, cfg, item), with_segments=False,
                            cache=self._cache)
            if other.prepared.x.shape != first.prepared.x.shape:
                raise ExplainError(
                    f"{engine.name} needs inputs of one size after preprocessing: {items[0].path} gives "
                    f"{list(first.prepared.x.shape)}, {item.path} gives {list(other.prepared.x.shape)}; pass `size` H,W",
                )
            xs.append(other.prepared.x)
        if engine.batch and len({item.sha256 for item in items}) < len(items):
            raise ExplainError(f"{engine.name} needs distinct inputs: the same content was given twice, "
                               "so swapping groups between them changes nothing")
        return first, torch.stack(xs).to(self.model.device)

    def _explain_group(self, items: Sequence[LoadedInput], cfg: Settings, task: "Task | None",
                       progress: Progress) -> "Explanation":
        import torch

        engine = cfg.engine
        started = time.perf_counter()
        first, x = self._batch(items, cfg)
        evaluator = make_evaluator(self.model, cfg, progress=progress)

        def f_x() -> "torch.Tensor":  # uncounted by the progress: the engine's bar counts it when it starts
            evaluator.progress = NullProgress()
            return torch.cat([evaluator(x[a:b].clone()).cpu() for a, b in evaluator.chunks(len(x))])

        with eval_mode(self.model.module if self.model.kind == "module" else None):
            evaluator.progress = NullProgress()
            # f(x) on the model as loaded, so every check on the user's input comes first; sets the head
            details, labels, fx = choose_targets(cfg, task, self.model, evaluator, x, first)
            for note in evaluator.warnings:
                self._emit(note)
            problem = make_problem(cfg, x if engine.batch else x[0], first, evaluator, torch.zeros(0), task)
            check_budget(cfg, x, problem.n_segments, fx.shape[1], evaluator)  # refused from arithmetic
            model = self._runtime(cfg, x)  # may time the runtimes once: after every check, before the engine
            if model.module is not evaluator.model:  # f(x) again on the runtime the engine uses, counted once
                evaluator.model, counted = model.module, (evaluator.evaluations, evaluator.forward_s)
                fx = f_x()
                evaluator.evaluations, evaluator.forward_s = counted
            chosen = fx.numpy()
            problem.reference = torch.from_numpy(chosen if engine.batch else chosen[0]).double()
            shape = (int(x.shape[-2]), int(x.shape[-1]))
            evaluator.progress = Announcer(
                progress, evaluator, runtime=model.runtime,
                evaluations=lambda total: planned_evaluations(total, cfg, chosen.shape[1], shape),
                hints=lambda: speed_hints(model, tuple(x.shape[1:]), evaluator.batch_size), tell=self._info,
                auto=auto_budget(cfg))
            attribution = engine.run(problem, cfg.params, torch.Generator().manual_seed(cfg.seed))
            evaluations, forward_s, explained_s = evaluator.evaluations, evaluator.forward_s, time.perf_counter() - started
            evaluation, curves = self._evaluate(problem, attribution, first, cfg, details)  # counts its own evaluations
        progress.stop()
        seg = first.segmentation
        assert seg is not None  # prepared with segments
        warnings = list(model.notes) + evaluator.warnings + list(attribution.warnings)
        from explain_cli.result import MAX_PANELS

        if chosen.shape[1] > MAX_PANELS:
            warnings.append(f"the PNG draws the first {MAX_PANELS} of the {chosen.shape[1]} targets; the JSON has them all")
        if seg.n_segments < SMALL_SEGMENT_COUNT and engine.name != "rise":
            warnings.append(f"only {seg.n_segments} superpixels; the map will be coarse: "
                            f"{few_segments_advice(seg.algorithm)} (see `explain segment`)")
        return Explanation(
            method=engine.name,
            params={**cfg.params.__dict__, **({"task": task.params()} if task and task.name != "classification" else {})},
            seed=cfg.seed,
            output_space="callable" if task is None else task.output_space,
            baseline=cfg.baseline.spec if cfg.baseline is not None else None,
            model=model.describe(),
            input=items[0].describe(),
            preprocess=first.spec.to_dict(),
            geometry=first.prepared.geometry,
            segmentation=seg,
            targets=list(range(chosen.shape[1])) if details is None else [t.index for t in details],
            labels=labels,
            target_scores=chosen.mean(axis=0),
            task="callable" if task is None else task.name,
            details=details,
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
            stem=(cfg.output.name or "batch") if engine.batch else items[0].stem,
            signed=engine.signed,
            render_options=cfg.output,
            evaluation=evaluation,
            curves=curves,
        )

    def _evaluate(self, problem: "Problem", attribution: Any, first: PreparedInput, cfg: Settings,
                  details: list["Target"] | None) -> tuple[dict, list]:
        """The evaluation block (faithfulness metrics) the options ask for: more batches on the same core.

        Targets with a box (detection) are their own pointing and energy masks unless `mask` names one.
        """
        if not cfg.evaluation.any() or cfg.engine.batch:
            return {}, []
        import dataclasses

        import torch

        from explain_cli.core import Evaluator
        from explain_cli.metrics.suite import run_metrics
        from explain_cli.preprocess import map_to_original

        seg = first.segmentation
        assert seg is not None  # prepared with segments
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

        masks = box_masks(details, first.prepared.geometry.original)
        return run_metrics(problem, attribution.scores, maps, pixel_maps, cfg.evaluation, rerun,
                           eager_module=self.model.module, masks=masks, task=cfg.targets.task)


class eval_mode:
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
    on_info: Callable[[str], Any] | None = None,
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
        A callable ``fn(message)`` told each warning as soon as it is known (random weights,
        before the engine starts); the warnings are in each Explanation either way, and each is
        issued through :func:`warnings.warn` as an ``ExplainWarning``.
    on_info
        A callable ``fn(message)`` told information that is no warning and stays out of the
        JSON: the runtime probe and its verdict, the estimate of a run longer than a minute
        (default: stderr when ``progress`` is True).
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
    if target is not None and not isinstance(target, (list, tuple)):  # one target, a callable included
        given["target"] = [target]
    return Explainer(model, progress=progress, on_warning=on_warning, on_info=on_info, **given).explain(inputs)
