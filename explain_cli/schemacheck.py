"""Explanation JSONs checked against ``schema/explanation.schema.json`` before anything reads them.

``explain evaluate``, ``report`` and ``compare`` read JSONs that may have been edited by hand
or by another tool; a document that does not validate is refused in one line naming the file
and the first problem (its key path), never a KeyError later. The validator covers the JSON
Schema keywords the schema uses (``type``, ``properties``, ``required``,
``additionalProperties``, ``items``, ``minItems``/``maxItems``, ``minimum``, ``minLength``,
``enum``, ``const``, ``oneOf``, ``pattern``, local ``$ref``); jsonschema is not a dependency.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from explain_cli.errors import ExplainError

#: The schema every explanation JSON follows (the repository's copy; see README, "Output files").
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "explanation.schema.json"

_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}


@lru_cache(maxsize=1)
def explanation_schema() -> dict | None:
    """The schema, or None where the package runs without its repository (a wheel install)."""
    try:
        return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except OSError:
        return None


def _is(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False  # true is not a number here, as in JSON
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def first_error(value: Any, schema: dict, root: dict, path: str = "") -> str | None:
    """The first place ``value`` breaks ``schema`` (``"targets/0/index: must be ≥ 0"``), or None."""
    where = path or "(document)"
    if "$ref" in schema:
        ref = schema["$ref"]
        node: Any = root
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return first_error(value, node, root, path)
    if "oneOf" in schema:
        if sum(first_error(value, option, root, path) is None for option in schema["oneOf"]) != 1:
            return f"{where}: matches none of its allowed forms"
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            return f"{where}: must be {' or '.join(kinds)}, got {type(value).__name__}"
    if "const" in schema and value != schema["const"]:
        return f"{where}: must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: must be one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "minimum" in schema \
            and value < schema["minimum"]:
        return f"{where}: must be ≥ {schema['minimum']}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where}: must not be empty"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where}: does not have the expected form"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            return f"{where}: has {len(value)} items"
        if "items" in schema:
            for i, item in enumerate(value):
                found = first_error(item, schema["items"], root, f"{path}/{i}" if path else str(i))
                if found:
                    return found
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                return f"{where}: lacks {key!r}"
        props = schema.get("properties", {})
        for key, item in value.items():
            sub = f"{path}/{key}" if path else str(key)
            if key in props:
                found = first_error(item, props[key], root, sub)
                if found:
                    return found
            elif schema.get("additionalProperties") is False:
                return f"{sub}: unknown key"
            elif isinstance(schema.get("additionalProperties"), dict):
                found = first_error(item, schema["additionalProperties"], root, sub)
                if found:
                    return found
    return None


def check_explanation(doc: Any, source: str | Path) -> dict:
    """``doc`` when it validates against the explanation schema; else a one-line ExplainError.

    Raises
    ------
    ExplainError
        ``X.json does not follow schema/explanation.schema.json (targets/0/index: must be ≥ 0);
        it was edited or written by another version: explain again``.
    """
    schema = explanation_schema()
    problem = first_error(doc, schema, schema) if schema is not None else (
        None if isinstance(doc, dict) else "(document): must be object")
    if problem:
        raise ExplainError(f"{source} does not follow schema/explanation.schema.json ({problem}); it was edited or "
                           "written by another version: explain again")
    return doc

