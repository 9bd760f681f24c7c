"""Option layers in, typed settings out: the one place options are validated, parsed and grouped.

:func:`settings` merges layers (lowest precedence first), checks every value against the schema,
resolves the engine's parameters, runs each free-form option's ``parse`` hook once and returns
:class:`~explain_cli.options.groups.Settings`. Every check that can fail on user input runs here,
before anything is loaded.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from explain_cli.errors import OptionError, suggest
from explain_cli.options import schema
from explain_cli.options.groups import (
    DRAWING,
    EvaluationOptions,
    InputOptions,
    ModelOptions,
    OutputOptions,
    SegmentationOptions,
    Settings,
    TargetOptions,
)


def settings(*layers: dict[str, Any]) -> Settings:
    """Merge option layers (lowest precedence first), validate every value, resolve the engine's parameters.

    ``segments`` may be an (H, W) label map (an array or tensor) in a Python layer.

    Raises
    ------
    OptionError
        The first bad value, named by its option.
    """
    from explain_cli.engines import build_params, get_engine
    from explain_cli.inputs.maps import check_label_map, is_label_map, load_label_map

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
    given = {k: v for layer in clean_layers for k, v in layer.items() if v is not None}
    wrong = schema.misplaced(given, engine.name)
    if wrong:
        o = schema.OPTIONS[wrong[0]]
        raise OptionError(wrong[0], f"applies to {', '.join(o.methods or ())}, not {engine.name}")
    if values["task"] is not None:  # else the model's declared task decides, once it is loaded (for_task)
        _check_task(given, values["task"], engine)
    params = build_params(engine, values)
    # the resolved engine defaults become the values (so JSON, help and summaries agree)
    values.update({f.name: getattr(params, f.name) for f in dataclasses.fields(params)})
    typed = _parsed(values, skip=() if engine.uses_baseline else ("baseline",))
    if is_label_map(typed["segments"]):  # the label-map file `segments` names, read within `max_pixels`
        label_map = load_label_map(typed["segments"], max_pixels=values["max_pixels"])
    return Settings(
        method=values["method"],
        seed=values["seed"],
        baseline=typed["baseline"],
        params=params,
        targets=_group(TargetOptions, typed, target=tuple(values["target"]), box=tuple(values["box"] or ())),
        input=_group(InputOptions, typed),
        segmentation=_segmentation(values, label_map, batch=engine.batch),
        model=_group(ModelOptions, typed),
        output=_group(OutputOptions, typed),
        evaluation=_group(EvaluationOptions, typed),
        values=values,
        given=given if label_map is None or "segments" in given else {**given, "segments": label_map},
    )


def for_task(cfg: Settings, declared: str) -> Settings:
    """``cfg`` with its task settled: the ``task`` option, else ``declared`` (the model's own task).

    The task's options are checked (another task's option is refused) and its engine defaults
    (RISE's grid and p1 for detection) apply where no layer set the value.

    Raises
    ------
    OptionError
        An option of another task, or a batch method with a task whose targets belong to one image.
    """
    from explain_cli.tasks import TASKS

    name = cfg.targets.task or declared
    if name not in TASKS:
        raise OptionError("task", f"must be one of {', '.join(TASKS)}, got {name!r}")
    _check_task(cfg.given, name, cfg.engine)
    changes = {k: v for k, v in TASKS[name].engine_defaults.get(cfg.method, {}).items() if k not in cfg.given}
    params = dataclasses.replace(cfg.params, **changes) if changes else cfg.params
    return dataclasses.replace(cfg, params=params, targets=dataclasses.replace(cfg.targets, task=name),
                               values={**cfg.values, **changes, "task": name})


def _check_task(given: dict[str, Any], task: str, engine: Any) -> None:
    from explain_cli.tasks import TASKS

    wrong = schema.misplaced_for_task(given, task)
    if wrong:
        raise schema.task_error(wrong[0], task)
    if str(given.get("baseline", "")).strip().lower() == "reference" and task != "similarity":
        raise OptionError("baseline", f"reference applies to task similarity (a reference image), not {task}")
    if engine.batch and TASKS[task].per_image:
        raise OptionError("method", f"{engine.name} explains a batch of inputs together, but task {task}'s targets "
                                    "belong to one image; choose another method")


def _parsed(values: dict[str, Any], skip: tuple[str, ...]) -> dict[str, Any]:
    """Every value through its option's parse hook (set values only; ``skip``: options the run ignores)."""
    out = dict(values)
    for name, option in schema.OPTIONS.items():
        if name in skip:
            out[name] = None
        elif option.parse is not None and values[name] is not None:
            out[name] = option.parse(values[name])
    return out


def _group(cls: type, typed: dict[str, Any], **given: Any) -> Any:
    return cls(**{f.name: given[f.name] if f.name in given else typed[f.name] for f in dataclasses.fields(cls)})


def _segmentation(values: dict[str, Any], label_map: Any, *, batch: bool) -> SegmentationOptions:
    """The segmenter (as configured, else grid for batch methods and slic otherwise) and its checked parameters."""
    if label_map is not None:
        return SegmentationOptions(algorithm="labels", params={}, label_map=label_map)
    algorithm = values["segments"] or ("grid" if batch else "slic")
    params = dict(values["seg_param"] or {})
    for key in ("n_segments", "compactness"):
        if values[key] is not None:
            params[key] = values[key]
    schema.check_segmentation(algorithm, params)
    return SegmentationOptions(algorithm=algorithm, params=params)


def output_options(base: OutputOptions, **changes: Any) -> OutputOptions:
    """``base`` with drawing options changed (``opacity=0.5``), each checked and parsed like any option.

    Raises
    ------
    OptionError
        A name that is not a drawing option (misspelt, or one that does not change the picture), or a bad value.
    """
    parsed = {}
    for name, value in changes.items():
        if name not in DRAWING:
            hint = "" if name in schema.OPTIONS else suggest(name, DRAWING, quote=True)
            raise OptionError(name, f"is not a drawing option; render takes {', '.join(DRAWING)}"
                              + (f" ({hint})" if hint else ""))
        option = schema.OPTIONS[name]
        checked = option.check(value)
        parsed[name] = option.parse(checked) if option.parse is not None and checked is not None else checked
    return dataclasses.replace(base, **parsed)


def default_output() -> OutputOptions:
    """The output options as declared (what an Explanation made without options draws with)."""
    return _group(OutputOptions, _parsed(schema.merge(), skip=()))
