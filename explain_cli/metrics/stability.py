"""Stability of an explanation over runs: do several seeds pick the same top segments?"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from explain_cli.errors import ExplainError, OptionError


def topk_jaccard(score_vectors: Sequence[np.ndarray], k: int) -> float:
    """Mean pairwise Jaccard index of the top-``k`` segment sets of several runs (e.g. seeds).

    1 means every run picks the same k segments. Ties are broken by the lower segment id.

    Parameters
    ----------
    score_vectors : sequence of (M,) arrays, at least two
    k : int, 1 <= k <= M
    """
    vectors = [np.asarray(v, dtype=np.float64).reshape(-1) for v in score_vectors]
    if len(vectors) < 2:
        raise ExplainError(f"topk_jaccard needs at least 2 score vectors (runs), got {len(vectors)}")
    m = vectors[0].size
    if any(v.size != m for v in vectors):
        raise ExplainError("topk_jaccard: every score vector must have the same number of segments")
    if not 1 <= k <= m:
        raise OptionError("k", f"must be between 1 and the number of segments {m}, got {k}")
    sets = [set(np.argsort(-v, kind="stable")[:k].tolist()) for v in vectors]
    pairs = [len(a & b) / len(a | b) for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(pairs))
