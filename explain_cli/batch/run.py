"""`explain batch`'s runner: plan, skip what is complete, run the rest on a backend, write the summary.

Finished items (their files are regular files; the JSON is written last and atomically) are
skipped unless ``force``: they are split off here, before a backend sees the pending ones, so
both backends share planning, skipping, failure rows and the summary. The summary folder and
every job's out folder are locked while a run writes into them (:mod:`explain_cli.batch.lock`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explain_cli.batch import local, ray_backend
from explain_cli.batch.lock import FolderLocks, batch_locks
from explain_cli.batch.plan import Item, check_collisions, check_resources, in_shard, plan_items
from explain_cli.batch.rows import Emit, Row, finish, skipped_row, summary_paths, write_summary
from explain_cli.config import parse_config, read_yaml, summary_folder
from explain_cli.errors import ExplainError

#: Where items run: this process, or Ray actors (``explain_cli[ray]``).
BACKENDS = ("local", "ray")


def run_batch(
    config: Path,
    *,
    overrides: dict[str, Any] | None = None,
    dry_run: bool = False,
    force: bool = False,
    shard: tuple[int, int] | None = None,
    emit: Emit = lambda event: None,
    progress: Any = None,
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
) -> tuple[list[Row], Path | None]:
    """Run (or with ``dry_run`` only plan) every item of ``config`` in this shard.

    ``backend`` runs the items in this process (``local``) or on Ray actors (``ray``: a local Ray
    with ``workers`` actors, or the cluster at ``address``; see :mod:`explain_cli.batch.ray_backend`).
    Returns the summary rows and where the summary JSON was written (for a dry run: where it
    would be, with the rows ``planned-write`` or ``planned-skip``).
    """
    if backend not in BACKENDS:
        raise ExplainError(f"--backend {backend!r}: must be one of {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise ExplainError(f"--workers must be at least 1, got {workers}")
    if backend == "local" and (address is not None or workers is not None):
        raise ExplainError("--address and --workers apply to --backend ray")
    if backend == "ray" and not dry_run:
        ray_backend.require_ray()  # a missing extra is one line before any work
        if address is not None:
            ray_backend.probe_address(address)  # and so is a cluster address where nothing listens
    data = read_yaml(config)
    jobs = parse_config(data, config, overrides)
    planned = plan_items(jobs)
    check_collisions(planned, config)  # every item: two colliding entries may fall in different shards
    items = [i for i in planned if in_shard(i, shard)]
    check_resources(items, config, here=backend == "local")
    summary_dir = summary_folder(data, config, overrides)
    if dry_run:
        planned_rows = [Row(item.job.name, item.input_label, item.method,
                            "planned-skip" if item.complete() and not force else "planned-write",
                            outputs=[str(p) for p in item.outputs().values()]) for item in items]
        return planned_rows, summary_paths(summary_dir, shard)[0]
    run_pending = local.run_pending if backend == "local" else ray_backend.run_pending
    with FolderLocks(batch_locks(summary_dir, {item.cfg.output.out for item in items}, shard)):
        rows: list[Row] = []
        emit({"event": "start", "items": len(items), "config": str(config), "shard": list(shard) if shard else None})
        if progress is not None:
            progress.start(len(items), "batch")
        by_job: dict[int, list[Item]] = {}
        for item in items:
            by_job.setdefault(item.job.index, []).append(item)
        split = [_split_complete(job_items, force=force, emit=emit, progress=progress) for job_items in by_job.values()]
        ran = run_pending([pending for _, pending in split], address=address, workers=workers, emit=emit,
                          progress=progress)
        for (skipped, _), job_rows in zip(split, ran):
            rows += skipped + job_rows
        if progress is not None:
            progress.stop()
        summary = write_summary(rows, summary_dir, shard)
    emit({"event": "end", "done": sum(r.status == "done" for r in rows), "skipped": sum(r.status == "skipped" for r in rows),
          "failed": sum(r.status == "failed" for r in rows), "summary": str(summary)})
    return rows, summary


def _split_complete(items: list[Item], *, force: bool, emit: Emit, progress: Any) -> tuple[list[Row], list[Item]]:
    """The rows of one job's complete items (reported now) and the items still to run."""
    pending = [i for i in items if force or not i.complete()]
    rows = [finish(skipped_row(item), emit, progress) for item in items if item not in pending]
    return rows, pending
