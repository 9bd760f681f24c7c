"""Kernel SHAP's estimators: constrained weighted least squares with exact efficiency.

Plain Kernel SHAP (:func:`additive_fit`) and the regression adjustment by odd interactions
(:func:`adjusted_fit`, solved in its dual by :func:`kriging_fit` up to REPRESENTERS pairs),
with the image prior (:func:`image_proxy`). Standard errors are the infinitesimal jackknife
over the sampled units within each stratum, at leave-one-out residuals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explain_cli.engines.kernelshap.adjacency import OddAdjacencyFeatures
from explain_cli.engines.kernelshap.design import Design
from explain_cli.engines.kernelshap.interactions import InteractionKernel, OddInteractionKernel, WeightedOddKernel

if TYPE_CHECKING:
    import torch

# Regression adjustment (measured in benchmarks/shapley_accuracy.py, see README): kernel weight
# per odd interaction order, ridge penalty per unit of total kernel weight, and how many sampled
# pairs span the interaction kernel at most (its solve grows with their cube).
ORDER_WEIGHTS = {3: 1.0, 5: 0.1}
RIDGE = 0.3
REPRESENTERS = 1024
# The image proxy (``proxy="image"``, docs/shapley.md): interactions weighted per player by a
# pilot estimate (ρ_i = |φ_i|/max|φ| + floor), lighter order 5, explicit connected triples of
# adjacent segments with ADJACENCY_WEIGHT times the prior weight of a generic triple.
IMAGE_ORDER_WEIGHTS = {3: 1.0, 5: 0.05}
IMAGE_RIDGE = 0.3
ADJACENCY_WEIGHT = 10.0
HEREDITY_FLOOR = 0.2


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
                 adjacency_weight: float = 1.0, kernel: InteractionKernel | None = None,
                 dual: bool | None = None) -> Fit:
    """Kernel SHAP with a regression adjustment by odd interactions, on a design closed under complement.

    The Shapley value depends only on the game's odd part (v(S) − v(N∖S))/2, so each coalition
    and its complement make one observation. That part is fitted as an additive term in
    u = 2z − 1 (unpenalised) plus odd interactions of the given orders (a ridge-penalised
    kernel, :mod:`.interactions`), with the efficiency constraint exact, and φ is read off the
    fitted surrogate in closed form. With ``orders=()`` this is plain Kernel SHAP.
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
    if not orders:
        kernel = None  # no interactions: plain Kernel SHAP on the odd part
    elif kernel is None:
        kernel = OddInteractionKernel(m, orders)
    if dual is None:
        dual = len(u) <= representers
    if kernel is not None and dual:
        return kriging_fit(u, y_odd, weight, delta / 2.0, kernel=kernel, ridge=lam, adjacency=adjacency,
                           adjacency_weight=adjacency_weight, strata=strata, population=_stratum_sizes(m, paired=True))
    x, shapley, constraint = u, 2.0 * np.eye(m), np.ones(m)
    penalty = np.zeros(m)
    if kernel is not None:
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


def kriging_fit(u: np.ndarray, y: np.ndarray, weight: np.ndarray, target: np.ndarray, *, kernel: InteractionKernel,
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
    """The regression adjustment with the image prior (``proxy="image"``), each target with its own prior.

    A pilot (plain paired Kernel SHAP on the same evaluations, no extra forwards) weighs each
    player by ρ_i = |φ_i|/max|φ| + HEREDITY_FLOOR, per target; the odd interaction kernel then
    puts ρ^T on the monomial u^T (:class:`WeightedOddKernel`), and the connected triples of the
    segments' adjacency graph (:mod:`.adjacency`) enter as explicit features with
    ADJACENCY_WEIGHT times a generic triple's prior weight. The additive part stays
    unpenalised, so every exactness property of the generic fit holds. Each target is fitted
    with its own prior from the same generator state, so its numbers do not depend on which
    other targets are explained (K fits instead of one; the evaluations are shared).
    """
    m = design.z.shape[1]
    pilot = adjusted_fit(design, y, delta, partner, orders=(), ridge=0.0, representers=0, generator=generator)
    scale = np.abs(pilot.phi) / np.maximum(np.abs(pilot.phi).max(axis=1, keepdims=True), 1e-300)
    orders = tuple((d, w) for d, w in IMAGE_ORDER_WEIGHTS.items() if d <= min(max_order, m))
    adjacency = None
    if segments is not None and max_order >= 3 and m >= 3:
        adjacency = OddAdjacencyFeatures.from_segments(segments, m, (3,))
    start = generator.get_state()
    fits = []
    for k in range(y.shape[1]):
        generator.set_state(start)  # every target draws what a run explaining it alone would
        rho = scale[k] + HEREDITY_FLOOR
        fits.append(adjusted_fit(design, y[:, [k]], delta[[k]], partner, orders=orders, ridge=IMAGE_RIDGE,
                                 representers=REPRESENTERS, generator=generator, adjacency=adjacency,
                                 adjacency_weight=ADJACENCY_WEIGHT,
                                 kernel=WeightedOddKernel(m, orders, rho) if orders else None))
    fit = Fit(phi=np.concatenate([f.phi for f in fits]), stderr=np.concatenate([f.stderr for f in fits]))
    fit.interactions = max((d for d, _ in orders), default=1)
    return fit
