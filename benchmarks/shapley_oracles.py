"""Oracle bounds for Kernel SHAP on a 16-segment game: how much would knowing the game's interactions buy?

The odd part of a game on M = 16 players has 2^15 Walsh coefficients (v(z) = Σ_T c_T Π_{i∈T} u_i,
u = 2z − 1, |T| odd). Kernel SHAP's regression adjustment fits that part with an unpenalised
additive term and a Gaussian-process prior over the odd interactions (|T| ≥ 3). This script
gives the same fit, on the same designs (paired, leverage allocation, seeds 0–3), information
no estimator has, read off the game's exact 2^16 value table:

* ``top K``: the K largest true odd interactions as explicit features, beside the default kernel;
* ``GP per order``: a prior with the true mean square coefficient of each order;
* ``GP product``: per-player weights ρ fitted to the true coefficients (c_T² ≈ a_|T| Π_{i∈T} ρ_i);
* ``GP c_T²``: every coefficient's true variance.

It prints the mean relative L2 error at 512 and 2,048 evaluations for each. Needs the value
table that benchmarks/shapley_accuracy.py caches (it builds it when missing):

    python benchmarks/shapley_oracles.py                       # sample-grid16
    python benchmarks/shapley_oracles.py --problem resnet18-grid16
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.linalg import cho_factor, cho_solve

from _common import IMAGE  # noqa: E402
from shapley_accuracy import make_game  # noqa: E402

from explain_cli.engines.kernelshap.adjacency import OddAdjacencyFeatures  # noqa: E402
from explain_cli.engines.kernelshap.design import Design, complements, plan  # noqa: E402
from explain_cli.engines.kernelshap.engine import KernelShapParams, estimate  # noqa: E402
from explain_cli.engines.kernelshap.fit import adjusted_fit, odd_observations  # noqa: E402

BUDGETS = (512, 2048)


def walsh(table: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(c, |T|) for every T as a bit mask: v(z) = Σ_T c_T Π_{i∈T} (2z_i − 1)."""
    a = table.astype(np.float64).copy()
    h = 1
    while h < len(a):  # fast Walsh–Hadamard transform
        a = a.reshape(-1, 2, h)
        a = np.stack([a[:, 0] + a[:, 1], a[:, 0] - a[:, 1]], axis=1).reshape(-1)
        h *= 2
    order = np.array([bin(t).count("1") for t in range(2**m)])
    return a / 2**m * (-1.0) ** order, order


def gp_oracle(design: Design, y: np.ndarray, delta: float, members: np.ndarray, prior: np.ndarray,
              shapley_cols: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Universal kriging with explicit monomial features and their prior variances; f(1) = delta/2 exactly."""
    _, u, y_odd, w = odd_observations(design, y, complements(design.z))
    m = u.shape[1]
    points = np.concatenate([np.ones((1, m)), u])
    feats = (1 - 2 * (((points < 0).astype(np.int64) @ members.T.astype(np.int64)) % 2)).astype(np.float64)
    a = (feats * prior) @ feats.T + np.diag(np.concatenate([[0.0], ridge / w]))
    factor = cho_factor(a, lower=True)
    a_inv_u = cho_solve(factor, points)
    big_y = np.concatenate([[delta / 2.0], y_odd])
    beta = np.linalg.solve(points.T @ a_inv_u, a_inv_u.T @ big_y)
    c = cho_solve(factor, big_y - points @ beta)
    return 2.0 * beta + shapley_cols @ (prior * (feats.T @ c))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", default="sample-grid16", choices=["sample-grid16", "resnet18-grid16"])
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    game, ref, _ = make_game(args.problem, IMAGE, 0)
    m, table = game.m, game.table
    fx, fb = table[-1], table[0]
    c, order = walsh(table, m)
    interactions = np.flatnonzero((order % 2 == 1) & (order >= 3))
    members = ((interactions[:, None] >> np.arange(m)) & 1).astype(bool)
    shapley_cols = members.T * (2.0 / order[interactions])[None, :]
    coef = c[interactions]
    per_order = np.zeros(len(interactions))
    for d in np.unique(order[interactions]):
        sel = order[interactions] == d
        per_order[sel] = np.mean(coef[sel] ** 2)
    x = np.concatenate([(order[interactions][:, None] == np.unique(order[interactions])[None]).astype(float),
                        members.astype(float)], axis=1)
    weight = coef ** 2 / (coef ** 2).max()
    fit = np.linalg.lstsq(x * np.sqrt(weight)[:, None], np.log(coef ** 2 + 1e-30) * np.sqrt(weight), rcond=None)[0]
    product = np.exp(x @ fit)
    print(f"{args.problem}: {len(interactions)} odd interaction coefficients; mean relative L2 error, seeds 0–{args.seeds - 1}")

    def by_size(idx: np.ndarray) -> tuple[np.ndarray, ...]:
        sets: dict[int, list] = {}
        for t in idx:
            sets.setdefault(int(order[t]), []).append(np.flatnonzero((t >> np.arange(m)) & 1))
        return tuple(np.array(sets[d]) for d in sorted(sets))

    strongest = interactions[np.argsort(-np.abs(coef))]
    rows = {"default (image prior without adjacency)": lambda d, y, s: estimate(
        d, (y - fb)[:, None], np.array([fx - fb]), KernelShapParams(), torch.Generator().manual_seed(s)).phi[0]}
    for k in (25, 50, 100, 200):
        feats = OddAdjacencyFeatures(m, by_size(strongest[:k]))
        rows[f"top {k} true interactions as features"] = (lambda f: lambda d, y, s: adjusted_fit(
            d, (y - fb)[:, None], np.array([fx - fb]), complements(d.z), orders=((3, 1.0), (5, 0.05)), ridge=0.3,
            representers=1024, generator=torch.Generator().manual_seed(s), adjacency=f, adjacency_weight=10.0).phi[0])(feats)
    for name, prior in (("GP prior: true variance per order", per_order), ("GP prior: per-player product fitted", product),
                        ("GP prior: every coefficient's true c_T²", coef ** 2)):
        rows[name] = (lambda p: lambda d, y, s: gp_oracle(d, y - fb, fx - fb, members, p, shapley_cols))(prior)
    print(f"| oracle | {' | '.join(map(str, BUDGETS))} |\n|---|" + "---:|" * len(BUDGETS))
    for name, fn in rows.items():
        errors = []
        for budget in BUDGETS:
            err = []
            for seed in range(args.seeds):
                design = plan(m, budget - 2, allocation="leverage", exact=False,
                                 generator=torch.Generator().manual_seed(seed))
                phi = fn(design, game.values(design.z), seed)
                err.append(np.linalg.norm(phi - ref) / np.linalg.norm(ref))
            errors.append(float(np.mean(err)))
        print(f"| {name} | " + " | ".join(f"{e:.4f}" for e in errors) + " |", flush=True)


if __name__ == "__main__":
    main()
