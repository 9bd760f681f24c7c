"""Kernel SHAP (Lundberg & Lee 2017) with exact efficiency, paired stratified sampling and standard errors.

Design
------
* Players are the M superpixels; v(S) = f(x with the superpixels outside S at the baseline).
* The budget (``samples``) counts every evaluation: f(x), f(baseline) and the coalitions.
* Coalition sizes are taken in pairs (s, M−s), largest Shapley-kernel mass first. A pair is
  enumerated completely when its proportional share of the remaining budget would cover all its
  coalitions (shap's rule); once one is not, the rest of the budget is split over the remaining
  pairs (``allocation``: ``kernel`` ∝ kernel mass, or ``leverage`` ∝ number of sizes, the
  leverage-score allocation of Musco & Witter 2024), and each pair draws distinct coalitions of
  size s uniformly, each with its complement (antithetic sampling, Covert & Lee 2021).
* Each size is a stratum: a coalition of size s gets weight K(s)/n_s, where K(s) = (M−1)/(s(M−s))
  is the kernel mass of all size-s coalitions and n_s how many of them are in the design. With
  every coalition present this is exactly the Shapley kernel, so the solution is the exact
  Shapley values.
* Efficiency is exact: φ0 = f(b) and Σφ = f(x) − f(b) by eliminating one variable from the
  weighted least squares, not by a heavy penalty weight.
* Standard errors come from a bootstrap over the sampled pairs within each stratum (the
  enumerated part has no sampling error); exact mode reports 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.engines import Attribution, Engine
from explain_cli.errors import ExplainError
from explain_cli.surrogate import weighted_r2

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem

ALLOCATIONS = ("kernel", "leverage")


@dataclass(frozen=True)
class KernelShapParams:
    samples: int = 2048  # model evaluations, f(x) and f(baseline) included
    exact: bool = False  # enumerate all 2^M coalitions (an error if --samples is below 2^M)
    allocation: str = "kernel"  # how sampled coalitions are spread over sizes: kernel | leverage
    bootstrap: int = 200  # bootstrap resamples for the standard errors (0: none)

    def validate(self) -> None:
        if self.samples < 3:
            raise ExplainError(f"--samples must be at least 3 for kernelshap, got {self.samples}")
        if self.allocation not in ALLOCATIONS:
            raise ExplainError(f"unknown --allocation {self.allocation!r}; choose kernel or leverage")
        if self.bootstrap < 0:
            raise ExplainError(f"--bootstrap must be non-negative, got {self.bootstrap}")


@dataclass
class Design:
    """The coalitions to evaluate and how the estimator weighs them."""

    z: np.ndarray  # (n, M) bool, coalitions of sizes 1..M-1
    weight: np.ndarray  # (n,) regression weights (sum = total kernel mass of the sizes covered)
    pair: np.ndarray  # (n,) id of the antithetic pair each row belongs to; -1 for enumerated rows
    stratum: np.ndarray  # (n,) coalition size of each row
    exact: bool  # every coalition is present: the result is the exact Shapley values


def kernel_mass(m: int) -> np.ndarray:
    """K(s) for s = 0..m: the Shapley kernel summed over all coalitions of size s (0 at the ends)."""
    s = np.arange(m + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        mass = (m - 1) / (s * (m - s))
    mass[0] = mass[m] = 0.0
    return mass


def _all_coalitions(m: int) -> np.ndarray:
    codes = np.arange(1, 2**m - 1, dtype=np.int64)
    return ((codes[:, None] >> np.arange(m)) & 1).astype(bool)


def _sizes_of_pair(s: int, m: int) -> list[int]:
    return [s] if 2 * s == m else [s, m - s]


def plan(m: int, budget: int, *, allocation: str, exact: bool, generator: "torch.Generator") -> Design:
    """Choose the coalitions for ``budget`` evaluations (f(x) and f(b) not included)."""
    import torch

    full = 2**m - 2
    if exact or full <= budget:
        if full > budget:
            fix = f"pass --samples {2**m} or use fewer segments" if m <= 20 else "use at most 20 segments (--n-segments)"
            raise ExplainError(
                f"--exact needs 2^{m} = {2**m:,} evaluations for {m} segments but --samples is {budget + 2:,}; {fix}"
            )
        z = _all_coalitions(m)
        sizes = z.sum(axis=1)
        mass = kernel_mass(m)
        counts = np.array([math.comb(m, int(s)) for s in range(m + 1)], dtype=np.float64)
        return Design(z=z, weight=mass[sizes] / counts[sizes], pair=np.full(len(z), -1), stratum=sizes, exact=True)

    mass = kernel_mass(m)
    pairs = list(range(1, m // 2 + 1))
    share = {s: (sum(mass[t] for t in _sizes_of_pair(s, m)) if allocation == "kernel" else len(_sizes_of_pair(s, m)))
             for s in pairs}
    rows: list[np.ndarray] = []
    strata: list[np.ndarray] = []
    pair_ids: list[np.ndarray] = []
    remaining = budget
    # 1. Enumerate whole pairs of sizes, largest kernel mass first, while the budget covers them.
    while pairs:
        s = pairs[0]
        count = sum(math.comb(m, t) for t in _sizes_of_pair(s, m))
        expected = remaining * share[s] / sum(share[p] for p in pairs)
        if expected + 1e-9 < count:
            break
        for t in _sizes_of_pair(s, m):
            z = _subsets_of_size(m, t)
            rows.append(z)
            strata.append(np.full(len(z), t))
            pair_ids.append(np.full(len(z), -1))
        remaining -= count
        pairs.pop(0)
    # 2. Spread the rest over the remaining pairs; draw distinct coalitions with their complements.
    # A complement adds no new direction to the regression (its row is the negated row), so
    # pairing needs at least M−1 pairs to identify φ; below that, draw unpaired coalitions
    # (a coin picks the subset or its complement) so that small budgets still determine φ.
    paired = remaining // 2 >= m - 1
    draws = _allocate(remaining // 2 if paired else remaining, pairs, share, m)
    next_pair = 0
    for s, n in draws.items():
        if n == 0:
            continue
        z = _distinct_subsets(m, s, n, generator)
        ids = np.arange(next_pair, next_pair + n)
        next_pair += n
        if paired:
            z, ids = np.concatenate([z, ~z]), np.concatenate([ids, ids])
        else:
            flip = (torch.rand(n, generator=generator) < 0.5).numpy()
            z[flip] = ~z[flip]
        rows.append(z)
        strata.append(z.sum(axis=1))
        pair_ids.append(ids)
    z = np.concatenate(rows) if rows else np.zeros((0, m), dtype=bool)
    stratum = np.concatenate(strata) if strata else np.zeros(0, dtype=np.int64)
    pair = np.concatenate(pair_ids) if pair_ids else np.zeros(0, dtype=np.int64)
    per_size = np.bincount(stratum, minlength=m + 1).astype(np.float64)
    weight = mass[stratum] / np.maximum(per_size[stratum], 1.0)
    return Design(z=z, weight=weight, pair=pair, stratum=stratum, exact=False)


def _subsets_of_size(m: int, s: int) -> np.ndarray:
    from itertools import combinations

    out = np.zeros((math.comb(m, s), m), dtype=bool)
    for i, idx in enumerate(combinations(range(m), s)):
        out[i, list(idx)] = True
    return out


def _allocate(n_pairs: int, pairs: list[int], share: dict[int, float], m: int) -> dict[int, int]:
    """Split ``n_pairs`` antithetic draws over size pairs ∝ share, capped by what each pair holds."""
    alloc = {s: 0 for s in pairs}
    capacity = {s: math.comb(m, s) // (2 if 2 * s == m else 1) for s in pairs}
    left, open_pairs = n_pairs, [s for s in pairs if capacity[s] > 0]
    while left > 0 and open_pairs:
        total = sum(share[s] for s in open_pairs)
        exact = {s: left * share[s] / total for s in open_pairs}
        grant = {s: min(int(exact[s]), capacity[s] - alloc[s]) for s in open_pairs}
        given = sum(grant.values())
        if given == 0:  # hand out the remainders, largest fraction first
            for s in sorted(open_pairs, key=lambda p: exact[p] - int(exact[p]), reverse=True)[:left]:
                grant[s] = 1
            given = sum(grant.values())
        for s in open_pairs:
            alloc[s] += grant[s]
        left -= given
        open_pairs = [s for s in open_pairs if alloc[s] < capacity[s]]
    return alloc


def _distinct_subsets(m: int, s: int, n: int, generator: "torch.Generator", candidates: int = 32) -> np.ndarray:
    """``n`` distinct size-``s`` subsets chosen to keep the design balanced.

    Each pick takes, among ``candidates`` uniform random subsets, the one that least repeats
    what is already chosen: how often its players appear and how often its pairs of players
    appear together. The design then covers players and pairs evenly (close to a balanced
    incomplete block design), which lowers the regression's error for the same evaluations.
    For s = M/2 a subset and its complement count as one.
    """
    import torch

    seen: set[bytes] = set()
    chosen = np.zeros((n, m), dtype=bool)
    together = np.zeros((m, m))  # co-occurrence counts of the chosen subsets
    count = 0
    while count < n:
        order = torch.rand((candidates, m), generator=generator).argsort(dim=1)[:, :s].numpy()
        cand = np.zeros((candidates, m), dtype=bool)
        np.put_along_axis(cand, order, True, axis=1)
        c = cand.astype(np.float64)
        # first-order load (diagonal) weighted above pairwise load, so player balance comes first
        cost = ((c @ together) * c).sum(axis=1) + m * (c @ np.diag(together))
        for idx in np.argsort(cost, kind="stable"):
            row = cand[idx]
            key = row.tobytes() if 2 * s != m else min(row.tobytes(), (~row).tobytes())
            if key not in seen:
                seen.add(key)
                chosen[count] = row
                together += np.outer(row, row)
                count += 1
                break
    return chosen


def solve(z: np.ndarray, y: np.ndarray, w: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Weighted least squares for φ with Σφ = delta exactly.

    Parameters
    ----------
    z : (n, M) {0,1}; y : (n, K) v(S) − f(b); w : (n,) or (B, n) weights; delta : (K,) f(x) − f(b).

    Returns
    -------
    (K, M) or, for (B, n) weights, (B, K, M) Shapley estimates.
    """
    z = z.astype(np.float64)
    m = z.shape[1]
    a = z[:, :-1] - z[:, -1:]  # eliminate φ_M = delta − Σ_{j<M} φ_j
    r = y - z[:, -1:] * delta[None, :]
    batched = w.ndim == 2
    wb = w if batched else w[None]
    gram = np.empty((len(wb), m - 1, m - 1))
    rhs = np.empty((len(wb), m - 1, r.shape[1]))
    for start in range(0, len(wb), 16):  # batched BLAS products, in chunks to bound memory
        aw = wb[start : start + 16, None, :] * a.T[None]  # (b, M-1, n)
        gram[start : start + 16] = aw @ a
        rhs[start : start + 16] = aw @ r
    # A tiny relative ridge only guards rank deficiency (very small budgets); it does not touch Σφ.
    eye = np.eye(m - 1) * 1e-12 * np.trace(gram, axis1=1, axis2=2)[:, None, None] / max(m - 1, 1)
    head = np.linalg.solve(gram + eye, rhs)  # (B, M-1, K)
    last = delta[None, None, :] - head.sum(axis=1, keepdims=True)
    phi = np.concatenate([head, last], axis=1).transpose(0, 2, 1)  # (B, K, M)
    return phi if batched else phi[0]


