"""Cached image games for the Shapley benchmarks: value tables, memoised evaluations, references.

A game is the first target's output v(S) of a problem (benchmarks/_common.py) as a function of
the coalition S of superpixels kept. Small games (M ≤ 20) are stored as the full 2^M table
(index Σ_i z_i 2^i); large ones memoise every coalition ever evaluated, so that re-running an
estimator with the same seed costs no forward pass. Reference Shapley values for large games
come from antithetic permutation sampling, with their own standard errors. Everything lives
under benchmarks/.cache (gitignored).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from explain_cli.core import Problem
from explain_cli.progress import NullProgress

CACHE = Path(__file__).resolve().parent / ".cache"


def table_index(z: np.ndarray) -> np.ndarray:
    return (z.astype(np.int64) << np.arange(z.shape[1], dtype=np.int64)).sum(axis=1)


def all_coalitions(m: int) -> np.ndarray:
    idx = np.arange(2**m, dtype=np.int64)
    return ((idx[:, None] >> np.arange(m)) & 1).astype(bool)


class _Quiet:
    progress = NullProgress()


@dataclass
class Game:
    """v(S) for the first target of ``problem``, from a full table or a memo filled on demand."""

    problem: object
    key: str
    table: np.ndarray | None = None  # (2^M,) when small
    memo: dict[bytes, float] = field(default_factory=dict)
    forwards: int = 0
    forward_s: float = 0.0

    @property
    def m(self) -> int:
        return self.problem.n_segments

    @property
    def segments(self):
        return self.problem.segments

    def values(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=bool)
        if self.table is not None:
            return self.table[table_index(z)]
        keys = [np.packbits(row).tobytes() for row in z]
        todo = [i for i, k in enumerate(keys) if k not in self.memo]
        if todo:
            start = time.perf_counter()
            out = self.problem.segment_outputs(torch.from_numpy(z[todo]).float()).numpy()[:, 0]
            self.forward_s += time.perf_counter() - start
            self.forwards += len(todo)
            for i, val in zip(todo, out):
                self.memo[keys[i]] = float(val)
        return np.array([self.memo[k] for k in keys])

    def save(self) -> None:
        if self.table is None and self.memo:
            CACHE.mkdir(exist_ok=True)
            keys = np.frombuffer(b"".join(self.memo), dtype=np.uint8).reshape(len(self.memo), -1)
            np.savez(CACHE / f"{self.key}-memo.npz", keys=keys, values=np.array(list(self.memo.values())))

    def as_problem(self) -> "TableProblem":
        return TableProblem(self)


class TableProblem:
    """What the Kernel SHAP engine needs of a Problem, served from a Game (no forward passes)."""

    def __init__(self, game: Game):
        self.game = game
        self.segments = game.segments
        self.evaluator = _Quiet()
        m = game.m
        self.reference = torch.tensor(game.values(np.ones((1, m), bool)), dtype=torch.float64)
        self._fb = torch.tensor(game.values(np.zeros((1, m), bool)), dtype=torch.float64)
        self.n_targets = 1

    @property
    def n_segments(self) -> int:
        return self.game.m

    def baseline_output(self):
        return self._fb.clone()

    begin = Problem.begin  # the engines' start-of-run bookkeeping, on the table's f(x) and f(b)

    def segment_outputs(self, z):
        return torch.from_numpy(self.game.values(z.numpy() > 0.5))[:, None]


def load_game(problem, key: str, full_table: bool) -> Game:
    """The game of ``problem``, with its table (computed once, 2^M forwards) or its saved memo."""
    m = problem.n_segments
    game = Game(problem, key)
    if full_table:
        path = CACHE / f"{key}-table.npy"
        if path.exists():
            game.table = np.load(path)
        else:
            start = time.perf_counter()
            z = all_coalitions(m)
            out = np.concatenate([problem.segment_outputs(torch.from_numpy(z[i:i + 8192]).float()).numpy()[:, 0]
                                  for i in range(0, len(z), 8192)])
            CACHE.mkdir(exist_ok=True)
            np.save(path, out)
            game.table = out
            print(f"  value table {key}: {2**m} forwards in {time.perf_counter() - start:.0f}s", flush=True)
    else:
        path = CACHE / f"{key}-memo.npz"
        if path.exists():
            data = np.load(path)
            game.memo = {row.tobytes(): float(v) for row, v in zip(data["keys"], data["values"])}
    return game


def permutation_reference(game: Game, n_pairs: int, seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    """Antithetic permutation sampling: ``n_pairs`` permutations and their reverses.

    Returns (φ, standard error of φ), the error from the spread of the pair means. The pair
    means are cached per game and grow on demand (a larger ``n_pairs`` adds pairs drawn with a
    new seed to the stored ones).
    """
    path = CACHE / f"{game.key}-perm.npz"
    stored = np.load(path)["pair_means"] if path.exists() else np.zeros((0, game.m))
    while len(stored) < n_pairs:  # in blocks, saved as they come: an interrupted run keeps its work
        extra = _permutation_pairs(game, min(n_pairs - len(stored), 100), seed + len(stored))
        stored = np.concatenate([stored, extra])
        CACHE.mkdir(exist_ok=True)
        np.savez(path, pair_means=stored)
        print(f"    reference {game.key}: {len(stored)}/{n_pairs} permutation pairs", flush=True)
    pairs = stored[:n_pairs]
    return pairs.mean(axis=0), pairs.std(axis=0, ddof=1) / np.sqrt(n_pairs)


def _permutation_pairs(game: Game, n_pairs: int, seed: int) -> np.ndarray:
    """(n_pairs, M): per antithetic pair, the mean marginal contributions along a permutation and its reverse."""
    m = game.m
    rng = np.random.default_rng(seed)
    pair_means = np.zeros((n_pairs, m))
    chunk = max(1, 4096 // (2 * (m + 1)))
    for lo in range(0, n_pairs, chunk):
        hi = min(n_pairs, lo + chunk)
        perms = np.stack([rng.permutation(m) for _ in range(hi - lo)])
        perms = np.concatenate([perms, perms[:, ::-1]])  # antithetic: the reverse order
        rank = np.argsort(perms, axis=1)  # position of each player
        z = rank[:, None, :] < np.arange(m + 1)[None, :, None]  # (P, m+1, m): prefix k of each permutation
        v_inner = game.problem.segment_outputs(torch.from_numpy(z[:, 1:m].reshape(-1, m)).float()).numpy()[:, 0]
        v = np.empty((len(perms), m + 1))
        v[:, 0] = game.values(np.zeros((1, m), bool))[0]
        v[:, m] = game.values(np.ones((1, m), bool))[0]
        v[:, 1:m] = v_inner.reshape(len(perms), m - 1)
        contrib = np.zeros((len(perms), m))
        np.put_along_axis(contrib, perms, np.diff(v, axis=1), axis=1)
        half = hi - lo
        pair_means[lo:hi] = (contrib[:half] + contrib[half:]) / 2
    return pair_means
