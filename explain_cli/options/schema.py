"""The option schema: every option of an explanation, declared once.

Each :class:`Option` has one name (``n_segments``), a kind, a default, a help sentence, its
choices or range, and the methods that use it. The CLI flags (``--n-segments``), the YAML keys
(``n_segments``), the keyword arguments of :func:`explain_cli.explain`, ``explain info`` and the
README's option table are all derived from :data:`OPTIONS`; nothing else writes a default.

Engine parameters (``samples``, ``kernel_width``, ...) are declared where the engine lives, as
fields of its parameter dataclass (:func:`explain_cli.params.param`), and collected here. An
option several engines share with different defaults (``samples``) has a default per method.

A free-form option (``size``, ``baseline``, ``scale``, ...) declares a ``parse`` hook that turns
its text into a typed value; :mod:`explain_cli.options.settings` calls it once and hands the
result on in typed groups. Segmenter parameters (``seg_param`` keys) have their ranges here too.

Precedence, highest first, enforced only by :func:`merge`: call/command line > method entry >
job > ``defaults`` (YAML) > the defaults declared here.

Run ``python -m explain_cli.options`` to print the README's option table.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from explain_cli.errors import OptionError, suggest
from explain_cli.params import check_value, field_type

#: The tasks (explain_cli.tasks) the `task` option offers.
WIRED_TASKS = ("classification", "detection", "segmentation", "similarity")
#: Help panels, in the order `explain run --help` shows them.
GROUPS = ("Method", "Targets", "Segmentation", "Input", "Model", "Output", "Evaluation", "Run")


@dataclass(frozen=True)
class Option:
    """One option of an explanation, with everything every interface needs to know about it."""

    name: str  # the one word: Python keyword, YAML key; CLI flag with dashes
    kind: str  # int | float | str | bool | list (of str, repeatable) | dict (KEY=VALUE, repeatable)
    default: Any  # None: unset (or, with `per_method`, the engine's default)
    help: str  # one sentence
    group: str  # help panel
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    methods: tuple[str, ...] | None = None  # methods that use it; None: all
    tasks: tuple[str, ...] | None = None  # tasks that read it (explain_cli.tasks); None: all
    per_method: dict[str, Any] = field(default_factory=dict)  # engine defaults by method
    short: str | None = None  # one-letter CLI alias, e.g. -n
    metavar: str | None = None
    shared: bool = False  # a job's methods share it (segmentation, preprocessing, model): YAML per job only
    yaml: bool = True  # a YAML key (false: command-line only, e.g. quiet)
    allow_auto: bool = False  # a number that some methods also take as "auto" (samples, masks)
    parse: Callable[[Any], Any] | None = None  # free-form text -> its typed value, run once at resolution
    objects: bool = False  # a path, or in Python also an array, tensor or image (passed on as it is)

    @property
    def flag(self) -> str:
        return flag(self.name)

    def meta(self) -> dict[str, Any]:
        return {"choices": self.choices, "minimum": self.minimum, "maximum": self.maximum,
                "exclusive_minimum": self.exclusive_minimum, "allow_auto": self.allow_auto}

    def default_text(self) -> str:
        """The default as help and docs show it: one value, or one per method."""
        if self.per_method:
            values: dict[str, list[str]] = {}
            for method, value in self.per_method.items():
                values.setdefault(_show(value), []).append(method)
            if len(values) == 1:
                return next(iter(values))
            return ", ".join(f"{v} ({'/'.join(ms)})" for v, ms in values.items())
        return _show(self.default)

    def check(self, value: Any) -> Any:
        """Validate and normalise one value from any interface; None stays None (unset)."""
        if value is None:
            return None
        if self.objects and not isinstance(value, (str, int, float)):
            return str(value) if hasattr(value, "__fspath__") else value  # read by the front door (task_inputs)
        if self.kind in ("int", "float", "bool", "str"):
            kind = {"int": int, "float": float, "bool": bool, "str": str}[self.kind]
            if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)  # YAML reads `size: 224` as a number
            if kind is str and not isinstance(value, str):
                raise OptionError(self.name, f"must be a string, got {type(value).__name__} {value!r}")
            return check_value(self.name, value, kind, self.meta())
        if self.kind == "list":
            # a tuple of 4 or 5 numbers (+ label) is one box target, not four targets
            items = value if isinstance(value, (list, tuple)) and not _box_tuple(value) else [value]
            return [self._item(v) for v in items]
        if self.kind == "dict":
            if not isinstance(value, dict):
                raise OptionError(self.name, f"must be a mapping of KEY: VALUE, got {type(value).__name__}")
            out = {}
            for k, v in value.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise OptionError(self.name, f"{k} must be a finite number, got {v!r}")
                out[str(k).replace("-", "_")] = v
            return out
        return value

    def _item(self, value: Any) -> Any:
        if callable(value) or (not isinstance(value, (str, int)) or isinstance(value, bool)):
            return value  # Python-only values (a target callable) are checked where they are used
        return str(value)


def _box_tuple(value: Any) -> bool:
    from explain_cli.tasks.boxes import is_box

    return isinstance(value, tuple) and is_box(value)


def flag(name: str) -> str:
    """The command line's spelling of an option: ``n_segments`` -> ``--n-segments``."""
    return "--" + name.replace("_", "-")


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


