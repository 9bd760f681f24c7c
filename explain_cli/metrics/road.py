"""ROAD's noisy linear imputation (Rong et al. 2022): deleted pixels filled in from the ones still present.

A deletion curve that replaces pixels by ROAD's imputation keeps the deleted regions
in-distribution, so scattered deleted pixels are not rewarded for being out-of-distribution
rather than important.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from explain_cli.errors import ExplainError

if TYPE_CHECKING:
    import torch

#: ROAD's neighbour weights (Rong et al. 2022): 1/6 for the 4 direct, 1/12 for the 4 diagonal.
ROAD_NEIGHBOURS = (
    (-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
    (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12),
)
#: ROAD's noise standard deviation, in model input units (the paper's value on normalised input).
ROAD_NOISE = 0.01


def road_impute(x: "torch.Tensor", deleted: np.ndarray, *, noise: float = ROAD_NOISE,
                generator: "torch.Generator | None" = None) -> "torch.Tensor":
    """ROAD's noisy linear imputation: deleted pixels become the weighted mean of their neighbours.

    Every deleted pixel ``i`` satisfies ``v_i = Σ_j w_ij v_j / Σ_j w_ij`` over its 8 neighbours
    inside the image (weights 1/6 direct, 1/12 diagonal), where a neighbour's ``v_j`` is the
    input when it is kept and the unknown when it is deleted. The sparse system is solved once
    per channel; then Gaussian noise of std ``noise`` is added to the imputed pixels only.

    Parameters
    ----------
    x : (C, H, W) tensor
        The model input (any device); not modified.
    deleted : (H, W) bool array
        True where a pixel is removed.
    noise : float
        Standard deviation of the added noise, in model input units (ROAD: 0.01).
    generator : torch.Generator, optional
        Draws the noise; required when ``noise > 0`` for reproducible results.

    Returns
    -------
    (C, H, W) tensor on the device and dtype of ``x``: ``x`` with the deleted pixels imputed.
    """
    import torch
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    c, h, w = x.shape
    deleted = np.asarray(deleted, dtype=bool)
    if deleted.shape != (h, w):
        raise ExplainError(f"road_impute: mask of shape {deleted.shape} does not match the input's {(h, w)}")
    values = x.detach().to("cpu", torch.float64).reshape(c, -1).numpy()
    out = values.copy()  # the caller's tensor is never written
    unknown = np.flatnonzero(deleted)
    n = unknown.size
    if n == 0:
        return x.clone()
    index = np.full(h * w, -1, dtype=np.int64)
    index[unknown] = np.arange(n)
    uy, ux = np.divmod(unknown, w)
    rows, cols, data = [], [], []
    diag = np.zeros(n)
    rhs = np.zeros((n, c))
    for dy, dx, weight in ROAD_NEIGHBOURS:
        ny, nx = uy + dy, ux + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        eq = np.flatnonzero(inside)
        nb = ny[eq] * w + nx[eq]
        diag[eq] += weight
        unknown_nb = index[nb] >= 0
        rows.append(eq[unknown_nb])
        cols.append(index[nb[unknown_nb]])
        data.append(np.full(int(unknown_nb.sum()), -weight))
        np.add.at(rhs, eq[~unknown_nb], weight * values[:, nb[~unknown_nb]].T)
    # A deleted region with no kept pixel around it (e.g. 100% deleted) leaves the system
    # singular; a vanishing pull towards the kept pixels' mean fixes such regions to that colour
    # and changes the others by ~1e-9.
    eps = 1e-9
    kept = ~deleted.reshape(-1)
    fallback = values[:, kept].mean(axis=1) if kept.any() else values.mean(axis=1)
    diag += eps
    rhs += eps * fallback[None, :]
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    data.append(diag)
    a = coo_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
    solved = splu(a).solve(rhs)  # (n, C)
    if noise > 0:
        solved = solved + noise * torch.randn((n, c), generator=generator, dtype=torch.float64).numpy()
    out[:, unknown] = solved.T
    return torch.from_numpy(out.reshape(c, h, w)).to(device=x.device, dtype=x.dtype)
