"""YAML configs: jobs of (model, inputs, methods), validated with file and key paths.

A config is ``defaults`` (any option) and ``jobs``; a job names a ``model``, its ``inputs``
(files, folders, globs) and ``methods`` (a name, or a mapping with the method's own options),
plus any option. Keys are the option names of :mod:`explain_cli.options.schema`.

Precedence, highest first: command line (``--set KEY=VALUE``, or ``explain run`` flags) >
method entry > job > ``defaults`` > the declared defaults. :func:`layers_for` lists the layers
in that order; :func:`explain_cli.options.schema.merge` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explain_cli.options import schema
from explain_cli.errors import ExplainError, OptionError, suggest

#: Keys a job has besides options.
JOB_KEYS = ("name", "model", "inputs", "methods")
TOP_KEYS = ("defaults", "jobs")
INPUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pt", ".pth", ".npy"}


class ConfigError(ExplainError):
    """One or more problems in a config file, each with its file and key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Job:
    index: int
    name: str
    model: str
    inputs: list[Path]
    methods: list[tuple[str, list[dict[str, Any]]]]  # (method, option layers lowest precedence first)


def read_yaml(path: Path) -> Any:
    """The parsed YAML document (safe loader, bounded size and aliases); errors name the file."""
    from explain_cli.yamlio import read_yaml as _read

    return _read(Path(path))


def _unknown(key: str, allowed: set[str], where: str) -> str:
    hint = suggest(key, sorted(allowed), quote=True)
    return f"{where}: unknown key {key!r}" + (f"; {hint}" if hint else "")


def _layer(data: Any, where: str, problems: list[str], *, extra: tuple[str, ...] = (), shared_ok: bool = True) -> dict:
    """Option values of one mapping, each checked; problems get the key path."""
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping of settings, got {type(data).__name__}")
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key in extra:
            out[key] = value
            continue
        option = schema.OPTIONS.get(key) if isinstance(key, str) else None
        if option is None or not option.yaml:
            problems.append(_unknown(str(key), {n for n, o in schema.OPTIONS.items() if o.yaml} | set(extra), path))
            continue
        if not shared_ok and option.shared:
            problems.append(f"{path}: set on the job, not per method (all methods of a job share segmentation, "
                            "preprocessing and the model)")
            continue
        try:
            out[key] = option.check(value)
            if option.parse is not None and key != "segments" and out[key] is not None:
                option.parse(out[key])  # free-form text (size, baseline, ...): checked now, with the rest
        except OptionError as exc:
            problems.append(f"{path}: {exc.problem}")
            out.pop(key, None)
    return out


def _misplaced(method: str, layers: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Every engine option set in ``layers`` (key path, values) that ``method`` does not use, by its path."""
    problems = []
    for where, layer in layers:
        for name in schema.misplaced(layer, method):
            methods = ", ".join(schema.OPTIONS[name].methods or ())
            problems.append(f"{where}.{name}: applies to {methods}, not {method}" if where
                            else f"`{name}` (command line): applies to {methods}, not {method}")
    return problems


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs, values read as YAML scalars (``samples=500`` is an int)."""
    out: dict[str, Any] = {}
    problems: list[str] = []
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            problems.append(f"--set {item!r}: expected KEY=VALUE, e.g. --set samples=500")
            continue
        if key == "method":
            problems.append("--set method: methods are chosen per job entry; edit the config's `methods` lists")
            continue
        option = schema.OPTIONS.get(key)
        if option is None or not option.yaml:
            problems.append(_unknown(key, {n for n, o in schema.OPTIONS.items() if o.yaml}, f"--set {key}"))
            continue
        try:
            out[key] = schema.parse_text(option, raw)
        except OptionError as exc:
            problems.append(f"--set {key}: {exc.problem}")
    if problems:
        raise ConfigError(problems)
    return out


def expand_inputs(spec: Any, where: str, problems: list[str]) -> list[Path]:
    """Files, folders (their image/tensor files) and globs, in a stable order, without repeats."""
    entries = spec if isinstance(spec, list) else [spec]
    if not entries:
        problems.append(f"{where}: empty list; name files, folders or globs")
    found: list[Path] = []
    seen: set[Path] = set()
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]" if isinstance(spec, list) else where
        if not isinstance(entry, str):
            problems.append(f"{at}: expected a path or glob string, got {type(entry).__name__}")
            continue
        p = Path(entry)
        if any(ch in entry for ch in "*?["):
            from explain_cli.batch.walk import bounded_glob  # a symlink cycle must not hang validation

            try:
                matches = sorted(Path(m) for m in bounded_glob(entry, at) if Path(m).is_file())
            except ExplainError as exc:
                problems.append(str(exc))
                continue
        elif p.is_dir():
            matches = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in INPUT_SUFFIXES)
        elif p.exists():
            matches = [p]
        else:
            problems.append(f"{at}: {entry!r} does not exist")
            continue
        if not matches:
            problems.append(f"{at}: {entry!r} matches no files")
        for m in matches:
            if m.resolve() not in seen:
                seen.add(m.resolve())
                found.append(m)
    return found


