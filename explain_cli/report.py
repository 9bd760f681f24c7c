"""`explain report` and `explain compare`: read explanation JSONs already written and show them together.

:func:`write_report` renders one self-contained, offline HTML page (Jinja2, autoescaped, no
scripts, fonts or styles from anywhere else); images are linked by relative path to the PNGs
beside the JSONs, so the page stays small and works from any copy of the folder that keeps them.
:func:`write_compare` draws one montage PNG from the maps saved with ``--save-map``.

Nothing here imports torch; reading a folder of results needs no model.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import quote

import numpy as np

from explain_cli.errors import ExplainError
from explain_cli.schemacheck import check_explanation

#: Evaluation keys that become one number per row (the first explained target), as in summary.json.
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
                doc = json.loads(q.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                if named:
                    raise ExplainError(f"{q} is not a readable JSON file: {exc}") from None
                continue
            if not is_explanation(doc):
                if named:
                    raise ExplainError(f"{q} is not an explanation JSON (no schema_version/method); "
                                       "pass the NAME.METHOD.json files `explain run` writes")
                continue
            records[q.resolve()] = Record(q, check_explanation(doc, q))  # a tampered one: one line, not a crash
    return list(records.values())


def first_metrics(evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """The metrics of the first explained target (None where not computed), as summary rows hold them."""
    evaluation = evaluation or {}
    out: dict[str, Any] = {}
    for key in METRIC_KEYS:
        values = evaluation.get(key)
        out[key] = values[0] if isinstance(values, list) and values else None
    return out


# ---------------------------------------------------------------------------------------------
# HTML report
# ---------------------------------------------------------------------------------------------

def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _href(target: Path, base: Path) -> str:
    """A relative URL from the report's folder to ``target``, percent-encoded (names may hold '#', '?', '<')."""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(base))
    return quote(Path(rel).as_posix())


def _per_target(evaluation: dict[str, Any], key: str, k: int) -> Any:
    values = evaluation.get(key)
    return values[k] if isinstance(values, list) and k < len(values) else None


def _row(record: Record, base: Path) -> dict[str, Any]:
    doc = record.doc
    evaluation = doc.get("evaluation") or {}
    targets = []
    for k, t in enumerate(doc["targets"]):
        name = t.get("label") if t.get("label") is not None else f"class {t.get('index')}"
        targets.append({
            "name": name, "index": t.get("index"), "score": _num(t.get("score")),
            "deletion": _num(_per_target(evaluation, "deletion_auc", k)),
            "random_deletion": _num(_per_target(evaluation, "random_deletion_auc", k)),
            "insertion": _num(_per_target(evaluation, "insertion_auc", k)),
            "random_insertion": _num(_per_target(evaluation, "random_insertion_auc", k)),
            "pointing": _num(_per_target(evaluation, "pointing_hit", k)),
            "energy": _num(_per_target(evaluation, "energy_in_mask", k)),
        })
    m = first_metrics(evaluation)
    png, curves = record.sibling(".png"), record.sibling(".curves.png")
    timing = doc.get("timing") or {}
    name = Path(record.input_path).name
    if record.batch:
        name = f"{len(doc['inputs'])} inputs (global, drawn on {name})"
    return {
        "input": name, "input_path": record.input_path, "method": record.method,
        "json": _href(record.path, base), "png": _href(png, base) if png.is_file() else None,
        "curves": _href(curves, base) if curves.is_file() else None,
        "targets": targets, "first_score": (doc["targets"][0].get("score") if doc["targets"] else None),
        "evaluations": doc.get("evaluations"), "time": timing.get("total_s"), "time_text": _num(timing.get("total_s")),
        "segments": (doc.get("segmentation") or {}).get("n_segments"),
        "metrics": m,
        "deletion_beats_random": (None if m["deletion_auc"] is None or m["random_deletion_auc"] is None
                                  else m["deletion_auc"] < m["random_deletion_auc"]),
        "insertion_beats_random": (None if m["insertion_auc"] is None or m["random_insertion_auc"] is None
                                   else m["insertion_auc"] > m["random_insertion_auc"]),
        "warnings": doc.get("warnings") or [],
    }


def _pairs(mapping: Any) -> str:
    """``{'masks': 64, 'p1': 0.5}`` as ``masks=64, p1=0.5`` (what a reader compares across methods)."""
    if not isinstance(mapping, dict):
        return ""
    return ", ".join(f"{k}={v}" for k, v in sorted(mapping.items()))


def _mean(values: Sequence[Any]) -> str:
    numbers = [float(v) for v in values if v is not None]
    return _num(statistics.fmean(numbers)) if numbers else "–"


def _rate(flags: Sequence[Any]) -> str:
    known = [bool(f) for f in flags if f is not None]
    return f"{sum(known)}/{len(known)}" if known else "–"