# ---------------------------------------------------------------------------------------------
# The options that are not an engine's own parameters.
# ---------------------------------------------------------------------------------------------

def _general() -> list[Option]:
    from pathlib import Path

    from explain_cli.baselines import BASELINE_HELP
    from explain_cli.core import OUTPUT_SPACES, PRECISIONS
    from explain_cli.engines import ENGINES
    from explain_cli.inputs.limits import MAX_PIXELS, MIN_SIDE
    from explain_cli.inputs.maps import parse_segments
    from explain_cli.models.runtime import RUNTIMES
    from explain_cli.options.parse import check_name, parse_baseline, parse_batch_size, parse_mean, parse_size, parse_std
    from explain_cli.preprocess import PRESET_NAMES
    from explain_cli.render.colormaps import NAMES as CMAPS
    from explain_cli.render.figures import DEFAULT_OPACITY, DEFAULT_STYLE, STYLES
    from explain_cli.render.scale import DEFAULT_SCALE, parse_scale
    from explain_cli.segmentation import DEFAULT_N_SEGMENTS, SEGMENTERS
    from explain_cli.tasks import TASKS
    from explain_cli.tasks.boxes import BOX_FORM
    from explain_cli.tasks.detection import OBJECTNESS
    from explain_cli.tasks.detection_formats import DECODERS, YoloSettings

    det, seg, sim = ("detection",), ("segmentation",), ("similarity",)
    yolo = YoloSettings()
    return [
        Option("method", "str", "kernelshap", "Explanation method.", "Method", choices=tuple(ENGINES), short="-m"),
        Option("seed", "int", 0, "Seed for every random choice; same seed, same numbers.", "Method",
               minimum=0, maximum=2**63 - 1),
        Option("baseline", "str", "blur", BASELINE_HELP, "Method", metavar="zero|mean|blur|reference|value:R,G,B",
               parse=parse_baseline),
        Option("target", "list", ["auto"], "auto, a class index or a label (repeatable); in Python also a callable "
               "mapping the model's output batch to one score per row.", "Targets", short="-t", metavar="TARGET"),
        Option("top_k", "int", None, "With target auto: explain the K top classes, or at most K detections, highest "
               "first (same evaluations as one). [default: 1 class or prompt; every detection above min_score; every "
               "class on min_area]", "Targets",
               short="-k", minimum=1, maximum=100_000),
        Option("labels", "str", None, "Class names: a text file (one per line), a JSON list, or 'imagenet'.",
               "Targets", shared=True, metavar="FILE"),
        Option("task", "str", None, "What the model's outputs are: class scores, boxes (torchvision's format; "
               "each box scored by D-RISE's similarity), class maps (the mean of a class over a region) or embeddings "
               "(cosine similarity to a reference). [default: the model's declared task, else classification]",
               "Targets", shared=True, choices=WIRED_TASKS),
        Option("output", "str", "probs", "Explain logits or softmax probabilities.", "Targets", choices=OUTPUT_SPACES,
               tasks=tuple(n for n in WIRED_TASKS if "output" in TASKS[n].options)),
        Option("min_score", "float", 0.5, "Explain the detections scoring at least this (with target auto or a class).",
               "Targets", minimum=0.0, maximum=1.0, tasks=det),
        Option("box", "list", [], f"A box to explain, {BOX_FORM.replace('pixels', 'pixels of the input image')}; "
               "repeatable; it may be an object the detector missed.", "Targets", metavar="X1,Y1,X2,Y2[,LABEL]",
               tasks=det),
        Option("decoder", "str", "auto", "How detector outputs are read: auto (torchvision's list of dicts, or padded "
               "tensors), or yolo (raw (batch, 4 + classes, anchors) tensors, decoded with NMS).", "Targets",
               shared=True, choices=DECODERS, tasks=det),
        Option("objectness", "str", "auto", "O_j in the box score: the detector's score, none (1), or auto (the "
               "model's objectness if given, else the score where class probabilities cannot carry it, else 1).",
               "Targets", choices=OBJECTNESS, tasks=det),
        Option("yolo_conf", "float", yolo.conf, "decoder yolo: keep anchors whose top class score exceeds this.",
               "Targets", shared=True, minimum=0.0, maximum=1.0, tasks=det),
        Option("nms_iou", "float", yolo.iou, "decoder yolo: IoU of class-aware non-maximum suppression.", "Targets",
               shared=True, minimum=0.0, maximum=1.0, tasks=det),
        Option("max_det", "int", yolo.max_det, "decoder yolo: detections kept per image, highest score first.",
               "Targets", shared=True, minimum=1, maximum=100_000, tasks=det),
        Option("region", "str", None, "segmentation: the region to explain, a mask or label map (PNG or .npy at the "
               "input's resolution; 0 outside, one target per id); in Python also an array. [default: each class "
               "predicted on at least min_area, over its own predicted region]", "Targets", metavar="FILE",
               tasks=seg, objects=True),
        Option("min_area", "float", 0.02, "segmentation, without region: explain the classes predicted on at least "
               "this share of the model's map.", "Targets", minimum=0.0, maximum=1.0, exclusive_minimum=True, tasks=seg),
        Option("reference", "str", None, "similarity: what the input is compared with, an image (embedded by the same "
               "model and preprocessing), a .npy (D,) embedding, or (K, D) prompt embeddings (zero-shot, named by "
               "labels); in Python also a tensor, an array or an image.", "Targets", metavar="IMAGE|FILE.npy",
               tasks=sim, objects=True),
        Option("temperature", "float", 100.0, "similarity with K prompts: τ of softmax(τ · cos) over the prompts "
               "(CLIP's 100).", "Targets", minimum=0.0, maximum=1e6, exclusive_minimum=True, tasks=sim),
        Option("segments", "str", None, "Superpixel algorithm, or a label-map file (.npy or .png, one integer id per "
               "pixel, at the input's or the model's resolution). [default: slic; grid for permutation]",
               "Segmentation", shared=True, metavar="|".join(SEGMENTERS) + "|FILE", parse=parse_segments),
        Option("n_segments", "int", None, f"About how many superpixels (slic, watershed, grid). [default: {DEFAULT_N_SEGMENTS}]",
               "Segmentation", shared=True, minimum=1, maximum=100_000),
        Option("compactness", "float", None, "slic/watershed compactness (slic 10 for colour images).",
               "Segmentation", shared=True, minimum=0.0, maximum=1e6),
        Option("seg_param", "dict", {}, "Other segmenter parameter, KEY=VALUE (repeatable); see `explain info`.",
               "Segmentation", shared=True, metavar="KEY=VALUE"),
        Option("preprocess", "str", "auto", "auto: the model's own transforms for images, none for tensors.", "Input",
               shared=True, choices=("auto", "model", *PRESET_NAMES)),
        Option("size", "str", None, "Resize the whole image to H[,W] (no crop).", "Input", shared=True, metavar="H[,W]",
               parse=parse_size),
        Option("mean", "str", None, "Normalisation mean per channel, e.g. 0.5,0.5,0.5.", "Input", shared=True,
               metavar="M[,M,M]", parse=parse_mean),
        Option("std", "str", None, "Normalisation std per channel.", "Input", shared=True, metavar="S[,S,S]",
               parse=parse_std),
        Option("max_pixels", "int", MAX_PIXELS, "Largest image (height × width) read; checked before decoding.",
               "Input", shared=True, minimum=MIN_SIDE * MIN_SIDE, maximum=178_956_970),
        Option("weights", "str", None, "torchvision:ARCH weights: a state-dict file, or DEFAULT to download "
               "torchvision's. Omitted: random weights.", "Model", shared=True, metavar="FILE|DEFAULT"),
        Option("runtime", "str", "auto", "What runs the model: auto, the fastest runtime that matches eager "
               "(measured once per model, shape, batch size and machine, then cached; ONNX files run on onnxruntime); "
               "eager PyTorch (bit-for-bit comparisons with other tools); compile (torch.compile); onnxruntime "
               "(a cached ONNX export checked against eager). Runtimes differ by float rounding only.",
               "Model", shared=True, choices=RUNTIMES),
        Option("device", "str", "auto", "auto | cpu | cuda[:N] | mps.", "Model", shared=True, metavar="DEVICE"),
        Option("precision", "str", "fp32", "Autocast precision (CUDA only).", "Model", choices=PRECISIONS),
        Option("batch_size", "str", "auto", "Perturbations per forward pass, or auto (64 on CPU, 128 on CUDA).",
               "Model", short="-b", metavar="N|auto", parse=parse_batch_size),
        Option("out", "str", "explanations", "Output folder (created if needed).", "Output", short="-o",
               metavar="DIR", parse=Path),
        Option("name", "str", None, "Output file name for a batch method's result. [default: batch]", "Output",
               methods=tuple(n for n, e in ENGINES.items() if e.batch), metavar="NAME", parse=check_name),
        Option("save_map", "bool", False, "Also write NAME.METHOD.npy, (K,H,W) maps at the original resolution.",
               "Output"),
        Option("boundaries", "bool", True, "Draw superpixel boundaries and number the top segments.", "Output"),
        Option("style", "str", DEFAULT_STYLE, "Heatmap style: the map over a grey copy of the image, or image and map side by side.",
               "Output", choices=STYLES),
        Option("opacity", "float", DEFAULT_OPACITY, "Map opacity in the overlay style.", "Output", minimum=0.0, maximum=1.0),
        Option("cmap", "str", None, "Colour map. [default: RdBu_r; RISE is drawn around its mean]",
               "Output", choices=tuple(CMAPS)),
        Option("scale", "str", DEFAULT_SCALE, "Colour scale: one per figure, one per panel, or fixed:LO,HI to compare "
               "maps across images.", "Output", metavar="figure|panel|fixed:LO,HI", parse=parse_scale),
        Option("evaluate", "bool", False, "Add faithfulness metrics: deletion and insertion AUC with random-order "
               "references (the JSON's evaluation block) and NAME.METHOD.curves.png.", "Evaluation"),
        Option("deletion", "str", "road", "What deleted pixels become: road (noisy linear imputation, Rong et al. "
               "2022; does not reward out-of-distribution pixels), blur, or baseline.", "Evaluation",
               choices=("road", "blur", "baseline")),
        Option("eval_step", "float", 0.01, "Share of the pixels moved per deletion/insertion step.", "Evaluation",
               minimum=0.001, maximum=0.5),
        Option("mask", "str", None, "The object's mask (PNG or .npy, non-zero = object, at the input's resolution): "
               "adds pointing_hit and energy_in_mask.", "Evaluation", metavar="FILE"),
        Option("tolerance", "float", 15.0, "Pointing game tolerance in pixels of the input.", "Evaluation",
               minimum=0.0, maximum=10_000.0),
        Option("stability", "int", 0, "Top-5 Jaccard over this many seeds (0: off).", "Evaluation",
               minimum=0, maximum=100),
        Option("sanity", "bool", False, "Model-randomisation check: rank correlation between the maps of the model "
               "and of a copy with re-initialised weights (must be low).", "Evaluation"),
        Option("quiet", "bool", False, "No progress bar or warnings.", "Run", short="-q", yaml=False),
        Option("no_limit", "bool", False, "Run even when the estimated memory or time is over the bounds that "
               "`explain info` lists.", "Run"),
    ]


