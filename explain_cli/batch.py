"""`explain batch`: YAML-configured runs over many inputs, resumable, shardable, failure-isolated.

An *item* is one (job, input, method), or (job, all inputs, method) for a batch method such as
permutation. Items are planned and validated before any work; finished items (their files are
regular files; the JSON is written last and atomically) are skipped unless ``force``; a failing
item is recorded and the rest go on. Every item goes through :class:`explain_cli.api.Explainer`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from explain_cli.api import Explainer, Settings, settings
from explain_cli.config import Job, parse_config, read_yaml, summary_folder
from explain_cli.engines import get_engine
from explain_cli.errors import ExplainError
from explain_cli.fileio import atomic_write_bytes
from explain_cli.result import check_unique_stems, output_paths


#: Where items run: this process, or Ray actors (``explain_cli[ray]``).
BACKENDS = ("local", "ray")


@dataclass
class Item:
    job: Job
    method: str
    cfg: Settings
    inputs: list[Path]  # one input, or all of the job's for a batch method
    stem: str

    @property
    def key(self) -> str:
        return f"{self.job.name}|{self.stem}|{self.method}"

    def outputs(self) -> dict[str, Path]:
        return output_paths(Path(self.cfg.out), self.stem, self.method, self.cfg.save_map)

    def complete(self) -> bool:
        """Every output is a regular file (a folder or a fifo of the same name does not count)."""
        return all(p.is_file() for p in self.outputs().values())


@dataclass
class Row:
    """One line of the summary."""

    job: str
    input: str
    method: str
    status: str  # done | skipped | failed | planned
    outputs: list[str] = field(default_factory=list)
    top_segments: list[int] = field(default_factory=list)
    evaluations: int | None = None
    time_s: float | None = None
    error: str | None = None
    # first explained target's evaluation metrics (None when not computed): a compare config ranks methods by them
    deletion_auc: float | None = None
    insertion_auc: float | None = None
    random_deletion_auc: float | None = None
    random_insertion_auc: float | None = None
    pointing_hit: bool | None = None
    energy_in_mask: float | None = None

    def add_metrics(self, evaluation: dict[str, Any] | None) -> None:
        from explain_cli.render.records import first_metrics

        for key, value in first_metrics(evaluation).items():
            setattr(self, key, value)


def plan_items(jobs: list[Job]) -> list[Item]:
    """Every item of every job; two inputs of one job that would write the same files are an error."""
    items: list[Item] = []
    for job in jobs:
        for method, layers in job.methods:
            cfg = settings(*layers)
            if get_engine(method).batch:
                items.append(Item(job, method, cfg, list(job.inputs), cfg.name or "batch"))
                continue
            # inputs are unique by resolved path already (config.expand_inputs)
            check_unique_stems(job.inputs, "put them in different jobs with different 'out'", where=f"job {job.name}: ")
            items += [Item(job, method, cfg, [p], p.stem) for p in job.inputs]
    return items


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    k, sep, n = text.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit() or not 1 <= int(k) <= int(n) <= 100_000:
        raise ExplainError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. --shard 2/4")
    return int(k), int(n)


def in_shard(item: Item, shard: tuple[int, int] | None) -> bool:
    """Stable partition by a hash of the item's key: adding inputs does not move existing items."""
    if shard is None:
        return True
    k, n = shard
    digest = int(hashlib.sha256(item.key.encode()).hexdigest()[:12], 16)
    return digest % n == k - 1


def check_collisions(items: list[Item]) -> None:
    """No two items write the same file, comparing resolved paths (``x`` and ``y/../x`` are one folder)."""
    seen: dict[Path, str] = {}
    for item in items:
        for p in item.outputs().values():
            real = Path(os.path.abspath(p)).resolve()
            if real in seen and seen[real] != item.key:
                raise ExplainError(f"two items would write {p} ({seen[real]} and {item.key}); give the jobs different 'out' folders")
            seen[real] = item.key
            if p.exists() and not p.is_file():
                raise ExplainError(f"output {p} exists and is not a regular file; move it away")


