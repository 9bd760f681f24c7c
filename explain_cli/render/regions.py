"""Segment-level maps drawn with smooth edges: each panel pixel takes the value of its smoothed segment.

A segment-level map is constant on each superpixel, but at the input's resolution its edges are
the model grid's staircase (softened by bilinear resampling). The boundaries layer already knows
which segment owns each panel pixel once the staircase is smoothed away (`Boundaries.owner`);
filling by owner gives the map the same smooth edges as its outlines. Maps read back from a saved
``.npy`` carry no segment ids: `regions_from_maps` recovers them from the map's flat regions.
"""

from __future__ import annotations

import numpy as np

from explain_cli.render.boundaries import Boundaries

# A segment-level map is flat on most of each segment; a per-pixel map (RISE) almost nowhere.
_FLAT_SHARE = 0.25


def segment_fill(values_full: np.ndarray, labels_full: np.ndarray, bounds: Boundaries) -> np.ndarray | None:
    """The map at panel size, each pixel at its smoothed segment's value; None if the map is not per segment.

    Parameters
    ----------
    values_full : (H, W) float ndarray
        The map at the original resolution (NaN outside the model's window).
    labels_full : (H, W) float ndarray
        Segment ids at the original resolution (NaN outside the window).
    bounds : Boundaries
        From `explain_cli.render.boundaries.segments_layer` for the same labels; its ``owner``
        gives the panel pixels' segments.

    Returns
    -------
    (h, w) float ndarray or None
        NaN where no segment owns the pixel. None when fewer than a quarter of the map's
        pixels sit exactly on their segment's median value (a per-pixel map, such as RISE's).
    """
    inside = np.isfinite(labels_full) & np.isfinite(values_full)
    if not inside.any():
        return None
    ids = labels_full[inside].astype(np.int64)
    vals = values_full[inside].astype(np.float64)
    order = np.lexsort((vals, ids))
    ids, vals = ids[order], vals[order]
    uniq, starts, counts = np.unique(ids, return_index=True, return_counts=True)
    medians = vals[starts + counts // 2]
    tol = 1e-6 * max(float(np.abs(vals).max()), 1e-30)
    if np.mean(np.abs(vals - np.repeat(medians, counts)) <= tol) < _FLAT_SHARE:
        return None
    lut = np.full(int(uniq.max()) + 2, np.nan)  # the last entry: id -1, outside the window
    lut[uniq] = medians
    owner = bounds.owner
    return lut[np.where(owner >= 0, owner, -1)]


def regions_from_maps(maps: np.ndarray) -> np.ndarray | None:
    """Segment ids recovered from piecewise-constant (K, H, W) maps; None for per-pixel maps.

    Pixels whose K values equal their right and lower neighbours' are a segment's flat interior;
    4-connected flat pixels of one value make a region (specks under a tenth of the median region
    are dropped), and the remaining pixels (the resampling's ramps between segments) join the
    nearest region. Regions are numbered 0..R-1 (not the JSON's
    ids); NaN outside the window. Two touching segments with equal scores for every target become
    one region, which draws the same.

    Examples
    --------
    >>> m = np.zeros((1, 4, 6)); m[0, :, 3:] = 1.0
    >>> regions_from_maps(m)
    array([[0., 0., 0., 1., 1., 1.],
           [0., 0., 0., 1., 1., 1.],
           [0., 0., 0., 1., 1., 1.],
           [0., 0., 0., 1., 1., 1.]])
    """
    from scipy import ndimage

    stack = np.asarray(maps, dtype=np.float64)
    if stack.ndim == 2:
        stack = stack[None]
    finite = np.all(np.isfinite(stack), axis=0)
    if not finite.any():
        return None
    filled = np.where(finite, stack, 0.0)
    tol = 1e-6 * max(float(np.abs(filled).max()), 1e-30)
    same_right = np.ones(finite.shape, dtype=bool)
    same_down = np.ones(finite.shape, dtype=bool)
    same_right[:, :-1] = np.all(np.abs(filled[:, :, 1:] - filled[:, :, :-1]) <= tol, axis=0) & finite[:, 1:]
    same_down[:-1, :] = np.all(np.abs(filled[:, 1:, :] - filled[:, :-1, :]) <= tol, axis=0) & finite[1:, :]
    flat = finite & same_right & same_down
    if flat.sum() < _FLAT_SHARE * finite.sum():
        return None
    regions, count = ndimage.label(flat)
    if count == 0:
        return None
    # Flat specks inside the ramps (where two ramps cross at a junction) are not segments: a
    # superpixel is rarely a tenth of the typical one, a speck is a few pixels.
    areas = np.bincount(regions.ravel())[1:]
    speck = areas < max(4.0, 0.1 * float(np.median(areas)))
    if speck.all():
        return None
    keep = np.concatenate([[0], np.cumsum(~speck)]) * np.concatenate([[0], ~speck])  # old id -> new id, 0: dropped
    regions = keep[regions]
    # Every other pixel of the window joins its nearest flat region.
    _, (near_r, near_c) = ndimage.distance_transform_edt(regions == 0, return_indices=True)
    labels = (regions[near_r, near_c] - 1).astype(np.float64)
    labels[~finite] = np.nan
    return labels
