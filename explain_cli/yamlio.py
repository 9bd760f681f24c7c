"""Reading YAML safely: size and alias-expansion limits, and one-line errors with file, line and column.

YAML aliases let a 650-byte file describe a billion nodes ("billion laughs"). PyYAML shares
the aliased node, so composing is cheap, but any consumer that walks the result (validation,
JSON dumps, printing) expands it. `read_yaml` composes the node graph, measures its expanded
size with memoisation (time and memory proportional to the file, not to the expansion) and
refuses it before constructing a single Python object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explain_cli.errors import ExplainError, one_line
from explain_cli.fileio import read_error_reason, require_file

#: Largest config file read, in bytes. Real configs are a few kB.
MAX_BYTES = 5_000_000
#: Largest number of nodes (scalars, sequences, mappings) the document may expand to, aliases
#: counted each time they are used. A config with a thousand jobs is well under this.
MAX_NODES = 100_000
#: Deepest nesting accepted; Python constructs nested nodes recursively.
MAX_DEPTH = 200


def _loader_class() -> type:
    """libyaml's safe loader when PyYAML was built with it (10x faster), else the pure-Python one."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | Path, *, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> Any:
    """Read one YAML document from ``path`` with the safe loader, within size limits.

    Same result as ``yaml.safe_load(path.read_text("utf-8"))``: an empty file gives None.

    Parameters
    ----------
    path : str or Path
        The YAML file.
    max_bytes : int
        Largest file size accepted.
    max_nodes : int
        Largest expanded node count (aliases counted at every use).

    Raises
    ------
    ExplainError
        One line starting ``config PATH``: missing or unreadable, too large, not UTF-8, alias
        expansion over the limit, nesting deeper than `MAX_DEPTH`, or invalid YAML (with line
        and column).
    """
    path = Path(path)
    require_file(path, "config", "pass a YAML config file", allow_empty=True)
    size = path.stat().st_size
    if size > max_bytes:
        raise ExplainError(
            f"config {path} is {size:,} bytes, over the {max_bytes:,}-byte limit for configs; is it the right file?"
        )
    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)  # the file may have grown since stat
    except OSError as exc:
        raise ExplainError(f"config {path} cannot be read: {read_error_reason(exc)}") from None
    if len(raw) > max_bytes:
        raise ExplainError(f"config {path} is over the {max_bytes:,}-byte limit for configs; is it the right file?")
    try:
        text = raw.decode("utf-8-sig")  # a BOM is harmless; editors on Windows add one
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ExplainError(
            f"config {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None
    return loads_yaml(text, source=f"config {path}", max_nodes=max_nodes)


def loads_yaml(text: str, *, source: str = "YAML", max_nodes: int = MAX_NODES) -> Any:
    """Parse one YAML document from a string, refusing alias bombs and deep nesting.

    ``source`` starts every error message (``config PATH``, ``--set seg_params``).

    Examples
    --------
    >>> loads_yaml("samples: 500")
    {'samples': 500}
    """
    import yaml

    loader = _loader_class()(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            check_node_graph(node, source=source, max_nodes=max_nodes)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise ExplainError(f"{source}: {_describe_marked(exc)}") from None
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        raise ExplainError(
            f"{source}: unacceptable character #x{exc.character:04x} (line {line}, column {column}); "
            f"remove control characters"
        ) from None
    except yaml.YAMLError as exc:
        raise ExplainError(f"{source}: {one_line(str(exc))}") from None
    except RecursionError:
        raise ExplainError(f"{source}: nesting too deep; flatten the document") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # Scalars YAML recognises but Python cannot build, e.g. the timestamp 2024-13-45.
        raise ExplainError(f"{source}: cannot read a value: {exc}") from None


def _describe_marked(exc: Any) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = exc.problem or exc.context or "invalid YAML"
    context = f" {exc.context}" if exc.context and exc.problem else ""
    return " ".join(f"{problem}{where}{context}".split())


def _line_column(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def check_node_graph(root: Any, *, source: str = "YAML", max_nodes: int = MAX_NODES,
                     max_depth: int = MAX_DEPTH) -> int:
    """Count the nodes ``root`` expands to, refusing too many, cycles and deep nesting.

    An aliased node is one shared object in the graph; it is counted at every use, as the
    constructed data would repeat it, but measured once (memoised), so a billion-node
    expansion is refused after visiting only the few nodes the file holds.

    Returns
    -------
    int
        The expanded node count.

    Raises
    ------
    ExplainError
        Over ``max_nodes``, nesting deeper than ``max_depth``, or a recursive alias.
    """
    import yaml

    sizes: dict[int, int] = {}  # id(node) -> expanded size, for finished nodes
    on_path: set[int] = set()
    # Iterative depth-first walk: deep documents must not hit Python's recursion limit here.
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > max_nodes:
                raise _too_many(source, node, max_nodes)
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ExplainError(f"{source}: a recursive alias{_where(node)} makes the document infinite; remove it")
        if len(on_path) >= max_depth:
            raise ExplainError(f"{source}: nesting deeper than {max_depth} levels{_where(node)}; flatten the document")
        if not isinstance(node, yaml.CollectionNode):
            sizes[key] = 1
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _where(node: Any) -> str:
    mark = getattr(node, "start_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _too_many(source: str, node: Any, max_nodes: int) -> ExplainError:
    return ExplainError(
        f"{source}: expands to more than {max_nodes:,} nodes{_where(node)} (aliases repeat what they "
        f"point to: a YAML bomb?); write the values out or reduce the aliases"
    )
