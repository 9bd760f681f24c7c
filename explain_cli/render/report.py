"""`explain report`: one self-contained, offline HTML page of the explanation JSONs already written.

The page is rendered with Jinja2 (autoescaped, no scripts, fonts or styles from anywhere else)
from ``templates/report.html.j2``; images are linked by relative path to the PNGs beside the
JSONs, so the page stays small and works from any copy of the folder that keeps them.

Nothing here imports torch; reading a folder of results needs no model.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence
from urllib.parse import quote

if TYPE_CHECKING:
    from markupsafe import Markup

from explain_cli.errors import ExplainError
from explain_cli.render.captions import box_name, region_name
from explain_cli.render.records import Record, first_metrics, read_explanations, target_metrics


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _count(value: float | None) -> str:
    """A count (or a mean of counts) as a whole number with thousands separators: ``1,024``, never ``1.02e+03``."""
    return "–" if value is None else f"{round(value):,}"


def _folder(record: Record, base: Path) -> str:
    """The JSON's folder relative to the report (``.`` at its top), so two runs of one method on one input differ."""
    rel = os.path.relpath(os.path.abspath(record.path.parent), os.path.abspath(base))
    return Path(rel).as_posix()


def breakable(text: Any) -> Markup:
    r"""``text`` HTML-escaped, with a line-break opportunity (``<wbr>``) after each ``/``, ``\`` and ``_``.

    Paths then wrap between their parts instead of mid-word (a Jinja filter: ``{{ path|breakable }}``).

    Examples
    --------
    >>> str(breakable("out/run_1/<a>.png"))
    'out/<wbr>run_<wbr>1/<wbr>&lt;a&gt;.png'
    """
    from markupsafe import Markup, escape

    parts = [part for part in re.split(r"(?<=[/\\_])", str(text)) if part]
    return Markup("").join(Markup(f"{escape(part)}<wbr>") if part[-1] in "/\\_" else escape(part) for part in parts)


def _href(target: Path, base: Path) -> str:
    """A relative URL from the report's folder to ``target``, percent-encoded (names may hold '#', '?', '<')."""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(base))
    return quote(Path(rel).as_posix())


def _row(record: Record, base: Path) -> dict[str, Any]:
    doc = record.doc
    evaluation = doc.get("evaluation") or {}
    targets = []
    for k, t in enumerate(doc["targets"]):
        name = t.get("label") if t.get("label") is not None else f"class {t.get('index')}"
        index = t.get("index")
        if t.get("box") is not None:  # a detection: the box (input-image pixels) and the detector's score
            name = box_name(k, t) + (f" · detector {t['detector_score']:.2f}" if t.get("detector_score") is not None
                                     and t.get("source") != "box" else "")
            index = "box " + ",".join(f"{v:.0f}" for v in (t.get("box_original") or t["box"]))
        elif t.get("region") is not None:  # segmentation: the class over its region
            name, index = region_name(t), "bbox " + ",".join(str(v) for v in t["region"].get("bbox", ()))
        elif t.get("kind") in ("reference", "prompt"):  # similarity: a prompt by its label, or the reference
            name = (name if t.get("label") is not None else f"prompt {index}") if t["kind"] == "prompt" else \
                f"similarity to the reference {t.get('reference', '')}".strip()
            index = "cos" if index is None else index
        mk = target_metrics(evaluation, k)
        targets.append({
            "name": name, "index": index, "score": _num(t.get("score")),
            "deletion": _num(mk["deletion_auc"]), "random_deletion": _num(mk["random_deletion_auc"]),
            "insertion": _num(mk["insertion_auc"]), "random_insertion": _num(mk["random_insertion_auc"]),
            "pointing": _num(mk["pointing_hit"]), "energy": _num(mk["energy_in_mask"]),
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
        "folder": _folder(record, base),
        "evaluations": doc.get("evaluations"), "evaluations_text": _count(doc.get("evaluations")),
        "time": timing.get("total_s"), "time_text": _num(timing.get("total_s")),
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


def _method_params(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The engine's own parameters: the task's settings (``params.task``) go to the run's facts, not every row."""
    params = doc.get("params")
    return {k: v for k, v in params.items() if k != "task"} if isinstance(params, dict) else None


def _mean(values: Sequence[Any], *, count: bool = False) -> str:
    numbers = [float(v) for v in values if v is not None]
    if not numbers:
        return "–"
    mean = statistics.fmean(numbers)
    return _count(mean) if count else _num(mean)


def _rate(flags: Sequence[Any]) -> str:
    known = [bool(f) for f in flags if f is not None]
    return f"{sum(known)}/{len(known)}" if known else "–"


def _methods(rows: list[dict[str, Any]], records: list[Record]) -> list[dict[str, Any]]:
    """Per method: its settings and its metrics over every input (the ranking a compare config is for)."""
    out = []
    for method in dict.fromkeys(r.method for r in records):
        mine = [(row, rec) for row, rec in zip(rows, records) if rec.method == method]
        params = {_pairs(_method_params(rec.doc)) or "defaults" for _, rec in mine}
        evals = {_pairs({k: v for k, v in (rec.doc.get("evaluation") or {}).items() if k in ("deletion", "step", "tolerance_px")})
                 for _, rec in mine}
        out.append({
            "method": method, "count": len(mine),
            "params": " | ".join(sorted(params)), "evaluation": " | ".join(sorted(e for e in evals if e)) or "–",
            "seed": ", ".join(sorted({str(rec.doc.get("seed")) for _, rec in mine})),
            "baseline": ", ".join(sorted({str(rec.doc["baseline"]) for _, rec in mine if rec.doc.get("baseline")}))
                        or "–",
            "deletion": _mean([row["metrics"]["deletion_auc"] for row, _ in mine]),
            "insertion": _mean([row["metrics"]["insertion_auc"] for row, _ in mine]),
            "deletion_wins": _rate([row["deletion_beats_random"] for row, _ in mine]),
            "insertion_wins": _rate([row["insertion_beats_random"] for row, _ in mine]),
            "pointing": _rate([row["metrics"]["pointing_hit"] for row, _ in mine]),
            "energy": _mean([row["metrics"]["energy_in_mask"] for row, _ in mine]),
            "evaluations": _mean([row["evaluations"] for row, _ in mine], count=True),
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

    def task(d: dict) -> str:
        t = d["params"]["task"]
        given = {k: t[k] for k in ("min_score", "decoder", "objectness", "min_area", "reference", "prompts", "temperature")
                 if t.get(k) is not None}
        score = t.get("score") or t.get("similarity")  # detection names its box score "similarity"
        return t["task"] + (f": {score}" if score else "") + (f" ({_pairs(given)})" if given else "")

    return [
        ("Model", _distinct(records, model)),
        ("Task", _distinct(records, task)),
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
    env = Environment(loader=PackageLoader("explain_cli.render", "templates"), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["breakable"] = breakable
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
    records = read_explanations([base, *[p for p in map(Path, extra) if p.exists()]])
    if not records:
        raise ExplainError(f"no explanation JSON under {base}; run `explain run ... --out {base}` first")
    page = report_html(records, base, title=f"Explanations in {base.resolve().name or base}",
                       summaries=_summaries([base], base))
    path = base / name
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
