"""Superpixels with scikit-image (slic, quickshift, felzenszwalb, watershed) and a regular grid.

Segmentation runs on the image the model sees (after resize and crop), so each segment is a
set of model-input pixels. Ids are made contiguous (0..M-1) whatever the algorithm returns.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from explain_cli.errors import ExplainError, OptionError

#: About how many superpixels the algorithms that take a count make by default.
DEFAULT_N_SEGMENTS = 50


@dataclass
class Segmentation:
    """A segment map and how it was made."""

    labels: np.ndarray  # (H, W) int64, ids 0..n_segments-1
    algorithm: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_segments(self) -> int:
        return int(self.labels.max()) + 1

    def areas(self) -> np.ndarray:
        return np.bincount(self.labels.ravel(), minlength=self.n_segments)

    def bboxes(self) -> np.ndarray:
        """(M, 4) boxes [top, left, bottom, right) in model-input pixels."""
        m = self.n_segments
        rows, cols = np.indices(self.labels.shape)
        flat = self.labels.ravel()
        boxes = np.empty((m, 4), dtype=np.int64)
        boxes[:, 0] = np.full(m, np.iinfo(np.int64).max)
        np.minimum.at(boxes[:, 0], flat, rows.ravel())
        boxes[:, 1] = np.iinfo(np.int64).max
        np.minimum.at(boxes[:, 1], flat, cols.ravel())
        boxes[:, 2] = -1
        np.maximum.at(boxes[:, 2], flat, rows.ravel())
        boxes[:, 3] = -1
        np.maximum.at(boxes[:, 3], flat, cols.ravel())
        boxes[:, 2:] += 1
        return boxes

    def to_dict(self) -> dict:
        return {"algorithm": self.algorithm, "params": self.params, "n_segments": self.n_segments}


def _slic(image: np.ndarray, *, n_segments: int = DEFAULT_N_SEGMENTS, compactness: float | None = None, sigma: float = 1.0) -> np.ndarray:
    from skimage.segmentation import slic

    rgb = image.shape[-1] == 3
    if compactness is None:
        compactness = slic_compactness(image)
    return slic(
        image, n_segments=n_segments, compactness=compactness, sigma=sigma,
        start_label=0, channel_axis=-1, convert2lab=rgb,
    )


def _quickshift(image: np.ndarray, *, kernel_size: float = 4.0, max_dist: float = 200.0, ratio: float = 0.2, sigma: float = 0.0) -> np.ndarray:
    from skimage.segmentation import quickshift

    rgb = image.shape[-1] == 3
    if not rgb:
        # quickshift needs 3 channels: repeat the mean channel, scaled to Lab's 0..100 range
        # so the default max_dist means the same as for colour images.
        image = np.repeat(image.mean(axis=-1, keepdims=True), 3, axis=-1) * 100.0
    return quickshift(
        image, kernel_size=kernel_size, max_dist=max_dist, ratio=ratio, sigma=sigma,
        convert2lab=rgb, rng=0, channel_axis=-1,
    )


def _felzenszwalb(image: np.ndarray, *, scale: float = 100.0, sigma: float = 0.8, min_size: int = 20) -> np.ndarray:
    from skimage.segmentation import felzenszwalb

    return felzenszwalb(image, scale=scale, sigma=sigma, min_size=int(min_size), channel_axis=-1)


def _watershed(image: np.ndarray, *, n_segments: int = DEFAULT_N_SEGMENTS, compactness: float = 0.001) -> np.ndarray:
    from skimage.filters import sobel
    from skimage.segmentation import watershed

    gradient = sobel(image.mean(axis=-1))
    return watershed(gradient, markers=int(n_segments), compactness=compactness)


def _grid(image: np.ndarray, *, n_segments: int = DEFAULT_N_SEGMENTS) -> np.ndarray:
    return grid_labels(image.shape[:2], n_segments)


SEGMENTERS: dict[str, Callable[..., np.ndarray]] = {
    "slic": _slic,
    "quickshift": _quickshift,
    "felzenszwalb": _felzenszwalb,
    "watershed": _watershed,
    "grid": _grid,
}


def segmenter_params(algorithm: str) -> dict[str, Any]:
    """The tunable parameters of a segmenter and their defaults (None: chosen from the image)."""
    sig = inspect.signature(SEGMENTERS[algorithm])
    return {n: p.default for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}


def slic_compactness(image: np.ndarray) -> float:
    """slic's compactness when none is given: Lab colour distances run to ~100, other channel sets lie in [0, 1]."""
    return 10.0 if image.shape[-1] == 3 else 0.1


def segmenter_defaults(algorithm: str) -> dict[str, Any]:
    """:func:`segmenter_params` as ``explain info`` shows them: a default chosen from the image says how.

    >>> segmenter_defaults("slic")["compactness"]
    '10 (colour) or 0.1'
    """
    params = segmenter_params(algorithm)
    if algorithm == "slic":
        params["compactness"] = "10 (colour) or 0.1"
    return params