def parse_config(data: Any, path: Path, overrides: dict[str, Any] | None = None, *,
                 method: str | None = None) -> list[Job]:
    """Validate a whole config; every problem is reported, in one pass, with the file and its key path.

    ``method`` (``explain run --config FILE --method M``) replaces each job's methods by ``M``:
    its own entry if the job lists it (with that entry's options), else ``M`` with the job's options.
    """
    from explain_cli.options.settings import settings
    from explain_cli.engines import ENGINES

    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError([f"config {path}: expected a mapping with 'defaults' and 'jobs', got {type(data).__name__}"])
    for key in data:
        if key not in TOP_KEYS:
            problems.append(_unknown(str(key), set(TOP_KEYS), str(key)))
    defaults = _layer(data.get("defaults") or {}, "defaults", problems)
    if "method" in defaults:
        problems.append("defaults.method: set methods per job under 'methods'")
    raw_jobs = data.get("jobs")
    if not isinstance(raw_jobs, list) or not raw_jobs:
        problems.append("jobs: expected a non-empty list of jobs")
        raw_jobs = []
    jobs: list[Job] = []
    names: set[str] = set()
    for j, raw in enumerate(raw_jobs):
        jp = f"jobs[{j}]"
        local: list[str] = []
        layer = _layer(raw, jp, local, extra=JOB_KEYS)
        if "method" in layer:
            local.append(f"{jp}.method: list methods under 'methods'")
        model = layer.pop("model", None)
        if not isinstance(model, str) or not model:
            local.append(f"{jp}.model: required, a model file or torchvision:ARCH")
        inputs = expand_inputs(layer.pop("inputs"), f"{jp}.inputs", local) if "inputs" in layer else []
        if "inputs" not in (raw if isinstance(raw, dict) else {}):
            local.append(f"{jp}.inputs: required, a list of files, folders or globs")
        name = str(layer.pop("name", None) or (Path(model).stem if isinstance(model, str) else f"job{j}"))
        if name in names:
            name = f"{name}-{j}"
        names.add(name)
        raw_methods = layer.pop("methods", None)
        methods: list[tuple[str, list[dict[str, Any]]]] = []
        if not isinstance(raw_methods, list) or not raw_methods:
            local.append(f"{jp}.methods: required, a non-empty list such as [lime, kernelshap]")
            raw_methods = []
        if method is not None:  # the command line's --method replaces the job's list
            raw_methods = [e for e in raw_methods if e == method or (isinstance(e, dict) and e.get("method") == method)][:1] \
                or [method]
        for m, entry in enumerate(raw_methods):
            mp = f"{jp}.methods[{m}]"
            if isinstance(entry, str):
                entry = {"method": entry}
            if not isinstance(entry, dict) or not isinstance(entry.get("method"), str):
                local.append(f"{mp}: expected a method name or a mapping with 'method'")
                continue
            if entry["method"] not in ENGINES:
                local.append(f"{mp}.method: " + _method_problem(entry["method"], ENGINES))
                continue
            entry_layer = _layer(entry, mp, local, shared_ok=False)
            layers = [defaults, layer, entry_layer, overrides or {}]
            local += _misplaced(entry["method"], [("defaults", defaults), (jp, layer),
                                                  (mp, {k: v for k, v in entry_layer.items() if k != "method"}),
                                                  ("", overrides or {})])
            if not local:
                try:
                    settings(*layers)
                except OptionError as exc:
                    where = mp if exc.option in entry_layer or exc.option not in layer else jp
                    local.append(f"{where}.{exc.option}: {exc.problem}")
                except ExplainError as exc:
                    local.append(f"{mp}: {exc}")
            methods.append((entry["method"], layers))
        problems += local
        if not local:
            jobs.append(Job(index=j, name=name, model=model, inputs=inputs, methods=methods))
    if problems:  # a defaults key wrong for several methods is said once
        raise ConfigError([f"config {path}: {p}" for p in dict.fromkeys(problems)])
    return jobs


def _method_problem(name: str, engines: Any) -> str:
    hint = suggest(name, engines)
    return f"must be one of {', '.join(engines)}, got {name!r}" + (f" ({hint})" if hint else "")


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> list[Job]:
    """Read and validate a batch config."""
    return parse_config(read_yaml(path), path, overrides)


def load_job(path: Path, overrides: dict[str, Any] | None = None, *, method: str | None = None) -> Job:
    """One job for `explain run --config`: a file with one job, or a bare job mapping.

    ``method`` replaces the job's methods (the command line overrides the file; see :func:`parse_config`).
    """
    data = read_yaml(path)
    if isinstance(data, dict) and "jobs" not in data and "defaults" not in data:
        data = {"jobs": [data]}
    jobs = parse_config(data, path, overrides, method=method)
    if len(jobs) != 1:
        raise ExplainError(f"config {path} has {len(jobs)} jobs; `explain run --config` runs one, use `explain batch`")
    return jobs[0]


def summary_folder(data: Any, path: Path, overrides: dict[str, Any] | None) -> Path:
    """Where a config's summary goes: its ``defaults.out`` (after overrides)."""
    problems: list[str] = []
    defaults = _layer((data or {}).get("defaults") or {}, "defaults", problems)
    return Path(schema.merge(defaults, overrides or {})["out"])
