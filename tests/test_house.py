"""The house stays walkable: short files, short functions, and no import cycles between modules.

A newcomer reads one module at a time; the limits keep each one readable in a sitting, and the
cycle check keeps the layers a graph that can be read bottom-up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

# Packages held to the size limits, and whose modules' imports must form no cycle, between them too.
CHECKED = ("models", "pipeline", "posemask")
CYCLE_CHECKED = CHECKED
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def python_files(packages: tuple[str, ...]) -> list[Path]:
    return sorted(path for package in packages for path in (REPO / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def functions(tree: ast.AST) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its qualified name (Class.method, outer.inner)."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield prefix + child.name, child
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


@pytest.mark.parametrize("path", python_files(CHECKED), ids=lambda path: str(path.relative_to(REPO)))
def test_files_and_functions_stay_short(path: Path) -> None:
    text = path.read_text()
    name = path.relative_to(REPO)
    lines = text.count("\n")
    problems = [f"{name} has {lines} lines (at most {MAX_FILE_LINES})"] if lines > MAX_FILE_LINES else []
    problems += [
        f"{name}: {qualname} has {node.end_lineno - node.lineno + 1} lines, line {node.lineno} "
        f"(at most {MAX_FUNCTION_LINES})"
        for qualname, node in functions(ast.parse(text, str(path)))
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not problems, "\n".join(problems)


def imports_of(source: str, own: str, is_package: bool, modules: set[str]) -> set[str]:
    """The project modules a module's source imports, at any depth (function level and
    TYPE_CHECKING included), each resolved to a module file: ``from pipeline import config`` is
    pipeline.config, ``from pipeline.x import name`` is pipeline.x, relative imports are resolved
    against the module's package."""
    package = own if is_package else own.rpartition(".")[0]
    found: set[str] = set()

    def resolve(name: str) -> None:
        # the longest prefix that is a project module: "pipeline.x.name" -> "pipeline.x"
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                if submodule in modules:  # from pipeline import config -> pipeline.config
                    found.add(submodule)
                else:
                    resolve(origin)
    found.discard(own)
    return found


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports, over CYCLE_CHECKED."""
    paths = python_files(CYCLE_CHECKED)
    modules = {module_name(path) for path in paths}
    return {
        module_name(path): imports_of(path.read_text(), module_name(path), path.name == "__init__.py", modules)
        for path in paths
    }


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components of the graph, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph[step]))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle inside a component, as a path that returns to its start."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for step in sorted(graph[node] & members):
            if step == start:
                return paths[node] + [start]
            if step not in paths:
                paths[step] = paths[node] + [step]
                queue.append(step)
    return component


def test_strongly_connected_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(strongly_connected(graph)) == [["a", "b", "c"], ["d"]]
    assert a_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_imports_resolve_to_module_files() -> None:
    modules = {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "other"}
    source = """
import other
from pkg import a, NAME
from pkg.b import thing
from . import c
from .. import b
from ..sub.c import f

def late():
    from pkg.sub import c
"""
    assert imports_of(source, "pkg.sub.d", False, modules) == {"other", "pkg.a", "pkg", "pkg.b", "pkg.sub.c"}
    assert imports_of("from . import a\nfrom .sub import c", "pkg", True, modules) == {"pkg.a", "pkg.sub.c"}
    graph = import_graph()
    assert "pipeline.settings" in graph["pipeline"] and "pipeline" not in graph["pipeline.generate"]


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = [component for component in strongly_connected(graph) if len(component) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(a_cycle(graph, c)) for c in cycles)