def grid_labels(shape: tuple[int, int], n_segments: int) -> np.ndarray:
    """A rows x cols grid of about ``n_segments`` near-square cells over ``shape``."""
    h, w = shape
    rows = max(1, min(h, int(round(np.sqrt(n_segments * h / w)))))
    cols = max(1, min(w, int(round(n_segments / rows))))
    r = np.minimum(np.arange(h) * rows // h, rows - 1)
    c = np.minimum(np.arange(w) * cols // w, cols - 1)
    return (r[:, None] * cols + c[None, :]).astype(np.int64)


def to_segmentation_space(pixels: np.ndarray, *, rescale: bool) -> np.ndarray:
    """(C,H,W) -> (H,W,C) float64; ``rescale`` min-max scales each channel to [0, 1] (tensor inputs)."""
    array = np.asarray(pixels, dtype=np.float64)
    if rescale:
        lo = array.min(axis=(1, 2), keepdims=True)
        hi = array.max(axis=(1, 2), keepdims=True)
        array = (array - lo) / np.where(hi > lo, hi - lo, 1.0)
    return np.clip(array, 0.0, 1.0).transpose(1, 2, 0)


def check_segmenter_params(algorithm: str, params: dict[str, Any],
                           ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """The parameters ``algorithm`` takes, each a number in its range; returns those set (not None).

    ``ranges`` (inclusive) come from the option schema; a parameter without one must still be a
    finite number of at most 1e6 in size.

    Raises
    ------
    OptionError
        Unknown algorithm or parameter, or a value out of range (naming ``n_segments`` or
        ``compactness`` when it is one of those, else ``seg_param``).
    """
    if algorithm not in SEGMENTERS:
        raise OptionError("segments", f"must be one of {', '.join(SEGMENTERS)} or a label-map file, got {algorithm!r}")
    accepted = segmenter_params(algorithm)
    given = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise OptionError("seg_param", f"{unknown[0]}: segmentation {algorithm} has no such parameter; "
                          f"it takes {', '.join(accepted)}")
    for key, value in given.items():
        lo, hi = (ranges or {}).get(key, (-1e6, 1e6))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or not lo <= value <= hi:
            option = key if key in ("n_segments", "compactness") else "seg_param"
            raise OptionError(option, f"{key + ' ' if option == 'seg_param' else ''}must be a number in "
                              f"[{lo:g}, {hi:g}] for {algorithm}, got {value!r}")
    return given


def segment(image: np.ndarray, algorithm: str = "slic", **params: Any) -> Segmentation:
    """Segment an (H, W, C) float image in [0, 1] into superpixels with contiguous ids.

    Parameters
    ----------
    image : (H, W, C) ndarray
        Any number of channels.
    algorithm : str
        One of :data:`SEGMENTERS`.
    **params
        The algorithm's parameters (see :func:`segmenter_params`); ``None`` values take defaults.

    Raises
    ------
    OptionError
        Unknown algorithm or parameter, or a parameter that is not a finite number (the option
        schema checks the ranges: :func:`explain_cli.options.schema.check_segmentation`).

    Examples
    --------
    >>> seg = segment(np.zeros((8, 8, 3)), "grid", n_segments=4)
    >>> seg.n_segments, int(seg.labels[0, 0]), int(seg.labels[7, 7])
    (4, 0, 3)
    """
    given = check_segmenter_params(algorithm, params)
    if algorithm == "slic" and "compactness" not in given:
        given["compactness"] = slic_compactness(image)  # recorded as used, not as None
    accepted = segmenter_params(algorithm)
    try:
        raw = SEGMENTERS[algorithm](image, **given)
    except (ValueError, TypeError) as exc:
        raise ExplainError(f"segmentation {algorithm} failed with {given}: {exc}") from None
    return Segmentation(labels=relabel(raw), algorithm=algorithm, params={**accepted, **given})


def relabel(raw: np.ndarray) -> np.ndarray:
    """Contiguous ids 0..M-1 in order of the original ids, as int64 (H, W)."""
    _, contiguous = np.unique(raw, return_inverse=True)
    return contiguous.reshape(raw.shape).astype(np.int64)


def segment_adjacency(labels: np.ndarray, m: int | None = None) -> np.ndarray:
    """(M, M) bool: which segments share a pixel edge (4-neighbourhood), no self loops.

    Parameters
    ----------
    labels : (H, W) int array
        Segment id of every pixel, 0..M−1.
    m : int, optional
        Number of segments; ``labels.max() + 1`` when not given (ids without pixels are allowed).

    Examples
    --------
    >>> segment_adjacency(np.array([[0, 0, 1], [2, 2, 1]])).astype(int)
    array([[0, 1, 1],
           [1, 0, 1],
           [1, 1, 0]])
    """
    seg = np.asarray(labels, dtype=np.int64)
    m = int(seg.max()) + 1 if m is None else m
    adj = np.zeros((m, m), dtype=bool)
    for a, b in ((seg[:, 1:], seg[:, :-1]), (seg[1:, :], seg[:-1, :])):
        diff = a != b
        adj[a[diff], b[diff]] = True
    adj |= adj.T
    np.fill_diagonal(adj, False)
    return adj


def few_segments_advice(algorithm: str) -> str:
    """What raises the number of superpixels, for each algorithm (they take different knobs)."""
    return {
        "slic": "raise n_segments",
        "watershed": "raise n_segments",
        "grid": "raise n_segments",
        "quickshift": "lower seg_param max_dist or kernel_size",
        "felzenszwalb": "lower seg_param scale or min_size",
        "labels": "pass a label map with more regions",
    }.get(algorithm, "try `explain segment`")
