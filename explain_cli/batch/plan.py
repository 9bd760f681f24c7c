"""A batch's plan: its items, which shard runs each, and checks that run before any item computes.

An *item* is one (job, input, method), or (job, all inputs, method) for a batch method such as
permutation. Items are planned and validated before any work: no two items may write one file
(:func:`check_collisions`), and the options that name something outside the config, a ``mask``
file and a ``device``, are checked once each (:func:`check_resources`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from explain_cli.config import Job
from explain_cli.engines import get_engine
from explain_cli.errors import ExplainError, OptionError
from explain_cli.options.groups import Settings
from explain_cli.options.settings import settings
from explain_cli.result import check_unique_stems, output_paths


@dataclass
class Item:
    job: Job
    method: str
    cfg: Settings
    inputs: list[Path]  # one input, or all of the job's for a batch method
    stem: str
    entry: int = 0  # the method's place in the job's ``methods`` list

    @property
    def where(self) -> str:
        """The method entry's key path in the config, e.g. ``jobs[0].methods[2]``."""
        return f"jobs[{self.job.index}].methods[{self.entry}]"

    @property
    def key(self) -> str:
        return f"{self.job.name}|{self.stem}|{self.method}"

    @property
    def input_label(self) -> str:
        """The summary's ``input``: the input's path, or how many inputs a batch item explains."""
        return str(self.inputs[0]) if len(self.inputs) == 1 else f"{len(self.inputs)} inputs"

    def outputs(self) -> dict[str, Path]:
        """Every file the item writes; the curves PNG when it evaluates (batch methods have no curves)."""
        curves = self.cfg.evaluation.evaluate and not self.cfg.engine.batch
        return output_paths(self.cfg.output.out, self.stem, self.method, self.cfg.output.save_map, curves)

    def complete(self) -> bool:
        """Every output is a regular file (a folder or a fifo of the same name does not count)."""
        return all(p.is_file() for p in self.outputs().values())


def plan_items(jobs: list[Job]) -> list[Item]:
    """Every item of every job; two inputs of one job that would write the same files are an error."""
    items: list[Item] = []
    for job in jobs:
        for entry, (method, layers) in enumerate(job.methods):
            cfg = settings(*layers)
            if get_engine(method).batch:
                items.append(Item(job, method, cfg, list(job.inputs), cfg.output.name or "batch", entry))
                continue
            # inputs are unique by resolved path already (config.expand_inputs)
            check_unique_stems(job.inputs, "put them in different jobs with different 'out'", where=f"job {job.name}: ")
            items += [Item(job, method, cfg, [p], p.stem, entry) for p in job.inputs]
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


def check_collisions(items: list[Item], config: Path | str = "") -> None:
    """No two items write the same file, comparing resolved paths (``x`` and ``y/../x`` are one folder).

    Check every item of the config, before taking a shard: two entries that collide may fall in
    different shards.

    Raises
    ------
    ExplainError
        Naming both entries by key path and how to separate them: one method listed twice in a
        job, two batch-method entries with one ``name``, or two jobs sharing an ``out`` folder.
    """
    seen: dict[Path, Item] = {}
    for item in items:
        for p in item.outputs().values():
            real = Path(os.path.abspath(p)).resolve()
            other = seen.setdefault(real, item)
            if other is not item:
                raise ExplainError(f"config {config}: {_collision(other, item, p)}")
            if p.exists() and not p.is_file():
                raise ExplainError(f"output {p} exists and is not a regular file; move it away")


def _collision(first: Item, second: Item, path: Path) -> str:
    both = f"{first.where} and {second.where} would both write {path}"
    if first.job is not second.job:
        return f"{both}; give the jobs different 'out' folders"
    if first.method != second.method:
        return f"{both}; give one of them its own 'out'"
    if get_engine(first.method).batch:
        return f"{both}; give each {first.method} entry its own 'name' (or 'out')"
    return f"{both}: {first.method} is listed twice; list each method once per job, or give one entry its own 'out'"


def check_resources(items: list[Item], config: Path | str = "", *, here: bool = True) -> None:
    """Check each distinct ``mask`` file and ``device`` once, before any item computes.

    ``here``: the items run in this process, so the device must exist here; otherwise (Ray
    workers) only its spelling is checked.

    Raises
    ------
    ConfigError
        Every problem, each with its key path (``jobs[0].methods[1].mask: ...``).
    """
    from explain_cli.config import ConfigError

    verdicts: dict[tuple[str, str], str | None] = {}
    problems: list[str] = []
    for item in items:
        for key, check in (("device", lambda v: _device_problem(v, here)), ("mask", _mask_problem)):
            value = item.cfg.values.get(key)
            if value is None:
                continue
            if (key, value) not in verdicts:
                verdicts[(key, value)] = check(value)
            problem = verdicts[(key, value)]
            where = f"jobs[{item.job.index}]" if key == "device" else item.where  # device is set per job
            line = f"config {config}: {where}.{key}: {problem}"
            if problem is not None and line not in problems:
                problems.append(line)
    if problems:
        raise ConfigError(problems)


def _device_problem(name: str, here: bool) -> str | None:
    import torch

    from explain_cli.models.base import resolve_device

    try:
        if here:
            resolve_device(name)
        elif name.strip().lower() != "auto" and torch.device(name.strip().lower()).type not in ("cpu", "cuda", "mps"):
            return f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps"
    except ExplainError as exc:
        return str(exc)
    except RuntimeError:
        return f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps"
    return None


def _mask_problem(path: str) -> str | None:
    from explain_cli.metrics.localisation import load_mask

    try:
        load_mask(path)
    except OptionError as exc:
        return exc.problem
    except ExplainError as exc:
        return str(exc)
    return None