def _engine_options() -> list[Option]:
    """Options collected from every engine's parameter dataclass, merged by name."""
    from explain_cli.engines import ENGINES

    merged: dict[str, Option] = {}
    for engine in ENGINES.values():
        for f in dataclasses.fields(engine.params):
            kind = field_type(f).__name__
            meta = f.metadata
            if f.name in merged:
                old = merged[f.name]
                merged[f.name] = dataclasses.replace(
                    old, methods=(*(old.methods or ()), engine.name), per_method={**old.per_method, engine.name: f.default},
                    allow_auto=old.allow_auto or bool(meta.get("allow_auto")),
                )
                continue
            merged[f.name] = Option(
                f.name, kind, None, meta.get("help", ""), "Method", choices=meta.get("choices"),
                minimum=meta.get("minimum"), maximum=meta.get("maximum"),
                exclusive_minimum=bool(meta.get("exclusive_minimum")), methods=(engine.name,),
                per_method={engine.name: f.default}, metavar=meta.get("metavar"),
                short="-n" if f.name == "samples" else None, allow_auto=bool(meta.get("allow_auto")),
            )
    return list(merged.values())


def _build() -> dict[str, Option]:
    options = {o.name: o for o in _general()}
    for o in _engine_options():
        if o.name in options:
            raise RuntimeError(f"engine parameter {o.name!r} clashes with a general option")
        options[o.name] = o
    return options