def run_batch(
    config: Path,
    *,
    overrides: dict[str, Any] | None = None,
    dry_run: bool = False,
    force: bool = False,
    shard: tuple[int, int] | None = None,
    emit: Callable[[dict], None] = lambda event: None,
    progress: Any = None,
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
) -> tuple[list[Row], Path | None]:
    """Run (or with ``dry_run`` only plan) every item of ``config`` in this shard.

    ``backend`` runs the items in this process (``local``) or on Ray actors (``ray``: a local Ray
    with ``workers`` actors, or the cluster at ``address``; see :mod:`explain_cli.batch_ray`).
    Planning, skipping, failure rows and the summary are the same code for both.
    Returns the summary rows and where the summary was written (None for a dry run).
    """
    if backend not in BACKENDS:
        raise ExplainError(f"--backend {backend!r}: must be one of {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise ExplainError(f"--workers must be at least 1, got {workers}")
    if backend == "local" and (address is not None or workers is not None):
        raise ExplainError("--address and --workers apply to --backend ray")
    if backend == "ray" and not dry_run:
        from explain_cli.batch_ray import require_ray

        require_ray()  # a missing extra is one line before any work
    data = read_yaml(config)
    jobs = parse_config(data, config, overrides)
    items = [i for i in plan_items(jobs) if in_shard(i, shard)]
    check_collisions(items)
    summary_dir = summary_folder(data, config, overrides)
    if dry_run:
        rows = []
        for item in items:
            status = "skip" if item.complete() and not force else "write"
            rows.append(Row(item.job.name, _input_label(item), item.method, f"planned-{status}",
                            outputs=[str(p) for p in item.outputs().values()]))
        return rows, None
    from explain_cli.fileio import ensure_writable_dir

    ensure_writable_dir(summary_dir)
    with folder_lock(summary_dir, "explain batch"):
        rows: list[Row] = []
        emit({"event": "start", "items": len(items), "config": str(config), "shard": list(shard) if shard else None})
        if progress is not None:
            progress.start(len(items), "batch")
        by_job: dict[int, list[Item]] = {}
        for item in items:
            by_job.setdefault(item.job.index, []).append(item)
        # --- per-item execution: this process, or Ray actors (batch_ray); everything around it is shared ---
        if backend == "local":
            for job_items in by_job.values():
                rows += _run_job(job_items, force=force, emit=emit, progress=progress)
        else:
            from explain_cli.batch_ray import run_pending

            split = [_split_complete(job_items, force=force, emit=emit, progress=progress) for job_items in by_job.values()]
            ran = run_pending([pending for _, pending in split], address=address, workers=workers, emit=emit,
                              progress=progress)
            for (skipped, _), job_rows in zip(split, ran):
                rows += skipped + job_rows
        # --- end of per-item execution ---
        if progress is not None:
            progress.stop()
        summary = _write_summary(rows, summary_dir, shard)
    emit({"event": "end", "done": sum(r.status == "done" for r in rows), "skipped": sum(r.status == "skipped" for r in rows),
          "failed": sum(r.status == "failed" for r in rows), "summary": str(summary)})
    return rows, summary


class folder_lock:
    """An exclusive lock on a batch's summary folder: a second run there is refused with a clear line.

    ``flock`` is released by the kernel when the process dies, so a killed run never leaves a stale lock.
    """

    def __init__(self, folder: Path, what: str) -> None:
        self.path = Path(folder) / ".explain-batch.lock"
        self.what = what
        self.fd: int | None = None

    def __enter__(self) -> "folder_lock":
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise ExplainError(f"another {self.what} is running with summary folder {self.path.parent}; "
                               "wait for it, or give this run another out folder") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock; the file stays (removing it would race)


def _input_label(item: Item) -> str:
    return str(item.inputs[0]) if len(item.inputs) == 1 else f"{len(item.inputs)} inputs"


def top_segments(scores: Any, n: int = 3) -> list[int]:
    """The ``n`` segments with the largest |score| (the summary's column)."""
    return [int(g) for g in sorted(range(len(scores)), key=lambda g: -abs(scores[g]))[:n]]


def _skipped_row(item: Item) -> Row:
    """A row for a complete item, filled from its JSON on disk so a resumed summary keeps its data."""
    row = Row(item.job.name, _input_label(item), item.method, "skipped",
              outputs=[str(p) for p in item.outputs().values()])
    try:
        doc = json.loads(item.outputs()["json"].read_text(encoding="utf-8"))
        row.evaluations = doc.get("evaluations")
        row.top_segments = top_segments([s["score"] for s in doc["targets"][0]["segments"]])
        row.time_s = doc.get("timing", {}).get("total_s")
        row.add_metrics(doc.get("evaluation"))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass  # a hand-edited JSON still counts as complete; its row just lacks the numbers
    return row


def _split_complete(items: list[Item], *, force: bool, emit: Callable[[dict], None],
                    progress: Any) -> tuple[list[Row], list[Item]]:
    """The rows of one job's complete items (reported now) and the items still to run."""
    pending = [i for i in items if force or not i.complete()]
    rows = [_finish(_skipped_row(item), emit, progress) for item in items if item not in pending]
    return rows, pending


def _run_job(items: list[Item], *, force: bool, emit: Callable[[dict], None], progress: Any) -> list[Row]:
    from explain_cli.inputs import load_input

    rows, pending = _split_complete(items, force=force, emit=emit, progress=progress)
    if not pending:
        return rows
    job = pending[0].job
    first = pending[0].cfg
    try:
        explainer = Explainer(job.model, weights=first.weights, device=first.device, seed=first.seed)
    except Exception as exc:  # the whole job fails, the others go on
        return rows + [_finish(Row(job.name, _input_label(i), i.method, "failed", error=_message(exc)), emit, progress)
                       for i in pending]
    loaded: dict[Path, Any] = {}
    for item in pending:
        start = time.perf_counter()
        row = Row(job.name, _input_label(item), item.method, "failed")
        if progress is not None:
            progress.describe(f"{job.name}: {Path(row.input).name} · {item.method}")
        try:
            for p in item.inputs:
                if p not in loaded:
                    try:
                        loaded[p] = load_input(p, channels=explainer.model.in_channels or 3, max_pixels=item.cfg.max_pixels)
                    except Exception as exc:
                        loaded[p] = exc
                if isinstance(loaded[p], Exception):
                    raise loaded[p]
            inputs = [loaded[p] for p in item.inputs]
            (expl,) = explainer.explain(inputs, **item.cfg.values)
            files = expl.save(Path(item.cfg.out), item.stem)
            _mark_done(row, files, expl.scores[0], expl.evaluations, expl.evaluation)
        except Exception as exc:
            row.error = _message(exc)
        row.time_s = round(time.perf_counter() - start, 3)
        rows.append(_finish(row, emit, progress))
    return rows


def _mark_done(row: Row, files: list[Path], scores: Any, evaluations: int, evaluation: dict | None) -> None:
    """Fill a finished item's row (both backends)."""
    row.status = "done"
    row.outputs = [str(f) for f in files]
    row.top_segments = top_segments(scores)
    row.evaluations = evaluations
    row.add_metrics(evaluation or {})


def _message(exc: BaseException) -> str:
    if isinstance(exc, ExplainError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def _finish(row: Row, emit: Callable[[dict], None], progress: Any) -> Row:
    emit({"event": "item", **row.__dict__})
    if progress is not None:
        progress.advance(1)
    return row


def _write_summary(rows: list[Row], folder: Path, shard: tuple[int, int] | None) -> Path:
    suffix = f".shard-{shard[0]}-of-{shard[1]}" if shard else ""
    path = folder / f"summary{suffix}.json"
    atomic_write_bytes(path, json.dumps({"rows": [r.__dict__ for r in rows]}, indent=2).encode() + b"\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = list(Row.__dataclass_fields__)
    writer.writerow(columns)
    for r in rows:
        writer.writerow([" ".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v)
                         for v in (getattr(r, c) for c in columns)])
    atomic_write_bytes(folder / f"summary{suffix}.csv", buffer.getvalue().encode())
    return path
