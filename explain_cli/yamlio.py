"""Reading YAML configs safely (safe loader only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explain_cli.errors import ExplainError


def read_yaml(path: Path) -> Any:
    import yaml

    if not path.is_file():
        raise ExplainError(f"config {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ExplainError(f"config {path}: {problem}{where}") from None
    except UnicodeDecodeError:
        raise ExplainError(f"config {path} is not UTF-8 text") from None