OPTIONS: dict[str, Option] = _build()

#: Ranges (inclusive) of the segmenters' own parameters, the ``seg_param`` keys; ``n_segments`` and
#: ``compactness`` have their options' ranges. Any other parameter must be a finite number.
SEG_PARAM_RANGES: dict[str, tuple[float, float]] = {
    "sigma": (0.0, 100.0), "kernel_size": (0.0, 100.0), "max_dist": (0.0, 1e6), "ratio": (0.0, 1.0),
    "scale": (0.0, 1e6), "min_size": (0, 1_000_000),
}


def check_segmentation(algorithm: str, params: dict[str, Any]) -> None:
    """Refuse parameters ``algorithm`` does not take and values outside their declared ranges."""
    from explain_cli.segmentation import check_segmenter_params

    ranges = {n: (float(OPTIONS[n].minimum or 0), float(OPTIONS[n].maximum or 0)) for n in ("n_segments", "compactness")}
    check_segmenter_params(algorithm, params, {**ranges, **SEG_PARAM_RANGES})


def unknown(name: str, where: str = "option") -> OptionError:
    """An error for an unknown option name, with the closest known one."""
    close = suggest(name, OPTIONS, quote=True)
    hint = f"; {close}" if close else f"; see `explain info` for the {len(OPTIONS)} options"
    return OptionError(name, f"is not a known {where}{hint}")


