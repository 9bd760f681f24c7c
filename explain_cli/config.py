"""The typed run configuration shared by `explain run`, YAML configs and the batch runner.

Precedence (enforced where configs are merged): command line > job > defaults > these field defaults.
Field names equal CLI option names (dashes for underscores) and YAML keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunConfig:
    method: str = "lime"  # lime | kernelshap | rise | permutation | ablation
    seed: int = 0  # drives every random choice (sampling, masks, permutations, random weights)
    out: str = "explanations"  # output folder
    weights: str | None = None  # torchvision:ARCH only: state-dict file, DEFAULT, or None (random)
    target: list[str] = field(default_factory=lambda: ["auto"])  # auto | class index | label, repeatable
    top_k: int = 1  # with target auto: explain the K highest-scoring classes
    labels: str | None = None  # class names: text file (one per line) or JSON list
    segments: str | None = None  # slic | quickshift | felzenszwalb | watershed | grid; None: grid for permutation, else slic
    n_segments: int | None = None  # target number of superpixels (slic, watershed, grid)
    compactness: float | None = None  # slic / watershed compactness
    seg_params: dict[str, Any] = field(default_factory=dict)  # other segmenter parameters
    baseline: str = "zero"  # zero | mean | blur | value:R,G,B
    preprocess: str = "auto"  # auto | model | imagenet | none
    size: str | None = None  # H or H,W: resize the whole image to this (no crop)
    mean: str | None = None  # per-channel normalisation mean, comma-separated
    std: str | None = None  # per-channel normalisation std, comma-separated
    output: str = "probs"  # logits | probs: the output space explained
    batch_size: str = "auto"  # model evaluations per forward pass, or auto
    device: str = "auto"  # auto | cpu | cuda[:N] | mps
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast, CUDA only)
    # Engine parameters: None takes the engine's default.
    samples: int | None = None  # lime, kernelshap: model evaluations
    kernel_width: float | None = None  # lime: kernel width σ
    distance: str | None = None  # lime: cosine | euclidean
    surrogate: str | None = None  # lime: ridge | lasso | linear
    alpha: float | None = None  # lime: surrogate penalty (relative)
    exact: bool | None = None  # kernelshap: enumerate all 2^M coalitions
    allocation: str | None = None  # kernelshap: kernel | leverage
    interactions: int | None = None  # kernelshap: highest odd interaction order modelled (1, 3, 5)
    proxy: str | None = None  # kernelshap: interaction prior of the regression adjustment (image | generic)
    masks: int | None = None  # rise: number of random masks
    grid: int | None = None  # rise: coarse mask grid size s
    p1: float | None = None  # rise: probability a grid cell keeps the input
    repeats: int | None = None  # permutation: permutations per group
    name: str | None = None  # permutation: output name for the batch (default 'batch')
    # Outputs.
    save_map: bool = False  # also write NAME.METHOD.npy (K, H, W) at the original resolution
    boundaries: bool = True  # draw superpixel boundaries on the PNG
    quiet: bool = False  # no progress bar

    def engine_values(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def segmenter(self, batch: bool) -> str:
        """The segmentation algorithm: as configured, else grid for batch methods and slic otherwise."""
        return self.segments or ("grid" if batch else "slic")

    def segmentation_params(self) -> dict[str, Any]:
        params = dict(self.seg_params)
        if self.n_segments is not None:
            params["n_segments"] = self.n_segments
        if self.compactness is not None:
            params["compactness"] = self.compactness
        return params


# ---------------------------------------------------------------------------------------------
# YAML configs: validation with key paths, and precedence in one place.
#
# Precedence, highest first: command line (--set KEY=VALUE) > method entry > job > defaults
# > RunConfig's field defaults. `merge_layers` is the only place that applies it.
# ---------------------------------------------------------------------------------------------

import difflib  # noqa: E402
import typing  # noqa: E402
from pathlib import Path  # noqa: E402

from explain_cli.errors import ExplainError  # noqa: E402

#: Keys a job has besides RunConfig fields.
JOB_KEYS = {"name", "model", "inputs", "methods"}
#: RunConfig keys a method entry may not change: every method of a job shares segmentation and
#: preprocessing, so their superpixels are the same and their maps comparable.
SHARED_KEYS = {"segments", "n_segments", "compactness", "seg_params", "preprocess", "size", "mean", "std",
               "weights", "device", "out", "labels"}
RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


class ConfigError(ExplainError):
    """One or more problems in a config file, each with its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems) if len(problems) > 1 else problems[0])


def _expected(tp: Any) -> tuple[tuple[type, ...], str]:
    """Python types accepted for a RunConfig field annotation, and words for the error message."""
    text = str(tp)
    if "list" in text:
        return (list, str, int), "a list of strings (or one string)"
    if "dict" in text:
        return (dict,), "a mapping"
    if "bool" in text:
        return (bool,), "true or false"
    if "int" in text and "float" not in text:
        return (int,), "an integer"
    if "float" in text:
        return (int, float), "a number"
    return (str, int, float), "a string"


_HINTS = typing.get_type_hints(RunConfig)


def check_value(key: str, value: Any, path: str, problems: list[str]) -> Any:
    """Validate one RunConfig value from YAML; returns it normalised (e.g. str -> [str] for target)."""
    if value is None:
        return None
    types, words = _expected(_HINTS[key])
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        problems.append(f"{path}: expected {words}, got {type(value).__name__} {value!r}")
        return None
    if key == "target" and not isinstance(value, list):
        value = [value]
    if key == "target":
        value = [str(v) for v in value]
    if key in ("size", "mean", "std", "batch_size") and not isinstance(value, str):
        value = str(value)
    return value


def unknown_key(key: str, allowed: set[str], path: str) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{path}: unknown key {key!r}{hint}"


def check_layer(data: Any, path: str, problems: list[str], *, allowed: set[str]) -> dict[str, Any]:
    """Validate a mapping of RunConfig keys (plus ``allowed`` extras checked elsewhere)."""
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if not isinstance(key, str) or (key not in RUN_FIELDS and key not in allowed):
            problems.append(unknown_key(str(key), set(RUN_FIELDS) | allowed, key_path))
            continue
        if key in RUN_FIELDS:
            out[key] = check_value(key, value, key_path, problems)
        else:
            out[key] = value
    return out


def merge_layers(*layers: dict[str, Any]) -> RunConfig:
    """RunConfig from layers given lowest precedence first; None never overrides."""
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in RUN_FIELDS and value is not None:
                values[key] = value
    return RunConfig(**values)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs, values read as YAML scalars (``samples=500`` is an int)."""
    import yaml

    out: dict[str, Any] = {}
    problems: list[str] = []
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            problems.append(f"--set {item!r}: expected KEY=VALUE, e.g. --set samples=500")
            continue
        if key not in RUN_FIELDS:
            problems.append(unknown_key(key, set(RUN_FIELDS), f"--set {key}"))
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key] = check_value(key, value, f"--set {key}", problems)
    if problems:
        raise ConfigError(problems)
    return out


def read_yaml(path: Path) -> Any:
    import yaml

    if not path.is_file():
        raise ExplainError(f"config {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ExplainError(f"config {path}: {problem}{where}") from None
    except UnicodeDecodeError:
        raise ExplainError(f"config {path} is not UTF-8 text") from None
