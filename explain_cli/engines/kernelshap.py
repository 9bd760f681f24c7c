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
  size s, balanced over players and pairs of players (``_balanced_picks``), each with its
  complement (antithetic sampling, Covert & Lee 2021).
* Each size is a stratum: a coalition of size s gets weight K(s)/n_s, where K(s) = (M−1)/(s(M−s))
  is the kernel mass of all size-s coalitions and n_s how many of them are in the design. With
  every coalition present this is exactly the Shapley kernel, so the solution is the exact
  Shapley values.
* Efficiency is exact: φ0 = f(b) and Σφ = f(x) − f(b) through a constrained weighted least
  squares (a KKT system), not a heavy penalty weight.
* Regression adjustment (``interactions`` 3 or 5): a design closed under complement is fitted
  on the game's odd part with an unpenalised additive term plus ridge-penalised odd
  interactions (:mod:`explain_cli.engines.interactions`); φ is read off that surrogate in
  closed form. Exact under full enumeration and for additive games, like plain Kernel SHAP,
  with less error per evaluation (benchmarks/shapley_accuracy.py). Up to REPRESENTERS pairs the
  fit is solved in its dual (:func:`kriging_fit`, one Cholesky factor), beyond that in the
  primal over a seeded subset of pairs.
* The interactions' prior (``proxy``): ``image`` (default) weighs the monomial u^T by
  Π_{i∈T} ρ_i, ρ_i from a pilot plain Kernel SHAP on the same evaluations (interactions among
  players that matter alone are the large ones), and adds the connected triples of the
  segments' adjacency graph as explicit features with a heavier prior
  (:mod:`explain_cli.engines.adjacency`); ``generic`` treats all interactions of an order alike.
  See docs/shapley.md for what each part buys.
* Standard errors: the infinitesimal jackknife over the sampled units within each stratum, at
  leave-one-out residuals (the enumerated part has no sampling error); exact mode reports 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from explain_cli.engines import auto
from explain_cli.engines.base import Attribution, Engine
from explain_cli.params import param
from explain_cli.engines.adjacency import OddAdjacencyFeatures
from explain_cli.engines.interactions import OddInteractionKernel, WeightedOddKernel
from explain_cli.errors import OptionError
from explain_cli.surrogate import weighted_r2

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Problem

ALLOCATIONS = ("kernel", "leverage")
INTERACTIONS = (1, 3, 5)
# Regression adjustment (measured in benchmarks/shapley_accuracy.py, see README): kernel weight
# per odd interaction order, ridge penalty per unit of total kernel weight, and how many sampled
# pairs span the interaction kernel at most (its solve grows with their cube).
ORDER_WEIGHTS = {3: 1.0, 5: 0.1}
RIDGE = 0.3
REPRESENTERS = 1024
# The image proxy (``proxy="image"``, docs/shapley.md): interactions weighted per player by a
# pilot estimate (ρ_i = |φ_i|/max|φ| + floor), lighter order 5, explicit connected triples of
# adjacent segments with ADJACENCY_WEIGHT times the prior weight of a generic triple.
PROXIES = ("image", "generic")
IMAGE_ORDER_WEIGHTS = {3: 1.0, 5: 0.05}
IMAGE_RIDGE = 0.3
ADJACENCY_WEIGHT = 10.0
HEREDITY_FLOOR = 0.2


@dataclass(frozen=True)
class KernelShapParams:
    samples: int = param(2048, "Model evaluations, f(x) and f(baseline) included; auto: until the scores converge "
                         "(see auto_tolerance).", minimum=3, maximum=10_000_000, allow_auto=True)
    exact: bool = param(False, "Enumerate all 2^M coalitions: exact Shapley values (needs samples ≥ 2^M).")
    allocation: str = param("leverage", "How sampled coalitions spread over sizes: equally (leverage scores) or by kernel mass.",
                            choices=ALLOCATIONS)
    interactions: int = param(5, "Highest odd interaction order in the regression adjustment (1: plain Kernel SHAP).",
                              choices=INTERACTIONS)
    proxy: str = param("image", "Interaction prior of the regression adjustment: 'image' favours interactions among "
                       "adjacent segments and among segments that matter alone; 'generic' treats all alike.",
                       choices=PROXIES)
    auto_tolerance: float = auto.tolerance_param(0.03)
    max_samples: int = auto.max_samples_param()

    def validate(self) -> None:
        if self.exact and auto.is_auto(self.samples):
            raise OptionError("samples", "auto does not combine with exact (exact needs all 2^M coalitions); "
                              "drop one of them")


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


