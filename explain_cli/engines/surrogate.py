"""Weighted linear surrogates fitted in float64: y ≈ a + Z·c for several targets at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explain_cli.errors import OptionError

SURROGATES = ("ridge", "lasso", "linear")


@dataclass
class LinearFit:
    coef: np.ndarray  # (K, M)
    intercept: np.ndarray  # (K,)
    r2: np.ndarray  # (K,) weighted coefficient of determination


def weighted_r2(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted R² per column of (N, K) ``y``; 1.0 where y is constant and fitted exactly."""
    wn = w / w.sum()
    mean = wn @ y
    ss_res = wn @ (y - pred) ** 2
    ss_tot = wn @ (y - mean) ** 2
    tiny = 1e-300 + 1e-24 * np.maximum(np.abs(mean), 1.0) ** 2
    return np.where(ss_tot > tiny, 1.0 - ss_res / np.maximum(ss_tot, tiny), np.where(ss_res <= tiny, 1.0, 0.0))


def fit_linear(z: np.ndarray, y: np.ndarray, w: np.ndarray, *, method: str = "ridge", alpha: float = 1e-3) -> LinearFit:
    """Fit a weighted linear model with an unpenalised intercept.

    Parameters
    ----------
    z : (N, M) ndarray
        Interpretable features (binary for LIME).
    y : (N, K) ndarray
        Model outputs, one column per target; all targets share one factorisation.
    w : (N,) ndarray
        Non-negative sample weights.
    method : {'ridge', 'lasso', 'linear'}
        ``ridge`` solves the normal equations in closed form with penalty
        ``alpha * trace(ZᵀWZ)/M`` (scale-aware, so the same alpha suits any sample count);
        ``lasso`` uses scikit-learn with penalty ``alpha * std_w(y)``; ``linear`` is minimum-norm
        least squares.
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if method not in SURROGATES:
        raise OptionError("surrogate", f"must be one of {', '.join(SURROGATES)}, got {method!r}")
    if alpha < 0:
        raise OptionError("alpha", f"must be non-negative, got {alpha}")
    if w.sum() <= 0:
        raise OptionError("kernel_width", "is too small: every sample has zero kernel weight; increase it")
    n, m = z.shape
    wn = w / w.sum()
    z_mean = wn @ z
    y_mean = wn @ y
    zc = z - z_mean
    yc = y - y_mean
    if method == "lasso":
        coef = _lasso(zc, yc, w, alpha)
    else:
        gram = zc.T @ (wn[:, None] * zc)
        rhs = zc.T @ (wn[:, None] * yc)
        lam = alpha * np.trace(gram) / max(m, 1) if method == "ridge" else 0.0
        if lam > 0:
            coef = np.linalg.solve(gram + lam * np.eye(m), rhs).T
        else:
            sw = np.sqrt(wn)[:, None]
            coef = np.linalg.lstsq(sw * zc, sw * yc, rcond=None)[0].T
    intercept = y_mean - coef @ z_mean
    pred = z @ coef.T + intercept
    return LinearFit(coef=coef, intercept=intercept, r2=weighted_r2(y, pred, w))


def _lasso(zc: np.ndarray, yc: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    from sklearn.linear_model import Lasso

    wn = w / w.sum()
    coefs = []
    for k in range(yc.shape[1]):
        scale = float(np.sqrt(wn @ yc[:, k] ** 2)) or 1.0
        model = Lasso(alpha=alpha * scale, fit_intercept=False, max_iter=10000)
        model.fit(zc, yc[:, k], sample_weight=w * (len(w) / w.sum()))
        coefs.append(model.coef_)
    return np.asarray(coefs)
