"""Explanation JSONs already written: find them in folders, and read their metrics per target.

What the HTML report, the comparison montage and the batch summary read; nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from explain_cli.errors import ExplainError
from explain_cli.schemacheck import check_explanation

#: Evaluation keys that hold one number per target; summary.json rows keep the first target's.
METRIC_KEYS = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
               "pointing_hit", "energy_in_mask")


@dataclass
class Record:
    """One explanation JSON found on disk."""

    path: Path  # the JSON
    doc: dict[str, Any]

    @property
    def method(self) -> str:
        return str(self.doc["method"])

    @property
    def input_path(self) -> str:
        return str((self.doc.get("input") or {}).get("path", "?"))

    @property
    def input_key(self) -> tuple[str, str]:
        """Group key: the input's content hash and path (the same picture under two names stays two inputs)."""
        item = self.doc.get("input") or {}
        return str(item.get("sha256")), str(item.get("path"))

    @property
    def batch(self) -> bool:
        return "inputs" in self.doc  # permutation: one explanation for many inputs

    def sibling(self, suffix: str) -> Path:
        """A file written with the JSON: NAME.METHOD.json -> NAME.METHOD<suffix>."""
        return self.path.with_name(self.path.name[: -len(".json")] + suffix)


def is_explanation(doc: Any) -> bool:
    """An explanation JSON has ``schema_version`` and ``method`` (summary.json and others do not)."""
    return isinstance(doc, dict) and "schema_version" in doc and isinstance(doc.get("method"), str) \
        and isinstance(doc.get("targets"), list)


def read_explanations(paths: Iterable[str | Path]) -> list[Record]:
    """Explanation JSONs from files and folders (searched recursively); other JSON files are skipped.

    Raises
    ------
    ExplainError
        A path that does not exist, or a JSON file given by name that is not an explanation.
    """
    from explain_cli.result import load_explanation

    records: dict[Path, Record] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            candidates, named = sorted(q for q in p.rglob("*.json") if q.is_file()), False
        elif p.is_file():
            candidates, named = [p], True
        else:
            raise ExplainError(f"{p} does not exist; pass an output folder or explanation JSON files")
        for q in candidates:
            try:
                doc = load_explanation(q, check=False)  # other JSON files are skipped, so the schema comes last
            except ExplainError:
                if named:
                    raise
                continue
            if not is_explanation(doc):
                if named:
                    raise ExplainError(f"{q} is not an explanation JSON (no schema_version/method); "
                                       "pass the NAME.METHOD.json files `explain run` writes")
                continue
            records[q.resolve()] = Record(q, check_explanation(doc, q))  # a tampered one: one line, not a crash
    return list(records.values())


def target_metrics(evaluation: dict[str, Any] | None, k: int) -> dict[str, Any]:
    """The `METRIC_KEYS` metrics of the ``k``-th explained target (None where not computed)."""
    evaluation = evaluation or {}
    out: dict[str, Any] = {}
    for key in METRIC_KEYS:
        values = evaluation.get(key)
        out[key] = values[k] if isinstance(values, list) and k < len(values) else None
    return out


def first_metrics(evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """The metrics of the first explained target (None where not computed), as summary rows hold them."""
    return target_metrics(evaluation, 0)
