"""A batch's plan: its items, which shard runs each, and a check that no two write one file.

An *item* is one (job, input, method), or (job, all inputs, method) for a batch method such as
permutation. Items are planned and validated before any work.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from explain_cli.config import Job
from explain_cli.engines import get_engine
from explain_cli.errors import ExplainError
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

    @property
    def key(self) -> str:
        return f"{self.job.name}|{self.stem}|{self.method}"

    @property
    def input_label(self) -> str:
        """The summary's ``input``: the input's path, or how many inputs a batch item explains."""
        return str(self.inputs[0]) if len(self.inputs) == 1 else f"{len(self.inputs)} inputs"

    def outputs(self) -> dict[str, Path]:
        return output_paths(self.cfg.output.out, self.stem, self.method, self.cfg.output.save_map)

    def complete(self) -> bool:
        """Every output is a regular file (a folder or a fifo of the same name does not count)."""
        return all(p.is_file() for p in self.outputs().values())


def plan_items(jobs: list[Job]) -> list[Item]:
    """Every item of every job; two inputs of one job that would write the same files are an error."""
    items: list[Item] = []
    for job in jobs:
        for method, layers in job.methods:
            cfg = settings(*layers)
            if get_engine(method).batch:
                items.append(Item(job, method, cfg, list(job.inputs), cfg.output.name or "batch"))
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