def _methods(rows: list[dict[str, Any]], records: list[Record]) -> list[dict[str, Any]]:
    """Per method: its settings and its metrics over every input (the ranking a compare config is for)."""
    out = []
    for method in dict.fromkeys(r.method for r in records):
        mine = [(row, rec) for row, rec in zip(rows, records) if rec.method == method]
        params = {_pairs(rec.doc.get("params")) or "defaults" for _, rec in mine}
        evals = {_pairs({k: v for k, v in (rec.doc.get("evaluation") or {}).items() if k in ("deletion", "step", "tolerance_px")})
                 for _, rec in mine}
        out.append({
            "method": method, "count": len(mine),
            "params": " | ".join(sorted(params)), "evaluation": " | ".join(sorted(e for e in evals if e)) or "–",
            "seed": ", ".join(sorted({str(rec.doc.get("seed")) for _, rec in mine})),
            "baseline": ", ".join(sorted({str(rec.doc.get("baseline")) for _, rec in mine})),
            "deletion": _mean([row["metrics"]["deletion_auc"] for row, _ in mine]),
            "insertion": _mean([row["metrics"]["insertion_auc"] for row, _ in mine]),
            "deletion_wins": _rate([row["deletion_beats_random"] for row, _ in mine]),
            "insertion_wins": _rate([row["insertion_beats_random"] for row, _ in mine]),
            "pointing": _rate([row["metrics"]["pointing_hit"] for row, _ in mine]),
            "energy": _mean([row["metrics"]["energy_in_mask"] for row, _ in mine]),
            "evaluations": _mean([row["evaluations"] for row, _ in mine]),
            "time": _mean([row["time"] for row, _ in mine]),
        })
    return out


def _distinct(records: list[Record], getter: Any) -> list[str]:
    values = []
    for rec in records:
        try:
            value = getter(rec.doc)
        except (KeyError, TypeError, IndexError):
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if text not in values:
            values.append(text)
    return values


def _run_facts(records: list[Record]) -> list[tuple[str, list[str]]]:
    """The run's configuration as (name, distinct values) pairs, read from the JSONs."""
    def model(d: dict) -> str:
        m = d["model"]
        sha = f" sha256 {m['sha256'][:12]}…" if m.get("sha256") else ""
        return f"{m.get('source')} ({m.get('kind')}, {m.get('device')}{', ' + m['runtime'] if m.get('runtime') else ''}){sha}"

    def versions(d: dict) -> str:
        return f"explain_cli {d.get('tool_version')} · " + " · ".join(f"{k} {v}" for k, v in d["versions"].items())

    def preprocessing(d: dict) -> str:
        p = d["preprocessing"]
        given = [f"{k} {p[k]}" for k in ("size", "resize", "crop", "mean", "std") if p.get(k) is not None]
        return f"{p.get('name')}: " + ", ".join(given)

    def segmentation(d: dict) -> str:
        s = d["segmentation"]
        given = {k: v for k, v in (s.get("params") or {}).items() if v is not None}
        return f"{s.get('algorithm')} ({_pairs(given)}) → {s.get('n_segments')} segments"

    return [
        ("Model", _distinct(records, model)),
        ("Output space", _distinct(records, lambda d: d["output_space"])),
        ("Preprocessing", _distinct(records, preprocessing)),
        ("Segmentation", _distinct(records, segmentation)),
        ("Versions", _distinct(records, versions)),
    ]