def check(values: dict[str, Any]) -> dict[str, Any]:
    """Validate option values from any interface (unset = None is kept); unknown names are errors."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in OPTIONS:
            raise unknown(name)
        out[name] = OPTIONS[name].check(value)
    return out


def merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """One set of option values from layers given lowest precedence first; None never overrides.

    The result holds every option: the declared default where no layer set it (None for engine
    parameters, whose default the engine applies for the chosen method).
    """
    values = {name: _copy(o.default) for name, o in OPTIONS.items()}
    for layer in layers:
        for name, value in layer.items():
            if value is not None:
                values[name] = value
    return values


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value


def used_by(method: str) -> list[Option]:
    return [o for o in OPTIONS.values() if o.methods is None or method in o.methods]


def misplaced_for_task(values: dict[str, Any], task: str) -> list[str]:
    """Names of task options that are set but that ``task`` does not read."""
    return [n for n, v in values.items() if v is not None and task not in (OPTIONS[n].tasks or (task,))]


def task_error(name: str, task: str) -> OptionError:
    """The one-line refusal of option ``name`` under ``task``."""
    owners = " or ".join(OPTIONS[name].tasks or ())
    return OptionError(name, f"applies to task {owners}, not {task}")


def misplaced(values: dict[str, Any], method: str) -> list[str]:
    """Names of engine options that are set but that ``method`` does not use."""
    return [n for n, v in values.items() if v is not None and OPTIONS[n].per_method
            and method not in (OPTIONS[n].methods or (method,))]


def parse_text(option: Option, text: str) -> Any:
    """A value from text (``--set KEY=VALUE``): read as a YAML scalar (bounded, safe), then checked."""
    from explain_cli.errors import ExplainError
    from explain_cli.yamlio import loads_yaml

    try:
        value = loads_yaml(text, source=f"--set {option.name}") if text.strip() else None
    except ExplainError:
        if not text.lstrip().startswith(("&", "*", "[", "{")):
            value = text  # plain text that is not valid YAML is taken as a string
        else:
            raise
    return option.check(value)


def parse_pairs(items: Iterable[str], option: str) -> dict[str, Any]:
    """``KEY=VALUE`` items (``--seg-param``) into a mapping with numeric values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(option, f"takes KEY=VALUE, got {item!r} (e.g. sigma=1.5)")
        try:
            number: Any = float(raw)
        except ValueError:
            raise OptionError(option, f"{key.strip()}: value must be a number, got {raw!r}") from None
        if number.is_integer() and "." not in raw and "e" not in raw.lower():
            number = int(number)
        out[key.strip().replace("-", "_")] = number
    return OPTIONS[option].check(out)


def markdown_table() -> str:
    """The README's option table, generated from the schema."""
    lines = ["| option (CLI / YAML / Python) | default | methods | meaning |", "|---|---|---|---|"]
    for group in GROUPS:
        for o in OPTIONS.values():
            if o.group != group:
                continue
            flag = f"`{o.flag}`" + (f" `{o.short}`" if o.short else "")
            choices = f" One of: {', '.join(str(c) for c in o.choices)}." if o.choices else ""
            methods = ", ".join(o.methods) if o.methods else f"task {'/'.join(o.tasks)}" if o.tasks else "all"
            help_text = o.help.replace("|", "\\|")
            lines.append(f"| {flag} / `{o.name}` | `{o.default_text()}` | {methods} | {help_text}{choices} |")
    return "\n".join(lines)
