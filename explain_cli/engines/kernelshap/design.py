"""Kernel SHAP's design: which coalitions to evaluate and how the regression weighs them.

Coalition sizes are taken in pairs (s, M−s), largest Shapley-kernel mass first; a pair is
enumerated when its share of the budget covers it, the rest of the budget is sampled as
distinct, balanced coalitions with their complements (:func:`plan`). Each size is a stratum
weighted K(s)/n_s, so a complete design carries exactly the Shapley kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from explain_cli.errors import OptionError

if TYPE_CHECKING:
    import torch


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


def complements(z: np.ndarray) -> np.ndarray | None:
    """Index of each row's complement in ``z``, or None when some row lacks one."""
    index = {row.tobytes(): i for i, row in enumerate(z)}
    found = [index.get((~row).tobytes(), -1) for row in z]
    return None if min(found, default=0) < 0 else np.asarray(found)
