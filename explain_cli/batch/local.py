"""`explain batch --backend local`: the pending items in this process, one model load per job.

Every item goes through :class:`explain_cli.api.Explainer`; a job whose model fails to load
fails all its items, a failing item is recorded and the rest go on.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from explain_cli.api import Explainer
from explain_cli.batch.plan import Item
from explain_cli.batch.rows import Emit, Row, error_message, finish, mark_done
from explain_cli.errors import ExplainWarning
from explain_cli.progress import ItemProgress


def run_pending(jobs: list[list[Item]], *, address: str | None, workers: int | None, emit: Emit,
                progress: Any) -> list[list[Row]]:
    """Run every job's pending items here; one list of rows per job, in the order the items were given.

    ``address`` and ``workers`` belong to the Ray backend (:func:`explain_cli.batch.run.run_batch`
    refuses them with this one); the signature is the backends' common one.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExplainWarning)  # each item's warnings are in its JSON
        return [_run_job(items, emit=emit, progress=progress) for items in jobs]


def _run_job(items: list[Item], *, emit: Emit, progress: Any) -> list[Row]:
    from explain_cli.inputs import load_input

    if not items:
        return []
    job = items[0].job
    first = items[0].cfg
    try:
        explainer = Explainer(job.model, weights=first.model.weights, device=first.model.device, seed=first.seed,
                              on_info=lambda message: emit({"event": "info", "job": job.name, "message": message}))
    except Exception as exc:  # the whole job fails, the others go on
        return [finish(Row(job.name, i.input_label, i.method, "failed", error=error_message(exc)), emit, progress)
                for i in items]
    loaded: dict[Path, Any] = {}
    rows: list[Row] = []
    for item in items:
        start = time.perf_counter()
        row = Row(job.name, item.input_label, item.method, "failed")
        label = f"{job.name}: {Path(row.input).name} · {item.method}"
        if progress is not None:
            progress.describe(label)
        try:
            for p in item.inputs:
                if p not in loaded:
                    try:
                        loaded[p] = load_input(p, channels=explainer.model.in_channels or 3, max_pixels=item.cfg.input.max_pixels)
                    except Exception as exc:
                        loaded[p] = exc
                if isinstance(loaded[p], Exception):
                    raise loaded[p]
            inputs = [loaded[p] for p in item.inputs]
            (expl,) = explainer.explain(inputs, progress=None if progress is None else ItemProgress(progress, label),
                                        **item.cfg.given)
            files = expl.save(item.cfg.output.out, item.stem)
            mark_done(row, files, expl.scores[0], expl.evaluations, expl.evaluation, expl.timing.get("total_s"))
        except Exception as exc:
            row.error = error_message(exc)
        row.time_s = round(time.perf_counter() - start, 3)
        rows.append(finish(row, emit, progress))
    return rows
