"""The engine protocol and registry.

An engine supplies a sampler and an estimator on top of :mod:`explain_cli.core`; it never
touches files, flags or terminals. Its parameters are a frozen dataclass declared with
:func:`explain_cli.params.param`; their names are the option names everywhere.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from explain_cli.errors import ExplainError, OptionError, suggest
from explain_cli.params import check_params

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
    params: type  # a frozen dataclass of the engine's parameters (fields made with `param`)
    run: Callable[["Problem", Any, "torch.Generator"], Attribution]
    signed: bool = True  # signed scores (diverging colormap) or non-negative (sequential)
    batch: bool = False  # explains a batch of inputs together (permutation) rather than each alone
    uses_baseline: bool = True  # removed segments take the baseline (permutation takes other inputs)

    def check_inputs(self, n: int) -> None:
        """A batch engine swaps features between inputs, so it needs at least 2 (the rule's one home)."""
        if self.batch and n < 2:
            raise ExplainError(f"{self.name} explains a batch: pass at least 2 inputs (files, or a shell glob like DIR/*.png)")


#: Engine modules in the order `explain info` and the help list them.
ENGINE_MODULES = ("kernelshap", "partition", "lime", "rise", "permutation", "ablation")


def _engine(name: str) -> Engine:
    """The ``ENGINE`` of module ``explain_cli.engines.NAME``, or of ``NAME.engine`` when NAME is a package."""
    module = importlib.import_module(f"explain_cli.engines.{name}")
    if hasattr(module, "__path__"):
        module = importlib.import_module(f"{module.__name__}.engine")
    return module.ENGINE


def _registry() -> dict[str, Engine]:
    engines = [_engine(name) for name in ENGINE_MODULES]
    return {e.name: e for e in engines}


ENGINES: dict[str, Engine] = _registry()


def get_engine(name: str) -> Engine:
    """The engine called ``name``; an unknown name is an error naming the ``method`` option."""
    if name not in ENGINES:
        hint = suggest(str(name), ENGINES)
        hint = f" ({hint})" if hint else ""
        raise OptionError("method", f"must be one of {', '.join(ENGINES)}, got {name!r}{hint}")
    return ENGINES[name]


def engine_fields(engine: Engine) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(engine.params)}


def build_params(engine: Engine, values: dict[str, Any]) -> Any:
    """The engine's parameters from option values: known names taken, ``None`` means default.

    Every value is checked against its declaration (type, finite, range, choices), then the
    engine's own cross-parameter rules (``validate``) run.
    """
    names = engine_fields(engine)
    chosen = {k: v for k, v in values.items() if k in names and v is not None}
    params = engine.params(**chosen)
    check_params(params)
    validate = getattr(params, "validate", None)
    if validate is not None:
        validate()
    return params