def _summaries(roots: Sequence[Path], base: Path) -> list[dict[str, Any]]:
    """Batch summaries (summary*.json) under the report's folders: counts and failed items."""
    found = []
    seen: set[Path] = set()
    for root in roots:
        for p in sorted(root.rglob("summary*.json")) if root.is_dir() else []:
            if p.resolve() in seen:
                continue
            seen.add(p.resolve())
            try:
                rows = json.loads(p.read_text(encoding="utf-8"))["rows"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            counts: dict[str, int] = {}
            for r in rows:
                counts[str(r.get("status"))] = counts.get(str(r.get("status")), 0) + 1
            failed = [{"input": r.get("input"), "method": r.get("method"), "error": r.get("error")}
                      for r in rows if r.get("status") == "failed"]
            found.append({"href": _href(p, base), "name": os.path.relpath(p, base), "counts": counts, "failed": failed})
    return found


def report_html(records: list[Record], base: Path, *, title: str, summaries: list[dict[str, Any]]) -> str:
    """The report page for ``records``; links are relative to ``base`` (the folder the page goes in)."""
    from jinja2 import Environment, PackageLoader

    # autoescape=True, not select_autoescape(): the template's name ends in .j2, not .html
    env = Environment(loader=PackageLoader("explain_cli", "templates"), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    records = sorted(records, key=lambda r: (Path(r.input_path).name, r.input_path, r.method))
    rows = [_row(r, base) for r in records]
    return env.get_template("report.html.j2").render(
        title=title, rows=rows, methods=_methods(rows, records), facts=_run_facts(records), summaries=summaries,
        inputs=len({r.input_key for r in records}), has_metrics=any(r.doc.get("evaluation") for r in records),
        has_mask=any(row["metrics"]["pointing_hit"] is not None for row in rows),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(out_dir: str | Path, *, extra: Iterable[str | Path] = (), name: str = "report.html") -> Path:
    """Write ``OUT_DIR/report.html`` from every explanation JSON under ``out_dir`` (and ``extra`` files/folders).

    Raises
    ------
    ExplainError
        No explanation JSON found, or the folder does not exist.
    """
    from explain_cli.fileio import atomic_write_bytes

    base = Path(out_dir)
    if not base.is_dir():
        raise ExplainError(f"{base} is not a folder; pass the --out folder of `explain run` or `explain batch`")
    extra = [Path(p) for p in extra]
    records = read_explanations([base, *[p for p in extra if p.exists()]])
    if not records:
        raise ExplainError(f"no explanation JSON under {base}; run `explain run ... --out {base}` first")
    page = report_html(records, base, title=f"Explanations in {base.resolve().name or base}",
                       summaries=_summaries([base], base))
    path = base / name
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------
# Comparison montage
# ---------------------------------------------------------------------------------------------

def _metric_line(evaluation: dict[str, Any], k: int) -> str:
    parts = []
    d, rd = _per_target(evaluation, "deletion_auc", k), _per_target(evaluation, "random_deletion_auc", k)
    i, ri = _per_target(evaluation, "insertion_auc", k), _per_target(evaluation, "random_insertion_auc", k)
    if d is not None:
        parts.append(f"del {d:.2f}" + (f" (rand {rd:.2f})" if rd is not None else ""))
    if i is not None:
        parts.append(f"ins {i:.2f}" + (f" (rand {ri:.2f})" if ri is not None else ""))
    hit, energy = _per_target(evaluation, "pointing_hit", k), _per_target(evaluation, "energy_in_mask", k)
    if hit is not None:
        parts.append("hit" if hit else "miss")
    if energy is not None:
        parts.append(f"energy {energy:.2f}")
    return " · ".join(parts)


def _load_map(record: Record) -> np.ndarray:
    """The run's own saved map (its hash and shape checked against the JSON), or a one-line error."""
    from explain_cli.saved import load_saved_map

    return load_saved_map(record.path, record.doc)


def _signed(method: str) -> bool:
    """Signed scores (diverging colours) or non-negative (RISE), as the engine declares."""
    from explain_cli.engines import ENGINES

    engine = ENGINES.get(method)
    return True if engine is None else bool(engine.signed)


def compare_image(records: list[Record]) -> "Any":
    """A PIL montage: one block per input (the image, then each method's map per shared target)."""
    from PIL import Image

    from explain_cli.inputs import load_input
    from explain_cli.render import CompareRow, render_compare_image

    groups: dict[tuple[str, str], list[Record]] = {}
    for rec in sorted(records, key=lambda r: (r.input_path, r.method)):
        if not rec.batch:  # a batch method's map is global, not this input's
            groups.setdefault(rec.input_key, []).append(rec)
    if not groups:
        raise ExplainError("no per-input explanation to compare (batch methods such as permutation are global)")
    blocks = []
    for (_, input_path), recs in groups.items():
        first = recs[0]
        shared = [t["index"] for t in first.doc["targets"]
                  if all(t["index"] in [u["index"] for u in r.doc["targets"]] for r in recs)]
        if not shared:
            raise ExplainError(f"{input_path}: the methods explained no class in common; use one --target or --top-k")
        try:
            display = load_input(input_path, channels=None).display
        except ExplainError as exc:
            raise ExplainError(f"cannot redraw {input_path} (recorded in {first.path}): {exc}") from None
        rows = []
        for rec in recs:
            indices = [t["index"] for t in rec.doc["targets"]]
            pick = [indices.index(i) for i in shared]
            evaluation = rec.doc.get("evaluation") or {}
            rows.append(CompareRow(method=rec.method, maps=_load_map(rec)[pick], signed=_signed(rec.method),
                                   evaluations=rec.doc.get("evaluations"),
                                   metrics=[_metric_line(evaluation, k) for k in pick], boundaries=False))
        space = {"probs": "prob", "logits": "logit"}.get(first.doc.get("output_space"), "score")
        by_index = {t["index"]: t for t in first.doc["targets"]}
        captions = [f"{by_index[i].get('label') or 'class'} ({i}): {space} {by_index[i]['score']:.3g}" for i in shared]
        blocks.append(render_compare_image(display, rows, target_captions=captions, title=Path(input_path).name))
    width = max(b.width for b in blocks)
    canvas = Image.new("RGB", (width, sum(b.height for b in blocks)), "white")
    y = 0
    for block in blocks:
        canvas.paste(block, (0, y))
        y += block.height
    return canvas


def write_compare(sources: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the comparison montage: ``out``, else compare.png in the one folder given (or the first JSON's).

    Raises
    ------
    ExplainError
        No explanation found, a map not saved (rerun with --save-map), an input that cannot be read.
    """
    import io

    from explain_cli.fileio import atomic_write_bytes

    records = read_explanations(sources)
    if not records:
        raise ExplainError(f"no explanation JSON in {', '.join(map(str, sources))}")
    if out is None:
        first = Path(sources[0])
        out = (first if first.is_dir() else first.parent) / "compare.png"
    buffer = io.BytesIO()
    compare_image(records).save(buffer, format="PNG", optimize=True)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