def bootstrap_weights(design: Design, n_boot: int, generator: "torch.Generator") -> np.ndarray:
    """(n_boot, n) weights: sampled pairs resampled with replacement within each stratum."""
    import torch

    weights = np.repeat(design.weight[None], n_boot, axis=0)
    sampled = design.pair >= 0
    if not sampled.any() or n_boot == 0:
        return weights[:0]
    for s in np.unique(design.stratum[sampled]):
        rows = np.flatnonzero(sampled & (design.stratum == s))
        ids, inverse = np.unique(design.pair[rows], return_inverse=True)
        picks = torch.randint(0, len(ids), (n_boot, len(ids)), generator=generator).numpy()
        mult = np.zeros((n_boot, len(ids)))
        np.add.at(mult, (np.arange(n_boot)[:, None], picks), 1.0)
        weights[:, rows] = design.weight[rows][None] * mult[:, inverse]
    return weights


def run(problem: "Problem", params: KernelShapParams, generator: "torch.Generator") -> Attribution:
    import torch

    m = problem.n_segments
    if m < 2:
        raise ExplainError("kernelshap needs at least 2 segments; raise --n-segments")
    design = plan(m, params.samples - 2, allocation=params.allocation, exact=params.exact, generator=generator)
    ev = problem.evaluator
    ev.progress.start(len(design.z) + 2, "kernelshap")
    ev.progress.advance(1)  # f(x), evaluated before the engine
    f_b = problem.baseline_output().numpy()
    f_x = problem.reference.numpy()
    v = problem.segment_outputs(torch.from_numpy(design.z).float()).numpy()
    delta = f_x - f_b
    y = v - f_b[None]
    phi = solve(design.z, y, design.weight, delta)
    stderr = np.zeros_like(phi)
    if not design.exact and params.bootstrap > 0:
        wb = bootstrap_weights(design, params.bootstrap, generator)
        if len(wb):
            stderr = solve(design.z, y, wb, delta).std(axis=0, ddof=1)
    pred = design.z.astype(np.float64) @ phi.T
    return Attribution(
        scores=phi,
        base_value=f_b.copy(),
        baseline_score=f_b.copy(),
        r2=weighted_r2(y, pred, design.weight) if len(y) > 1 else None,
        stderr=stderr,
        extra={
            "exact": design.exact,
            "coalitions": int(len(design.z)),
            "enumerated_coalitions": int((design.pair < 0).sum()),
            "sampled_pairs": int(len(np.unique(design.pair[design.pair >= 0]))),
        },
    )


ENGINE = Engine(
    name="kernelshap",
    summary="Shapley values by constrained weighted regression over paired coalitions (Lundberg & Lee 2017)",
    params=KernelShapParams,
    run=run,
)
