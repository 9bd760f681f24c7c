"""Model randomisation sanity check (Adebayo et al. 2018): a map must change when the weights do."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from explain_cli.errors import ExplainError

if TYPE_CHECKING:
    import torch

#: |Spearman| between the real model's map and a weight-randomised model's map below which the check passes.
SANITY_THRESHOLD = 0.5


@dataclass
class SanityResult:
    """Model randomisation test: maps of the real and a re-initialised model must differ."""

    correlation: float  # Spearman rank correlation of the two maps
    threshold: float  # |correlation| at or above this fails the check
    passed: bool  # True when the explanation depends on the model's weights

    def to_json(self) -> dict[str, Any]:
        return {"spearman": self.correlation, "threshold": self.threshold, "passed": self.passed}


def randomized_copy(model: "torch.nn.Module", *, seed: int = 0) -> "torch.nn.Module":
    """A copy of ``model`` with every weight re-initialised from ``seed``; the caller's model is untouched.

    Works for eager ``nn.Module`` and TorchScript modules alike, since it only walks
    ``named_parameters`` and ``named_buffers``: weights with ≥ 2 dims get He-normal values
    (std √(2 / fan_in), which keeps a ReLU network's activations from vanishing, so the copy still
    responds to its input); 1-D ``weight`` parameters (normalisation scales) become 1, other
    1-D/0-D parameters (biases, shifts) 0; normalisation running statistics are reset to mean 0,
    variance 1. Deterministic: the same seed gives the same copy on any device.
    """
    import copy

    import torch

    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, p in clone.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                values = torch.randn(p.shape, generator=generator, dtype=torch.float64) * math.sqrt(2.0 / fan_in)
            elif name.rsplit(".", 1)[-1] == "weight":
                values = torch.ones(p.shape, dtype=torch.float64)
            else:
                values = torch.zeros(p.shape, dtype=torch.float64)
            p.copy_(values.to(device=p.device, dtype=p.dtype))
        for name, b in clone.named_buffers():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_mean":
                b.zero_()
            elif leaf == "running_var":
                b.fill_(1.0)
    return clone


def rank_correlation(map_a: np.ndarray, map_b: np.ndarray, *, absolute: bool = False) -> float:
    """Spearman rank correlation of two maps of one shape (ties get average ranks; NaN pixels dropped).

    ``absolute`` compares |values|, as Adebayo et al. also report. 0.0 when either map is constant.
    """
    from scipy.stats import rankdata

    a = np.asarray(map_a, dtype=np.float64).reshape(-1)
    b = np.asarray(map_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ExplainError(f"rank_correlation: maps have {a.size} and {b.size} values; compare maps of one shape")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if absolute:
        a, b = np.abs(a), np.abs(b)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float(np.dot(ra, rb) / math.sqrt(np.dot(ra, ra) * np.dot(rb, rb)))


def sanity_check(explain: Callable[["torch.nn.Module"], np.ndarray], model: "torch.nn.Module", *, seed: int = 0,
                 threshold: float = SANITY_THRESHOLD, absolute: bool = False) -> SanityResult:
    """Model randomisation test (Adebayo et al. 2018): explain the model and a re-initialised copy.

    Parameters
    ----------
    explain : callable model -> array
        Runs the explainer on a model and returns its map (any shape, the same for both calls:
        a (H, W) map or (K, M) segment scores).
    model : nn.Module or TorchScript module
        The real model; not modified.
    seed : int
        Seeds the re-initialisation.
    threshold : float
        The check fails when |Spearman| >= threshold: the map barely depends on the weights.
    """
    real = np.asarray(explain(model))
    randomized = np.asarray(explain(randomized_copy(model, seed=seed)))
    rho = rank_correlation(real, randomized, absolute=absolute)
    return SanityResult(correlation=rho, threshold=threshold, passed=abs(rho) < threshold)
