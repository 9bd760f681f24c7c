"""explain_cli: perturbation explanations (LIME, Kernel SHAP, RISE, permutation, ablation) for PyTorch image models.

    from explain_cli import explain
    (e,) = explain(model, "cat.jpg", method="kernelshap", top_k=2)
    e.top(5); e.render(); e.save("out/")

The public names load lazily, so `explain --help` does not import torch.
"""

from __future__ import annotations

from typing import Any

from explain_cli._version import __version__

__all__ = ["explain", "Explainer", "Explanation", "ExplainError", "OptionError", "ExplainWarning", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("explain", "Explainer"):
        from explain_cli import api

        return getattr(api, name)
    if name == "Explanation":
        from explain_cli.result import Explanation

        return Explanation
    if name in ("ExplainError", "OptionError", "ExplainWarning"):
        from explain_cli import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'explain_cli' has no attribute {name!r}")
