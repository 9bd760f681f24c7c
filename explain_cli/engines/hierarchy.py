"""Binary trees over superpixels, the coalition structure of Owen values (``--method partition``).

A tree over M segments has 2M − 1 nodes: the leaves are the segments 0..M−1, internal node
M + t is the t-th merge, and the root is 2M − 2 (children always have smaller ids than their
parent, as in scipy's linkage matrices). Two ways to build one:

``rag``
    Region-adjacency-graph agglomeration: repeatedly merge the adjacent pair of regions whose
    mean colours are closest, the distance weighted by the merged region's number of segments
    so the tree stays balanced (depth ≈ log₂ M, which is what keeps exact Owen values O(M²)).
    When no adjacent pair is left (a label map with empty or isolated ids) the closest
    non-adjacent pair is merged.
``axis``
    A k-d tree over segments: halve the set of segments by their centroids along the longer
    side of the set's bounding box. On a grid segmentation this is shap's axis-aligned halving.

Both are deterministic: ties go to the smaller index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explain_cli.errors import ExplainError
from explain_cli.segmentation import segment_adjacency

HIERARCHIES = ("rag", "axis")
# The rag merge cost is (n_a + n_b)^SIZE_POWER · (‖μ_a − μ_b‖ + floor), n counting segments and
# floor = COLOUR_FLOOR × the median colour distance between adjacent segments. Without the floor,
# regions of identical colour tie at 0 and merge in index order into a chain; the size power
# keeps the tree balanced, which is what the exact cost depends on (2 + 2·Σ 2^depth over
# internal nodes). Measured on the sample images' SLIC maps (M = 43..110): power 1 gave 3–5×
# the evaluations of `axis`, power 3 with floor 0.5 1.3–1.8× (M = 13..154).
SIZE_POWER = 3
COLOUR_FLOOR = 0.5


@dataclass(frozen=True)
class Hierarchy:
    """A binary tree over M segments (leaves 0..M−1, root 2M − 2)."""

    algorithm: str  # how it was built: "rag", "axis", or "given"
    parent: np.ndarray  # (2M−1,) int64 parent id of every node, −1 for the root
    children: np.ndarray  # (2M−1, 2) int64 (left, right) of every node, (−1, −1) for leaves
    members: np.ndarray  # (2M−1, M) bool: the leaves (segments) under every node
    depth: np.ndarray  # (2M−1,) int64 number of edges from the root

    @property
    def n_leaves(self) -> int:
        return int(self.members.shape[1])

    @property
    def n_nodes(self) -> int:
        return int(self.parent.shape[0])

    @property
    def root(self) -> int:
        return self.n_nodes - 1

    def is_leaf(self, node: int) -> bool:
        return node < self.n_leaves

    @classmethod
    def from_merges(cls, merges: np.ndarray, *, algorithm: str = "given") -> "Hierarchy":
        """The tree whose t-th internal node M + t has children ``merges[t]``.

        Parameters
        ----------
        merges : (M−1, 2) int array
            Every node id in 0..2M−3 appears exactly once, and only after it was created.

        Raises
        ------
        ExplainError
            The merges do not form one binary tree over the M leaves.
        """
        merges = np.asarray(merges, dtype=np.int64).reshape(-1, 2)
        m = len(merges) + 1
        n = 2 * m - 1
        parent = np.full(n, -1, dtype=np.int64)
        children = np.full((n, 2), -1, dtype=np.int64)
        members = np.zeros((n, m), dtype=bool)
        members[np.arange(m), np.arange(m)] = True
        for t, (left, right) in enumerate(merges):
            node = m + t
            for child in (left, right):
                if not 0 <= child < node or parent[child] != -1 or left == right:
                    raise ExplainError(f"merge {t} ({left}, {right}) does not make a binary tree over {m} leaves")
                parent[child] = node
            children[node] = (left, right)
            members[node] = members[left] | members[right]
        depth = np.zeros(n, dtype=np.int64)
        for node in range(n - 2, -1, -1):  # parents have larger ids, so they are done first
            depth[node] = depth[parent[node]] + 1
        return cls(algorithm=algorithm, parent=parent, children=children, members=members, depth=depth)


def build_hierarchy(labels: np.ndarray, image: np.ndarray, algorithm: str = "rag") -> Hierarchy:
    """A binary tree over the segments of a label map.

    Parameters
    ----------
    labels : (H, W) int array
        Segment id of every pixel, 0..M−1 (ids without pixels are allowed).
    image : (C, H, W) float array
        The colours that ``rag`` compares (the model input); ``axis`` ignores it.
    algorithm : {"rag", "axis"}

    Returns
    -------
    Hierarchy with M = labels.max() + 1 leaves.

    Examples
    --------
    >>> labels = np.repeat(np.arange(4), 4).reshape(4, 4)
    >>> build_hierarchy(labels, np.zeros((1, 4, 4)), "axis").root
    6
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0 or labels.min() < 0:
        raise ExplainError(f"a hierarchy needs an (H, W) map of non-negative segment ids, got shape {labels.shape}")
    if algorithm == "rag":
        image = np.asarray(image, dtype=np.float64)
        if image.shape[-2:] != labels.shape:
            raise ExplainError(f"image {image.shape} and label map {labels.shape} differ in size")
        merges = rag_merges(labels, image.reshape(-1, *labels.shape))
    elif algorithm == "axis":
        merges = axis_merges(labels)
    else:
        raise ExplainError(f"unknown hierarchy {algorithm!r}; choose one of {', '.join(HIERARCHIES)}")
    return Hierarchy.from_merges(merges, algorithm=algorithm)