def plan(m: int, budget: int, *, allocation: str, exact: bool, generator: "torch.Generator",
         size_generator: "Callable[[int], torch.Generator] | None" = None) -> Design:
    """Choose the coalitions for ``budget`` evaluations (f(x) and f(b) not included).

    ``size_generator(s)``, when given, supplies the random draws of size pair s instead of
    ``generator``: each pair then draws from its own stream, so a larger budget's coalitions of
    that pair start with a smaller budget's (``samples auto`` re-plans and reuses them).
    """
    import torch

    gen_for = size_generator or (lambda s: generator)

    full = 2**m - 2
    if exact or full <= budget:
        if full > budget:
            # the rule: exact needs samples ≥ 2^M (every coalition, f(x) and f(b) included)
            fits = max(1, (budget + 2).bit_length() - 1)
            need = f"{2**m:,}" if m <= 40 else f"{2.0**m:.2e}"
            raise OptionError(
                "exact", f"needs samples ≥ 2^M = {need} for M = {m} segments, but samples is {budget + 2:,}; "
                + (f"raise samples to {need}, or " if m <= 23 else "")
                + f"use at most {fits} segments for this budget"
            )
        z = _all_coalitions(m)
        sizes = z.sum(axis=1)
        mass = kernel_mass(m)
        counts = np.array([math.comb(m, int(s)) for s in range(m + 1)], dtype=np.float64)
        return Design(z=z, weight=mass[sizes] / counts[sizes], pair=np.full(len(z), -1), stratum=sizes, exact=True)

    mass = kernel_mass(m)
    pairs = list(range(1, m // 2 + 1))
    share = {s: _share(s, m, allocation, mass) for s in pairs}
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
    sizes = [s for s, n in draws.items() if n > 0]
    pools, flips = {}, {}
    for s in sizes:  # every random draw in size order: a size's candidates, then its coins
        pools[s] = _candidates(m, s, draws[s], gen_for(s))
        if not paired:
            flips[s] = (torch.rand(draws[s], generator=gen_for(s)) < 0.5).numpy()
    picked = _balanced_picks(m, pools, gen_for)
    next_pair = 0
    for s in sizes:
        z, n = picked[s], draws[s]
        ids = np.arange(next_pair, next_pair + n)
        next_pair += n
        if paired:
            z, ids = np.concatenate([z, ~z]), np.concatenate([ids, ids])
        else:
            z[flips[s]] = ~z[flips[s]]
        rows.append(z)
        strata.append(z.sum(axis=1))
        pair_ids.append(ids)
    z = np.concatenate(rows) if rows else np.zeros((0, m), dtype=bool)
    stratum = np.concatenate(strata) if strata else np.zeros(0, dtype=np.int64)
    pair = np.concatenate(pair_ids) if pair_ids else np.zeros(0, dtype=np.int64)
    per_size = np.bincount(stratum, minlength=m + 1).astype(np.float64)
    weight = mass[stratum] / np.maximum(per_size[stratum], 1.0)
    return Design(z=z, weight=weight, pair=pair, stratum=stratum, exact=False)


def _share(s: int, m: int, allocation: str, mass: np.ndarray) -> float:
    """Relative sampling budget of the size pair (s, M−s) under ``allocation``."""
    sizes = _sizes_of_pair(s, m)
    if allocation == "kernel":
        return float(sum(mass[t] for t in sizes))
    return float(len(sizes))


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


CANDIDATES = 32  # random subsets considered per balanced pick


def _candidates(m: int, s: int, rows: int, generator: "torch.Generator") -> np.ndarray:
    """(rows, CANDIDATES, M) bool: uniform random size-``s`` subsets, one row of candidates per pick."""
    import torch

    keys = torch.rand((rows, CANDIDATES, m), generator=generator).numpy()
    order = np.argpartition(keys, s - 1, axis=2)[:, :, :s]  # the s smallest keys: a uniform random s-subset
    cand = np.zeros((rows, CANDIDATES, m), dtype=bool)
    np.put_along_axis(cand, order, True, axis=2)
    return cand


def _balanced_picks(m: int, pools: dict[int, np.ndarray],
                    gen_for: "Callable[[int], torch.Generator]") -> dict[int, np.ndarray]:
    """As many distinct size-s subsets as ``pools[s]`` has rows, each chosen to keep the design balanced.

    Each pick takes, among a row of candidates (``pools[s]``), the one that least repeats what
    is already chosen of its size: how often its players appear and how often its pairs of
    players appear together. The design then covers players and pairs evenly (close to a
    balanced incomplete block design), which lowers the regression's error for the same
    evaluations. For s = M/2 a subset and its complement count as one. The sizes are independent
    and advance in lockstep (one batched cost per step); a size whose row of candidates is all
    taken draws another from its own generator.
    """
    sizes = list(pools)
    counts = {s: len(pool) for s, pool in pools.items()}
    pools = dict(pools)  # a size that runs out of candidates gets a new row here, not in the caller's dict
    chosen = {s: np.zeros((counts[s], m), dtype=bool) for s in sizes}
    seen: dict[int, set[bytes]] = {s: set() for s in sizes}
    # co-occurrence counts per size, the diagonal weighted (1 + M)×: for a 0/1 row c the cost cᵀ T c
    # is the pairwise load plus M × the first-order load, so player balance comes first
    load = np.zeros((len(sizes), m, m))
    used = {s: 0 for s in sizes}
    count = {s: 0 for s in sizes}
    while True:
        active = [a for a, s in enumerate(sizes) if count[s] < counts[s]]
        if not active:
            return chosen
        for a in active:
            s = sizes[a]
            if used[s] == len(pools[s]):
                pools[s], used[s] = _candidates(m, s, 1, gen_for(s)), 0
        cand = np.stack([pools[sizes[a]][used[sizes[a]]] for a in active])  # (A, CANDIDATES, M)
        c = cand.astype(np.float64)
        cost = np.einsum("aij,aij->ai", c @ load[active], c)
        best = np.argmin(cost, axis=1)  # the stable order's first candidate
        taken = np.zeros((len(active), m))
        for i, a in enumerate(active):
            s = sizes[a]
            used[s] += 1
            idx = int(best[i])
            key = _key(cand[i, idx], s, m)
            if key in seen[s]:  # the cheapest was taken already: the next cheapest not taken, if any
                order = [j for j in np.argsort(cost[i], kind="stable") if _key(cand[i, j], s, m) not in seen[s]]
                if not order:
                    continue
                idx = int(order[0])
                key = _key(cand[i, idx], s, m)
            seen[s].add(key)
            chosen[s][count[s]] = cand[i, idx]
            count[s] += 1
            taken[i] = c[i, idx]
        load[active] += taken[:, :, None] * taken[:, None, :] + m * taken[:, :, None] * np.eye(m)


def _key(row: np.ndarray, s: int, m: int) -> bytes:
    """A subset's identity; for s = M/2 a subset and its complement are one."""
    return row.tobytes() if 2 * s != m else min(row.tobytes(), (~row).tobytes())


@dataclass
class Fit:
    """A constrained weighted least-squares fit and what its Shapley estimate is made of."""

    phi: np.ndarray  # (K, M)
    stderr: np.ndarray  # (K, M)
    interactions: int = 1  # highest interaction order the surrogate modelled


def jackknife_stderr(infl: np.ndarray, strata: np.ndarray, population: dict[int, int]) -> np.ndarray:
    """(K, M) infinitesimal-jackknife standard errors of φ from per-unit influences ``infl`` (r, K, M).

    Units are drawn without replacement within strata: Var φ ≈ Σ_s (1 − n_s/N_s) · n_s/(n_s − 1) · Σ_{n∈s} (d_n − d̄_s)².
    """
    var = np.zeros(infl.shape[1:])
    for s in np.unique(strata):
        d = infl[strata == s]
        if len(d) > 1:
            scale = (1.0 - len(d) / population[int(s)]) * len(d) / (len(d) - 1)
            var += max(scale, 0.0) * ((d - d.mean(axis=0)) ** 2).sum(axis=0)
    return np.sqrt(var)


def constrained_fit(x: np.ndarray, y: np.ndarray, weight: np.ndarray, *, constraint: np.ndarray,
                    target: np.ndarray, shapley: np.ndarray, penalty: np.ndarray,
                    strata: np.ndarray, population: dict[int, int]) -> Fit:
    """min Σ_n w_n (y_n − x_n·θ)² + Σ_j p_j θ_j²  subject to  constraint·θ = target; φ = shapley @ θ.

    Standard errors are the infinitesimal jackknife of φ over the sampling units: every row n
    with ``strata[n] >= 0`` was drawn from stratum ``strata[n]`` of ``population[s]`` units
    (rows with −1 were enumerated and have no sampling error). The derivative of φ with
    respect to row n's multiplicity is d_n = w_n r_n · shapley A⁻¹ x_n (A the KKT matrix), and
    Var φ ≈ Σ_s (1 − n_s/N_s) · n_s/(n_s − 1) · Σ_{n∈s} (d_n − d̄_s)² — the bootstrap's
    variance without its resamples, with the finite-population correction for distinct draws,
    taken at leave-one-out residuals r_n / (1 − h_nn) so that flexible fits are not flattered.

    Shapes: x (n, p), y (n, K), weight (n,), constraint (p,), target (K,), shapley (M, p),
    penalty (p,), strata (n,).
    """
    p = x.shape[1]
    m = len(shapley)
    xw = x * weight[:, None]
    gram = xw.T @ x + np.diag(penalty)
    # a tiny relative ridge only guards rank deficiency (very small budgets); Σφ stays exact
    gram += np.eye(p) * 1e-12 * max(np.trace(gram), 1e-300) / p
    kkt = np.zeros((p + 1, p + 1))
    kkt[:p, :p], kkt[:p, p], kkt[p, :p] = gram, constraint, constraint
    rows = np.flatnonzero(strata >= 0)
    # one factorisation for the fit, φ's sensitivity to the data and the hat matrix's diagonal
    rhs = np.concatenate([np.concatenate([xw.T @ y, target[None]]),
                          np.concatenate([shapley.T, np.zeros((1, m))]),
                          np.concatenate([x[rows].T, np.zeros((1, len(rows)))])], axis=1)
    sol = np.linalg.solve(kkt, rhs)[:p]
    k = y.shape[1]
    theta, sens, hat = sol[:, :k], sol[:, k:k + m], sol[:, k + m:]  # (p, K), (p, M), (p, r)
    phi = (shapley @ theta).T
    stderr = np.zeros_like(phi)
    if len(rows):
        lever = weight[rows] * np.einsum("np,pn->n", x[rows], hat)
        # leave-one-out residuals: a flexible fit's own residuals understate its error
        resid = (y[rows] - x[rows] @ theta) / np.maximum(1.0 - lever, 1e-3)[:, None]  # (r, K)
        infl = (x[rows] @ sens)[:, None, :] * (weight[rows, None] * resid)[:, :, None]  # (r, K, M)
        stderr = jackknife_stderr(infl, strata[rows], population)
    return Fit(phi=phi, stderr=stderr)


def _stratum_sizes(m: int, paired: bool) -> dict[int, int]:
    """How many sampling units each stratum holds: coalitions of size s, or complement pairs."""
    if not paired:
        return {s: math.comb(m, s) for s in range(1, m)}
    return {s: math.comb(m, s) // (2 if 2 * s == m else 1) for s in range(1, m // 2 + 1)}


def _complements(z: np.ndarray) -> np.ndarray | None:
    """Index of each row's complement in ``z``, or None when some row lacks one."""
    index = {row.tobytes(): i for i, row in enumerate(z)}
    found = [index.get((~row).tobytes(), -1) for row in z]
    return None if min(found, default=0) < 0 else np.asarray(found)


def additive_fit(design: Design, y: np.ndarray, delta: np.ndarray) -> Fit:
    """Plain Kernel SHAP on coalition rows: φ0 = f(b) fixed, Σφ = delta exact."""
    m = design.z.shape[1]
    strata = np.where(design.pair >= 0, design.stratum, -1)
    return constrained_fit(design.z.astype(np.float64), y, design.weight, constraint=np.ones(m), target=delta,
                           shapley=np.eye(m), penalty=np.zeros(m), strata=strata,
                           population=_stratum_sizes(m, paired=False))


def odd_observations(design: Design, y: np.ndarray,
                     partner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows, u, odd part, weight): one observation per complement pair, taken at its first row.

    u = 2z − 1 of that row, odd part (v(S) − v(N∖S))/2, weight the pair's summed kernel weight.
    """
    first = np.flatnonzero(np.arange(len(partner)) < partner)
    u = 2.0 * design.z[first] - 1.0
    return first, u, (y[first] - y[partner[first]]) / 2.0, design.weight[first] + design.weight[partner[first]]


def adjusted_fit(design: Design, y: np.ndarray, delta: np.ndarray, partner: np.ndarray, *,
                 orders: tuple[tuple[int, float], ...], ridge: float, representers: int,
                 generator: "torch.Generator", adjacency: OddAdjacencyFeatures | None = None,
                 adjacency_weight: float = 1.0, kernel: object | None = None, dual: bool | None = None) -> Fit:
    """Kernel SHAP with a regression adjustment by odd interactions, on a design closed under complement.

    The Shapley value depends only on the game's odd part (v(S) − v(N∖S))/2, so each coalition
    and its complement make one observation. That part is fitted as an additive term in
    u = 2z − 1 (unpenalised) plus odd interactions of the given orders (a ridge-penalised
    kernel, :mod:`explain_cli.engines.interactions`), with the efficiency constraint exact, and φ
    is read off the fitted surrogate in closed form. With ``orders=()`` this is plain Kernel SHAP.
    The additive term is unpenalised, so the residual has no additive part: φ is exact when
    every coalition is present and for additive games at any budget, and Σφ = delta always.
    More than ``representers`` pairs: the interaction kernel is spanned by a seeded subset.
    Otherwise every pair is a representer and the fit is solved in its dual (:func:`kriging_fit`,
    the same solution at lower cost when there are fewer pairs than features); ``dual=False``
    forces the primal form (tests compare the two).
    """
    import torch

    m = design.z.shape[1]
    first, u, y_odd, weight = odd_observations(design, y, partner)
    sizes = design.stratum[first]
    strata = np.where(design.pair[first] >= 0, np.minimum(sizes, m - sizes), -1)
    lam = ridge * design.weight.sum()
    if orders and kernel is None:
        kernel = OddInteractionKernel(m, orders)
    if dual is None:
        dual = len(u) <= representers
    if orders and dual:
        return kriging_fit(u, y_odd, weight, delta / 2.0, kernel=kernel, ridge=lam, adjacency=adjacency,
                           adjacency_weight=adjacency_weight, strata=strata, population=_stratum_sizes(m, paired=True))
    x, shapley, constraint = u, 2.0 * np.eye(m), np.ones(m)
    penalty = np.zeros(m)
    if orders:
        keep = np.sort(torch.randperm(len(u), generator=generator)[:representers].numpy())
        centres = np.concatenate([np.ones((1, m)), u[keep]])  # the grand coalition carries the constraint
        k_centres = kernel(centres, centres)
        jitter = np.eye(len(centres)) * 1e-9 * np.trace(k_centres) / len(centres)  # rank-deficient when M is small
        basis = np.linalg.inv(np.linalg.cholesky(k_centres + jitter)).T  # k(u, centres) @ basis: orthonormal features
        x = np.concatenate([u, kernel(u, centres) @ basis], axis=1)
        shapley = np.concatenate([shapley, kernel.shapley(centres).T @ basis], axis=1)
        constraint = np.concatenate([constraint, k_centres[0] @ basis])  # centres[0] is the grand coalition
        penalty = np.concatenate([penalty, np.full(basis.shape[1], lam)])
    if adjacency is not None and adjacency.size:
        x = np.concatenate([x, adjacency(u)], axis=1)
        shapley = np.concatenate([shapley, adjacency.shapley], axis=1)
        constraint = np.concatenate([constraint, np.ones(adjacency.size)])  # u^T = 1 at the grand coalition
        penalty = np.concatenate([penalty, np.full(adjacency.size, lam / adjacency_weight)])
    return constrained_fit(x, y_odd, weight, constraint=constraint, target=delta / 2.0, shapley=shapley,
                           penalty=penalty, strata=strata, population=_stratum_sizes(m, paired=True))


def kriging_fit(u: np.ndarray, y: np.ndarray, weight: np.ndarray, target: np.ndarray, *, kernel: object,
                ridge: float, adjacency: OddAdjacencyFeatures | None, adjacency_weight: float, strata: np.ndarray,
                population: dict[int, int]) -> Fit:
    """The regression adjustment solved in its dual: f(u) = u·β + g(u), g in the interaction kernel's span.

    The same minimiser as :func:`constrained_fit` with every observation a representer:
    Σ_n w_n (y_n − f(u_n))² + ridge ‖g‖², β unpenalised, f(1) = ``target`` exactly. As a
    Gaussian process (universal kriging), the grand coalition is an observation without noise
    and row n has noise ridge / w_n; with A = K + D over the points P = [1; u],
    β = (UᵀA⁻¹U)⁻¹UᵀA⁻¹Y, g = Σ_j c_j k(P_j, ·) with c = A⁻¹(Y − Uβ), and
    φ = 2β + Σ_j c_j Shapley(k(P_j, ·)). One Cholesky factor of the (n+1)² matrix A gives the
    fit, the residuals (r = D c), the leverages (1 − h_nn = D_nn Π_nn) and φ's sensitivity to
    each observation, so the infinitesimal-jackknife standard errors match the primal form's.
    ``adjacency`` features join the kernel as adjacency_weight · Φ Φᵀ (their ridge is
    ridge / adjacency_weight). Shapes: u (n, M), y (n, K), weight (n,), target (K,).
    """
    from scipy.linalg import cho_factor, cho_solve, solve_triangular
    from scipy.linalg.lapack import dtrtri

    n, m = u.shape
    points = np.concatenate([np.ones((1, m)), u])
    gram = kernel(points, points)
    shap = kernel.shapley(points)  # (n+1, M): Shapley values of each k(P_j, ·)
    if adjacency is not None and adjacency.size:
        feats = adjacency(points) * np.sqrt(adjacency_weight)
        gram = gram + feats @ feats.T
        shap = shap + feats @ (adjacency.shapley.T * np.sqrt(adjacency_weight))
    noise = np.concatenate([[0.0], ridge / weight])
    a = gram + np.diag(noise)
    # A is positive definite when k(1, 1) > 0 and every row has noise; the guard leaves row 0 exact
    a[np.arange(1, n + 1), np.arange(1, n + 1)] += 1e-12 * np.trace(gram) / (n + 1)
    chol = np.linalg.cholesky(a)

    def lower(b: np.ndarray) -> np.ndarray:  # L⁻¹ b
        return solve_triangular(chol, b, lower=True, check_finite=False)

    def upper(b: np.ndarray) -> np.ndarray:  # L⁻ᵀ b
        return solve_triangular(chol, b, lower=True, trans="T", check_finite=False)

    big_y = np.concatenate([target[None], y])
    half_u, half_y = lower(points), lower(big_y)
    a_inv_u = upper(half_u)  # (n+1, M)
    g = half_u.T @ half_u  # UᵀA⁻¹U
    # a tiny ridge guards rank deficiency (fewer pairs than players); f(1) = target holds for any β
    g_factor = cho_factor(g + np.eye(m) * 1e-12 * max(np.trace(g), 1e-300) / m)
    beta = cho_solve(g_factor, half_u.T @ half_y)  # (M, K)
    c = upper(half_y - half_u @ beta)  # A⁻¹(Y − Uβ), (n+1, K)
    phi = (2.0 * beta + shap.T @ c).T
    stderr = np.zeros_like(phi)
    rows = np.flatnonzero(strata >= 0)
    if len(rows):
        g_inv_ut = cho_solve(g_factor, a_inv_u.T)  # (M, n+1) = ∂β/∂Y
        # Π = A⁻¹ − A⁻¹U G⁻¹ UᵀA⁻¹ = ∂c/∂Y; its diagonal and Sᵀ Π without forming an (n+1)² matrix
        l_inv = dtrtri(chol, lower=1)[0]  # diag(A⁻¹) = column sums of L⁻¹ squared
        proj_diag = np.einsum("ij,ij->j", l_inv, l_inv) - np.einsum("nm,mn->n", a_inv_u, g_inv_ut)
        sens = 2.0 * g_inv_ut + upper(lower(shap)).T - (shap.T @ a_inv_u) @ g_inv_ut  # (M, n+1) = ∂φ/∂Y
        idx = rows + 1  # data rows follow the grand coalition
        # leave-one-out residuals: r_n / (1 − h_nn) with r = D c and 1 − h_nn = D_nn Π_nn
        resid = noise[idx, None] * c[idx] / np.maximum(noise[idx] * proj_diag[idx], 1e-3)[:, None]
        infl = sens[:, idx].T[:, None, :] * resid[:, :, None]  # (r, K, M)
        stderr = jackknife_stderr(infl, strata[rows], population)
    return Fit(phi=phi, stderr=stderr)


def image_proxy(design: Design, y: np.ndarray, delta: np.ndarray, partner: np.ndarray, *, max_order: int,
                segments: np.ndarray | None, generator: "torch.Generator") -> Fit:
    """The regression adjustment with the image prior (``proxy="image"``).

    A pilot (plain paired Kernel SHAP on the same evaluations, no extra forwards) weighs each
    player by ρ_i = |φ_i|/max|φ| + HEREDITY_FLOOR (RMS over targets); the odd interaction
    kernel then puts ρ^T on the monomial u^T (:class:`WeightedOddKernel`), and the connected
    triples of the segments' adjacency graph (:mod:`explain_cli.engines.adjacency`) enter as
    explicit features with ADJACENCY_WEIGHT times a generic triple's prior weight. The
    additive part stays unpenalised, so every exactness property of the generic fit holds.
    """
    m = design.z.shape[1]
    pilot = adjusted_fit(design, y, delta, partner, orders=(), ridge=0.0, representers=0, generator=generator)
    scale = np.abs(pilot.phi) / np.maximum(np.abs(pilot.phi).max(axis=1, keepdims=True), 1e-300)
    rho = np.sqrt(np.mean(scale ** 2, axis=0)) + HEREDITY_FLOOR
    orders = tuple((d, w) for d, w in IMAGE_ORDER_WEIGHTS.items() if d <= min(max_order, m))
    adjacency = None
    if segments is not None and max_order >= 3 and m >= 3:
        adjacency = OddAdjacencyFeatures.from_segments(segments, m, (3,))
    fit = adjusted_fit(design, y, delta, partner, orders=orders, ridge=IMAGE_RIDGE, representers=REPRESENTERS,
                       generator=generator, adjacency=adjacency, adjacency_weight=ADJACENCY_WEIGHT,
                       kernel=WeightedOddKernel(m, orders, rho) if orders else None)
    fit.interactions = max((d for d, _ in orders), default=1)
    return fit


def estimate(design: Design, y: np.ndarray, delta: np.ndarray, params: KernelShapParams,
             generator: "torch.Generator", segments: np.ndarray | None = None) -> Fit:
    """Shapley values from evaluated coalitions: y (n, K) = v(S) − f(b), delta (K,) = f(x) − f(b).

    A design closed under complement (paired sampling, full strata) gets the regression
    adjustment; an unpaired one (tiny budgets) or a complete one is solved as plain Kernel SHAP.
    """
    partner = None if design.exact else _complements(design.z)
    if partner is None:
        return additive_fit(design, y, delta)
    m = design.z.shape[1]
    if params.proxy == "image" and params.interactions > 1:
        return image_proxy(design, y, delta, partner, max_order=params.interactions, segments=segments,
                           generator=generator)
    orders = tuple((d, w) for d, w in ORDER_WEIGHTS.items() if d <= min(params.interactions, m))
    fit = adjusted_fit(design, y, delta, partner, orders=orders, ridge=RIDGE, representers=REPRESENTERS,
                       generator=generator)
    fit.interactions = max((d for d, _ in orders), default=1)
    return fit


def run(problem: "Problem", params: KernelShapParams, generator: "torch.Generator") -> Attribution:
    import torch

    m = problem.n_segments
    if m < 2:
        raise OptionError("n_segments", "gives fewer than 2 segments; kernelshap needs at least 2")
    if auto.is_auto(params.samples):
        return run_auto(problem, params, generator)
    design = plan(m, params.samples - 2, allocation=params.allocation, exact=params.exact, generator=generator)
    ev = problem.evaluator
    ev.progress.start(len(design.z) + 2, "kernelshap")
    ev.progress.advance(1)  # f(x), evaluated before the engine
    f_b = problem.baseline_output().numpy()
    f_x = problem.reference.numpy()
    v = problem.segment_outputs(torch.from_numpy(design.z).float()).numpy()
    fit = estimate(design, v - f_b[None], f_x - f_b, params, generator, segments=problem.segments.cpu().numpy())
    return _attribution(design, fit, v, f_x, f_b, m)


def run_auto(problem: "Problem", params: KernelShapParams, generator: "torch.Generator") -> Attribution:
    """Re-plan with a budget ×1.5 per round until the rule holds; outputs memoised by coalition.

    Each size pair draws from its own seeded stream (``plan(size_generator=...)``), so a larger
    budget's sampled coalitions begin with the smaller one's and enumerated pairs contain them:
    nearly every earlier evaluation is reused, and only new coalitions are evaluated and counted.
    The standard errors are the fit's own (infinitesimal jackknife).
    """
    import torch

    m = problem.n_segments
    ev = problem.evaluator
    cap = params.max_samples
    stop = auto.Stopper(params.auto_tolerance, cap)
    base = int(torch.randint(0, 2**62, (1,), generator=generator))
    streams: dict[int, torch.Generator] = {}

    def stream(s: int) -> "torch.Generator":
        if s not in streams:
            streams[s] = torch.Generator().manual_seed(base + 1 + s)
        return streams[s]

    ev.progress.start(cap, "kernelshap")
    ev.progress.advance(1)
    f_b = problem.baseline_output().numpy()
    f_x = problem.reference.numpy()
    segments = problem.segments.cpu().numpy()
    memo: dict[bytes, np.ndarray] = {}
    budget = min(cap, max(256, 4 * (m + 1)))
    result = None
    while True:
        streams.clear()  # every plan replays each pair's stream from its start
        design = plan(m, budget - 2, allocation=params.allocation, exact=False, generator=generator,
                      size_generator=stream)
        keys = [row.tobytes() for row in design.z]
        new = list(dict.fromkeys(k for k in keys if k not in memo))
        if result is not None and len(memo) + 2 + len(new) > cap:
            stop.cap()
            break
        if new:
            z_new = np.stack([np.frombuffer(k, dtype=bool) for k in new])
            out = problem.segment_outputs(torch.from_numpy(z_new).float()).numpy()
            memo.update(zip(new, out))
        v = np.stack([memo[k] for k in keys])
        fit = estimate(design, v - f_b[None], f_x - f_b, params, torch.Generator().manual_seed(base),
                       segments=segments)
        result = _attribution(design, fit, v, f_x, f_b, m)
        if stop.update(len(memo) + 2, result.scores, result.stderr):
            break
        if design.exact or budget >= cap:
            if design.exact:
                stop.stopped = "converged"  # every coalition is in: exact Shapley values
            else:
                stop.cap()
            break
        budget = auto.next_size(budget, cap)
    result.extra["auto"] = stop.record()
    return result


def _attribution(design: Design, fit: Fit, v: np.ndarray, f_x: np.ndarray, f_b: np.ndarray, m: int) -> Attribution:
    y = v - f_b[None]
    phi = fit.phi
    pred = design.z.astype(np.float64) @ phi.T
    r2 = weighted_r2(y, pred, design.weight) if len(y) > 1 else None
    stderr, warnings = fit.stderr, []
    if not design.exact and len(design.z) <= m - 1:
        # fewer coalitions than free Shapley values: the fit interpolates, so its residuals (and the
        # standard errors built on them) are zero by construction, not because the values are certain
        stderr = np.full_like(phi, np.nan)
        warnings.append(f"{len(design.z) + 2} Kernel SHAP evaluations for {m} segments cannot determine the "
                        f"{m - 1} free Shapley values: standard errors are unknown (null) and r2 means nothing; use "
                        f"samples well above {m + 1} (10× is typical) or fewer segments")
    elif r2 is not None:
        warnings += [f"target {k}: Kernel SHAP fit r2 = {v:.3g} < 0: the additive model through f(baseline) and f(x) "
                     "fits the sampled coalitions worse than their mean (see extra.r2_definition); raise samples, "
                     "or the model's interactions dominate (try method partition)"
                     for k, v in enumerate(np.atleast_1d(r2)) if np.isfinite(v) and v < 0]
    return Attribution(
        scores=phi,
        base_value=f_b.copy(),
        baseline_score=f_b.copy(),
        r2=r2,
        stderr=stderr,
        warnings=warnings,
        extra={
            "exact": design.exact,
            "interactions": fit.interactions,
            "coalitions": int(len(design.z)),
            "enumerated_coalitions": int((design.pair < 0).sum()),
            "sampled_pairs": int(len(np.unique(design.pair[design.pair >= 0]))),
        },
    )


ENGINE = Engine(
    name="kernelshap",
    summary="Shapley values by constrained weighted regression over paired coalitions (Lundberg & Lee 2017), regression-adjusted by odd interactions",
    params=KernelShapParams,
    run=run,
)
