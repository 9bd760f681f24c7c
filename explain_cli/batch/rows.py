"""The summary of a batch: one row per item (done, skipped, failed or planned), written as JSON and CSV.

Both backends fill their rows with these functions, so a summary does not depend on where its
items ran.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from explain_cli.batch.plan import Item
from explain_cli.errors import ExplainError
from explain_cli.fileio import atomic_write_bytes

#: Where a batch reports each event (start, item, end): a JSON-able dict per call.
Emit = Callable[[dict], None]


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
    time_s: float | None = None  # wall seconds this run spent on the item (load, explain, write); None when skipped
    explain_s: float | None = None  # the explanation's own seconds, its JSON's timing.total_s (done or skipped)
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


def skipped_row(item: Item) -> Row:
    """A row for a complete item, filled from its JSON on disk so a resumed summary keeps its data."""
    from explain_cli.render.figures import top_segments
    from explain_cli.result import load_explanation

    row = Row(item.job.name, item.input_label, item.method, "skipped",
              outputs=[str(p) for p in item.outputs().values()])
    try:
        doc = load_explanation(item.outputs()["json"], check=False)  # a resume reads many: no schema, bad keys caught
        row.evaluations = doc.get("evaluations")
        row.top_segments = top_segments([s["score"] for s in doc["targets"][0]["segments"]])
        row.explain_s = _seconds(doc.get("timing", {}).get("total_s"))
        row.add_metrics(doc.get("evaluation"))
    except (ExplainError, ValueError, KeyError, IndexError, TypeError):
        pass  # a hand-edited JSON still counts as complete; its row just lacks the numbers
    return row


def mark_done(row: Row, files: list[Path], scores: Any, evaluations: int, evaluation: dict | None,
              explain_s: float | None = None) -> None:
    """Fill a finished item's row (both backends); ``explain_s`` is the Explanation's ``timing["total_s"]``."""
    from explain_cli.render.figures import top_segments

    row.status = "done"
    row.outputs = [str(f) for f in files]
    row.top_segments = top_segments(scores)
    row.evaluations = evaluations
    row.explain_s = _seconds(explain_s)
    row.add_metrics(evaluation or {})


def _seconds(value: Any) -> float | None:
    """Seconds as the summary shows them (ms), or None for a missing or malformed value."""
    return round(float(value), 3) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def error_message(exc: BaseException) -> str:
    """A failed item's ``error``: an ExplainError's own line, anything else named as internal."""
    if isinstance(exc, ExplainError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def finish(row: Row, emit: Emit, progress: Any) -> Row:
    """Report a finished item's row (an ``item`` event, one step of progress) and return it."""
    emit({"event": "item", **row.__dict__})
    if progress is not None:
        progress.advance(1)
    return row


def summary_paths(folder: Path, shard: tuple[int, int] | None) -> tuple[Path, Path]:
    """Where a run's summary goes: ``summary.json`` and ``.csv`` (``summary.shard-K-of-N.*`` for a shard)."""
    stem = f"summary.shard-{shard[0]}-of-{shard[1]}" if shard else "summary"
    return Path(folder) / f"{stem}.json", Path(folder) / f"{stem}.csv"


def write_summary(rows: list[Row], folder: Path, shard: tuple[int, int] | None) -> Path:
    """``summary.json`` and ``summary.csv`` (``summary.shard-K-of-N.*`` for a shard) in ``folder``."""
    path, csv_path = summary_paths(folder, shard)
    atomic_write_bytes(path, json.dumps({"rows": [r.__dict__ for r in rows]}, indent=2).encode() + b"\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = list(Row.__dataclass_fields__)
    writer.writerow(columns)
    for r in rows:
        writer.writerow([" ".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v)
                         for v in (getattr(r, c) for c in columns)])
    atomic_write_bytes(csv_path, buffer.getvalue().encode())
    return path