def rag_merges(labels: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Merge order of region-adjacency agglomeration by mean colour, (M−1, 2) node ids.

    The cost of merging regions a and b is ``(n_a + n_b)^SIZE_POWER · (‖μ_a − μ_b‖ + floor)``,
    n counting segments and μ the mean colour per channel over the region's pixels. The size
    factor is what keeps the tree balanced: a large region must be much closer in colour than a
    small one to absorb a neighbour, so regions grow evenly instead of one region eating the image.
    """
    m = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=m).astype(np.float64)
    colour_sum = np.stack([np.bincount(flat, weights=c.ravel(), minlength=m) for c in image], axis=1)  # (M, C)
    # an empty id has no colour; it joins whatever is closest to the image's mean colour
    mean = np.where(area[:, None] > 0, colour_sum / np.maximum(area, 1.0)[:, None], colour_sum.sum(0) / area.sum())
    adjacent = segment_adjacency(labels, m)
    count = np.ones(m)
    node_of = np.arange(m)  # tree node currently held by each slot
    alive = np.ones(m, dtype=bool)
    dist = np.linalg.norm(mean[:, None, :] - mean[None, :, :], axis=2)
    touching = dist[np.triu(adjacent, 1)]
    floor = COLOUR_FLOOR * float(np.median(touching)) if touching.size and np.median(touching) > 0 else 1.0
    merges = np.zeros((max(m - 1, 0), 2), dtype=np.int64)
    for t in range(m - 1):
        a, b = _cheapest_pair(dist, count, adjacent, alive, floor)
        merges[t] = sorted((node_of[a], node_of[b]))
        # slot a now holds the union; slot b retires
        weight_a, weight_b = area[a], area[b]
        total = weight_a + weight_b
        if total > 0:
            mean[a] = (weight_a * mean[a] + weight_b * mean[b]) / total
        area[a], count[a] = total, count[a] + count[b]
        adjacent[a] |= adjacent[b]
        adjacent[:, a] = adjacent[a]
        adjacent[a, a] = False
        alive[b] = False
        dist[a] = dist[:, a] = np.linalg.norm(mean - mean[a], axis=1)
        node_of[a] = m + t
    return merges


def _cheapest_pair(dist: np.ndarray, count: np.ndarray, adjacent: np.ndarray, alive: np.ndarray,
                   floor: float) -> tuple[int, int]:
    """Slots (a, b), a < b, of the cheapest merge among live slots; adjacent pairs first."""
    live = np.flatnonzero(alive)
    cost = (count[live, None] + count[None, live]) ** SIZE_POWER * (dist[np.ix_(live, live)] + floor)
    upper = np.triu(np.ones((len(live), len(live)), dtype=bool), 1)
    allowed = upper & adjacent[np.ix_(live, live)]
    if not allowed.any():
        allowed = upper  # disconnected regions: merge the closest pair anyway
    cost = np.where(allowed, cost, np.inf)
    i, j = divmod(int(np.argmin(cost)), len(live))  # first minimum in row-major order: ties by index
    return int(live[i]), int(live[j])


def axis_merges(labels: np.ndarray) -> np.ndarray:
    """Merge order of recursive halving by segment centroids, (M−1, 2) node ids.

    A set of segments is split into halves of (nearly) equal count along the longer side of the
    bounding box of its pixels, ordered by centroid (ties by id), so the depth is ⌈log₂ M⌉.
    """
    m = int(labels.max()) + 1
    flat = labels.ravel()
    rows, cols = np.indices(labels.shape)
    area = np.bincount(flat, minlength=m).astype(np.float64)
    present = area > 0
    centre = np.array(labels.shape, dtype=np.float64) / 2  # where an empty id is placed
    centroid = np.stack([np.where(present, np.bincount(flat, weights=r.ravel(), minlength=m) / np.maximum(area, 1), c)
                         for r, c in ((rows, centre[0]), (cols, centre[1]))], axis=1)  # (M, 2)
    low = np.full((m, 2), np.inf)
    high = np.full((m, 2), -np.inf)
    for axis, coord in enumerate((rows.ravel(), cols.ravel())):
        np.minimum.at(low[:, axis], flat, coord)
        np.maximum.at(high[:, axis], flat, coord)
    merges: list[tuple[int, int]] = []

    def split(ids: np.ndarray) -> int:
        if len(ids) == 1:
            return int(ids[0])
        extent = high[ids].max(axis=0) - low[ids].min(axis=0)
        extent = np.where(np.isfinite(extent), extent, 0.0)  # only empty ids: no box
        axis = 0 if extent[0] >= extent[1] else 1
        order = ids[np.lexsort((ids, centroid[ids, axis]))]
        half = len(order) // 2
        left, right = split(order[:half]), split(order[half:])
        merges.append((left, right))
        return m + len(merges) - 1

    split(np.arange(m))
    return np.array(merges, dtype=np.int64).reshape(-1, 2)
