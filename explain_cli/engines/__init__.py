"""Engine registry: name -> parameters type and the function that explains one problem.

An engine supplies a sampler and an estimator on top of :mod:`explain_cli.core`; it never
touches files. Its parameter names equal the CLI option and YAML key names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from explain_cli.errors import ExplainError

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem


@dataclass
class Attribution:
    """What an engine returns for one example, for K targets and M segments."""

    scores: np.ndarray  # (K, M) per-segment attribution
    base_value: np.ndarray  # (K,) intercept (LIME), φ0 = f(baseline) (Kernel SHAP), ...
    baseline_score: np.ndarray  # (K,) f(baseline)
    pixel_maps: np.ndarray | None = None  # (K, H, W) when the engine works per pixel (RISE)
    r2: np.ndarray | None = None  # (K,) surrogate fit quality, where there is a fit
    stderr: np.ndarray | None = None  # (K, M) standard errors, where estimated
    std: np.ndarray | None = None  # (K, M) spread over repeats (permutation)
    per_example: np.ndarray | None = None  # (N, K, M) attributions per input (batch engines)
    extra: dict[str, Any] = field(default_factory=dict)  # engine-specific JSON additions
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Engine:
    name: str
    summary: str
    params: type  # a frozen dataclass of the engine's parameters
    run: Callable[["Problem", Any, "torch.Generator"], Attribution]
    signed: bool = True  # signed scores (diverging colormap) or non-negative (sequential)
    batch: bool = False  # explains a batch of inputs together (permutation) rather than each alone


def _registry() -> dict[str, Engine]:
    from explain_cli.engines import ablation, kernelshap, lime, permutation, rise

    engines = [lime.ENGINE, kernelshap.ENGINE, rise.ENGINE, permutation.ENGINE, ablation.ENGINE]
    return {e.name: e for e in engines}


ENGINES: dict[str, Engine] = _registry()


def get_engine(name: str) -> Engine:
    if name not in ENGINES:
        import difflib

        close = difflib.get_close_matches(name, list(ENGINES), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ExplainError(f"unknown --method {name!r}{hint}; choose one of {', '.join(ENGINES)}")
    return ENGINES[name]


def build_params(engine: Engine, values: dict[str, Any]) -> Any:
    """The engine's parameters from config values: known names taken, ``None`` means default."""
    names = {f.name for f in dataclasses.fields(engine.params)}
    chosen = {k: v for k, v in values.items() if k in names and v is not None}
    params = engine.params(**chosen)
    validate = getattr(params, "validate", None)
    if validate is not None:
        validate()
    return params
