"""Kernel SHAP (Lundberg & Lee 2017) with exact efficiency, paired stratified sampling and standard errors.

Modules: :mod:`.design` (which coalitions, with what weight), :mod:`.fit` (the constrained fits
and their standard errors), :mod:`.interactions` and :mod:`.adjacency` (the regression
adjustment's features), :mod:`.engine` (parameters, runs, ``ENGINE`` for the registry).

Design
------
* Players are the M superpixels; v(S) = f(x with the superpixels outside S at the baseline).
* The budget (``samples``) counts every evaluation: f(x), f(baseline) and the coalitions.
* Coalition sizes are taken in pairs (s, M−s), largest Shapley-kernel mass first. A pair is
  enumerated completely when its proportional share of the remaining budget would cover all its
  coalitions (shap's rule); once one is not, the rest of the budget is split over the remaining
  pairs (``allocation``: ``kernel`` ∝ kernel mass, or ``leverage`` ∝ number of sizes, the
  leverage-score allocation of Musco & Witter 2024), and each pair draws distinct coalitions of
  size s, balanced over players and pairs of players (``design._balanced_picks``), each with its
  complement (antithetic sampling, Covert & Lee 2021).
* Each size is a stratum: a coalition of size s gets weight K(s)/n_s, where K(s) = (M−1)/(s(M−s))
  is the kernel mass of all size-s coalitions and n_s how many of them are in the design. With
  every coalition present this is exactly the Shapley kernel, so the solution is the exact
  Shapley values.
* Efficiency is exact: φ0 = f(b) and Σφ = f(x) − f(b) through a constrained weighted least
  squares (a KKT system), not a heavy penalty weight.
* Regression adjustment (``interactions`` 3 or 5): a design closed under complement is fitted
  on the game's odd part with an unpenalised additive term plus ridge-penalised odd
  interactions (:mod:`.interactions`); φ is read off that surrogate in
  closed form. Exact under full enumeration and for additive games, like plain Kernel SHAP,
  with less error per evaluation (benchmarks/shapley_accuracy.py). Up to REPRESENTERS pairs the
  fit is solved in its dual (:func:`.fit.kriging_fit`, one Cholesky factor), beyond that in the
  primal over a seeded subset of pairs.
* The interactions' prior (``proxy``): ``image`` (default) weighs the monomial u^T by
  Π_{i∈T} ρ_i, ρ_i from a pilot plain Kernel SHAP on the same evaluations (interactions among
  players that matter alone are the large ones), and adds the connected triples of the
  segments' adjacency graph as explicit features with a heavier prior
  (:mod:`.adjacency`); ``generic`` treats all interactions of an order alike.
  See docs/shapley.md for what each part buys.
* Standard errors: the infinitesimal jackknife over the sampled units within each stratum, at
  leave-one-out residuals (the enumerated part has no sampling error); exact mode reports 0.
"""
