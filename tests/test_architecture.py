"""The house's shape, checked: no import cycles, no private names across modules, short modules.

The import graph is read from the source (every ``import``/``from … import`` inside
``explain_cli``, deferred imports included: a cycle through a function-level import is still a
cycle a reader must hold in their head).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "explain_cli"
MAX_LINES = 450
#: Modules allowed past MAX_LINES; each must say why in its docstring (checked below).
LONG_MODULE_MARK = "longer than 450 lines"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, imported name or None)} within explain_cli."""
    graph: dict[str, set[tuple[str, str | None]]] = {}
    for name, path in modules.items():
        edges: set[tuple[str, str | None]] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update((a.name, None) for a in node.names if a.name.startswith("explain_cli"))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, node, path.name == "__init__.py")
                if not target.startswith("explain_cli"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.add((sub, None) if sub in modules else (target, alias.name))
        graph[name] = edges
    return graph


def _owner(module: str, modules: dict[str, Path]) -> str:
    """The module a dotted import lands in (``explain_cli.engines.base`` or its package)."""
    while module not in modules and "." in module:
        module = module.rsplit(".", 1)[0]
    return module


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {m: {_owner(t, modules) for t, _ in edges} - {m} for m, edges in _imports(modules).items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_names_across_modules() -> None:
    modules = _modules()
    crossings = sorted(
        f"{m} imports {name} from {target}"
        for m, edges in _imports(modules).items()
        for target, name in edges
        if name and name.startswith("_") and not name.startswith("__") and _owner(target, modules) != m
    )
    assert not crossings, "\n".join(crossings)


def test_modules_are_short_or_say_why() -> None:
    too_long = []
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and LONG_MODULE_MARK not in doc:
            too_long.append(f"{name}: {lines} lines")
    assert not too_long, "modules over 450 lines without a reason in their docstring: " + ", ".join(too_long)


def test_test_modules_import_helpers_not_each_other() -> None:
    """Shared test code lives in tests/helpers.py, conftest.py or oracles.py, never in a test module."""
    crossings = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            crossings += [f"{path.name} imports {n}" for n in names if n.split(".")[-1].startswith("test_")]
    assert not crossings, "\n".join(crossings)
