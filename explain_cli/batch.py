"""`explain batch`: YAML-configured runs over many inputs, resumable, shardable, failure-isolated.

An *item* is one (job, input, method), or (job, all inputs, method) for a batch method such as
permutation. Items are planned and validated before any work; finished items (their JSON, which
is written last and atomically, exists) are skipped unless ``force``; a failing item is recorded
and the rest go on.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from explain_cli.config import (
    JOB_KEYS,
    RUN_FIELDS,
    SHARED_KEYS,
    ConfigError,
    RunConfig,
    check_layer,
    merge_layers,
    read_yaml,
    unknown_key,
)
from explain_cli.engines import ENGINES, build_params, get_engine
from explain_cli.errors import ExplainError
from explain_cli.fileio import atomic_write_bytes
from explain_cli.pipeline import output_paths

INPUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pt", ".pth", ".npy"}
TOP_KEYS = {"defaults", "jobs"}


@dataclass
class Job:
    index: int
    name: str
    model: str
    inputs: list[Path]
    methods: list[tuple[str, RunConfig]]  # (method name, fully merged config)


@dataclass
class Item:
    job: Job
    method: str
    cfg: RunConfig
    inputs: list[Path]  # one input, or all of the job's for a batch method
    stem: str

    @property
    def key(self) -> str:
        return f"{self.job.name}|{self.stem}|{self.method}"

    def outputs(self) -> dict[str, Path]:
        return output_paths(Path(self.cfg.out), self.stem, self.method, self.cfg.save_map)

    def complete(self) -> bool:
        return all(p.exists() for p in self.outputs().values())


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


def expand_inputs(spec: Any, path: str, problems: list[str]) -> list[Path]:
    """Files, folders (their image/tensor files) and globs, in a stable order."""
    entries = spec if isinstance(spec, list) else [spec]
    if not entries:
        problems.append(f"{path}: empty list; name files, folders or globs")
    found: list[Path] = []
    for i, entry in enumerate(entries):
        where = f"{path}[{i}]" if isinstance(spec, list) else path
        if not isinstance(entry, str):
            problems.append(f"{where}: expected a path or glob string, got {type(entry).__name__}")
            continue
        p = Path(entry)
        if any(ch in entry for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(entry, recursive=True) if Path(m).is_file())
        elif p.is_dir():
            matches = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in INPUT_SUFFIXES)
        elif p.exists():
            matches = [p]
        else:
            problems.append(f"{where}: {entry!r} does not exist")
            continue
        if not matches:
            problems.append(f"{where}: {entry!r} matches no files")
        found += [m for m in matches if m not in found]
    return found


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> list[Job]:
    """Read and validate a batch config; every problem is reported with its key path."""
    return parse_config(read_yaml(path), path, overrides)


def load_job(path: Path, overrides: dict[str, Any] | None = None) -> Job:
    """One job for `explain run --config`: a file with one job, or a bare job mapping."""
    data = read_yaml(path)
    if isinstance(data, dict) and "jobs" not in data and "defaults" not in data:
        data = {"jobs": [data]}
    jobs = parse_config(data, path, overrides)
    if len(jobs) != 1:
        raise ExplainError(f"config {path} has {len(jobs)} jobs; `explain run --config` runs one, use `explain batch`")
    return jobs[0]


def parse_config(data: Any, path: Path, overrides: dict[str, Any] | None = None) -> list[Job]:
    problems: list[str] = []
    prefix = f"{path}: "
    if not isinstance(data, dict):
        raise ConfigError([f"{prefix}expected a mapping with 'defaults' and 'jobs', got {type(data).__name__}"])
    for key in data:
        if key not in TOP_KEYS:
            problems.append(prefix + unknown_key(str(key), TOP_KEYS, str(key)))
    defaults = check_layer(data.get("defaults") or {}, "defaults", problems, allowed=set())
    if "method" in defaults:
        problems.append(f"{prefix}defaults.method: set methods per job under 'methods'")
    raw_jobs = data.get("jobs")
    if not isinstance(raw_jobs, list) or not raw_jobs:
        problems.append(f"{prefix}jobs: expected a non-empty list of jobs")
        raw_jobs = []
    jobs: list[Job] = []
    names: set[str] = set()
    for j, raw in enumerate(raw_jobs):
        jp = f"jobs[{j}]"
        job_problems: list[str] = []
        layer = check_layer(raw, jp, job_problems, allowed=JOB_KEYS)
        if "method" in layer:
            job_problems.append(f"{jp}.method: list methods under 'methods'")
        model = layer.get("model")
        if not isinstance(model, str) or not model:
            job_problems.append(f"{jp}.model: required, a TorchScript file or torchvision:ARCH")
        inputs = expand_inputs(layer["inputs"], f"{jp}.inputs", job_problems) if "inputs" in layer else []
        if "inputs" not in layer:
            job_problems.append(f"{jp}.inputs: required, a list of files, folders or globs")
        name = str(layer.get("name") or (Path(model).stem if isinstance(model, str) else f"job{j}"))
        if name in names:
            name = f"{name}-{j}"
        names.add(name)
        methods = _check_methods(layer.get("methods"), jp, job_problems, [defaults, layer], overrides or {})
        problems += [prefix + p for p in job_problems]
        if not job_problems:
            jobs.append(Job(index=j, name=name, model=model, inputs=inputs, methods=methods))
    if problems:
        raise ConfigError(problems)
    return jobs


def _check_methods(raw: Any, jp: str, problems: list[str], layers: list[dict], overrides: dict) -> list[tuple[str, RunConfig]]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{jp}.methods: required, a non-empty list such as [lime, kernelshap]")
        return []
    allowed = set(RUN_FIELDS) - SHARED_KEYS
    out: list[tuple[str, RunConfig]] = []
    for m, entry in enumerate(raw):
        mp = f"{jp}.methods[{m}]"
        if isinstance(entry, str):
            entry = {"method": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("method"), str):
            problems.append(f"{mp}: expected a method name or a mapping with 'method'")
            continue
        local: list[str] = []
        layer = check_layer(entry, mp, local, allowed=set())
        for key in layer:
            if key in SHARED_KEYS:
                local.append(f"{mp}.{key}: set on the job, not per method (all methods share segmentation and preprocessing)")
            elif key not in allowed:
                local.append(unknown_key(key, allowed, f"{mp}.{key}"))
        try:
            engine = get_engine(layer["method"])
        except ExplainError as exc:
            local.append(f"{mp}.method: {exc}")
            engine = None
        if engine is not None and not local:
            cfg = merge_layers(*layers, layer, overrides)
            try:
                build_params(engine, cfg.engine_values())
            except ExplainError as exc:
                local.append(f"{mp}: {exc}")
            names = {f for f in engine.params.__dataclass_fields__}
            engine_keys = {f for e in ENGINES.values() for f in e.params.__dataclass_fields__}
            for key in layer:
                if key in engine_keys and key not in names:
                    local.append(f"{mp}.{key}: {engine.name} takes no {key!r}; it takes {', '.join(sorted(names)) or 'no parameters'}")
            out.append((engine.name, cfg))
        problems += local
    return out


def plan_items(jobs: list[Job]) -> list[Item]:
    items: list[Item] = []
    for job in jobs:
        for method, cfg in job.methods:
            if get_engine(method).batch:
                items.append(Item(job, method, cfg, list(job.inputs), cfg.name or "batch"))
            else:
                items += [Item(job, method, cfg, [p], p.stem) for p in job.inputs]
    return items


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    k, sep, n = text.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit() or not 1 <= int(k) <= int(n):
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
    seen: dict[Path, str] = {}
    for item in items:
        for p in item.outputs().values():
            if p in seen and seen[p] != item.key:
                raise ExplainError(f"two items would write {p} ({seen[p]} and {item.key}); give the jobs different 'out' folders")
            seen[p] = item.key


def run_batch(
    config: Path,
    *,
    overrides: dict[str, Any] | None = None,
    dry_run: bool = False,
    force: bool = False,
    shard: tuple[int, int] | None = None,
    emit: Callable[[dict], None] = lambda event: None,
    progress: Any = None,
) -> tuple[list[Row], Path | None]:
    """Run (or with ``dry_run`` only plan) every item of ``config`` in this shard.

    Returns the summary rows and where the summary was written (None for a dry run).
    """
    data = read_yaml(config)
    jobs = parse_config(data, config, overrides)  # validates `defaults` too, so it is a mapping here
    items = [i for i in plan_items(jobs) if in_shard(i, shard)]
    check_collisions(items)
    defaults = check_layer(data.get("defaults") or {}, "defaults", [], allowed=set())
    summary_dir = Path(merge_layers(defaults, overrides or {}).out)
    if dry_run:
        rows = []
        for item in items:
            status = "skip" if item.complete() and not force else "write"
            rows.append(Row(item.job.name, _input_label(item), item.method, f"planned-{status}",
                            outputs=[str(p) for p in item.outputs().values()]))
        return rows, None
    rows: list[Row] = []
    emit({"event": "start", "items": len(items), "config": str(config), "shard": list(shard) if shard else None})
    if progress is not None:
        progress.start(len(items), "batch")
    by_job: dict[int, list[Item]] = {}
    for item in items:
        by_job.setdefault(item.job.index, []).append(item)
    for job_items in by_job.values():
        rows += _run_job(job_items, force=force, emit=emit, progress=progress)
    if progress is not None:
        progress.stop()
    summary = _write_summary(rows, summary_dir, shard)
    emit({"event": "end", "done": sum(r.status == "done" for r in rows), "skipped": sum(r.status == "skipped" for r in rows),
          "failed": sum(r.status == "failed" for r in rows), "summary": str(summary)})
    return rows, summary


def _input_label(item: Item) -> str:
    return str(item.inputs[0]) if len(item.inputs) == 1 else f"{len(item.inputs)} inputs"


def _run_job(items: list[Item], *, force: bool, emit: Callable[[dict], None], progress: Any) -> list[Row]:
    from explain_cli.fileio import ensure_writable_dir
    from explain_cli.inputs import load_input
    from explain_cli.models import load_model
    from explain_cli.pipeline import explain_items, write_explanation

    job = items[0].job
    rows: list[Row] = []
    pending = [i for i in items if force or not i.complete()]
    for item in items:
        if item not in pending:
            rows.append(_finish(Row(job.name, _input_label(item), item.method, "skipped",
                                    outputs=[str(p) for p in item.outputs().values()]), emit, progress))
    if not pending:
        return rows
    first = pending[0].cfg
    try:
        model = load_model(job.model, weights=first.weights, device=first.device, seed=first.seed)
    except Exception as exc:  # the whole job fails, the others go on
        return rows + [_finish(Row(job.name, _input_label(i), i.method, "failed", error=_message(exc)), emit, progress)
                       for i in pending]
    loaded: dict[Path, Any] = {}
    caches: dict[Path, dict] = {}
    for item in pending:
        start = time.perf_counter()
        row = Row(job.name, _input_label(item), item.method, "failed")
        if progress is not None:
            progress.describe(f"{job.name}: {Path(row.input).name} · {item.method}")
        try:
            out_dir = ensure_writable_dir(Path(item.cfg.out))
            for p in item.inputs:
                if p not in loaded:
                    try:
                        loaded[p] = load_input(p, channels=model.in_channels or 3)
                    except Exception as exc:
                        loaded[p] = exc
                if isinstance(loaded[p], Exception):
                    raise loaded[p]
            inputs = [loaded[p] for p in item.inputs]
            cache = caches.setdefault(item.inputs[0], {}) if len(item.inputs) == 1 else caches.setdefault(Path("*batch*"), {})
            expl = explain_items(model, inputs, item.cfg, cache=cache)
            files = write_explanation(expl, inputs[0].display, out_dir, item.stem, item.cfg)
            scores = expl.attribution.scores[0]
            row.status = "done"
            row.outputs = [str(f) for f in files]
            row.top_segments = [int(g) for g in sorted(range(len(scores)), key=lambda g: -abs(scores[g]))[:3]]
            row.evaluations = expl.evaluations
        except Exception as exc:
            row.error = _message(exc)
        row.time_s = round(time.perf_counter() - start, 3)
        rows.append(_finish(row, emit, progress))
    return rows


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
    from explain_cli.fileio import ensure_writable_dir

    ensure_writable_dir(folder)
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
