"""The package's layering: no import cycles, no module reaching into another's privates.

Every import counts, at module level or inside a function (a function-local import hides
a cycle from Python, not from a reader); only ``if TYPE_CHECKING:`` blocks are left out,
as they never run. Edges point at modules (``from patchmap.x import y`` is an edge to
``patchmap.x.y`` when that is a module, else to ``patchmap.x``), and to the packages an
import runs on the way (``patchmap.x.y`` runs ``patchmap/x/__init__.py``).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import networkx as nx

SRC = Path(__file__).resolve().parents[1] / "src"


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _tree(path: Path) -> ast.Module:
    """A source file parsed once for the four tests (they only read the trees)."""
    return ast.parse(path.read_text(), str(path))


def _runtime_imports(tree: ast.AST):
    """Import nodes outside ``if TYPE_CHECKING:`` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            todo.append(child)


@functools.cache
def import_graph() -> tuple[nx.DiGraph, list[tuple[str, str, str]]]:
    """(module -> imported module graph, [(importer, module, private name)]), built once
    (the tests only read it)."""
    files = {_module(p): p for p in (SRC / "patchmap").rglob("*.py")}
    graph, private = nx.DiGraph(), []
    for name, path in files.items():
        graph.add_node(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_imports(_tree(path)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("patchmap"):
                        graph.add_edge(name, alias.name)
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("patchmap"):
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in files:
                    graph.add_edge(name, full)
                    continue
                graph.add_edge(name, target)
                if alias.name.startswith("_") and target != name:
                    private.append((name, target, alias.name))
    # importing patchmap.a.b runs patchmap/a/__init__.py first: an edge to every package
    # on the way that the importer is not inside (its own packages are already running)
    packages = {n for n in files if files[n].name == "__init__.py"}
    for importer, target in list(graph.edges):
        parts = target.split(".")
        for i in range(2, len(parts)):
            package = ".".join(parts[:i])
            if package in packages and not importer.startswith(package + "."):
                graph.add_edge(importer, package)
    graph.remove_edges_from(nx.selfloop_edges(graph))
    return graph, private


def test_graph_sees_the_package():
    graph, _ = import_graph()
    assert {"patchmap.cli", "patchmap.pipeline", "patchmap.partition.estimator"} <= set(graph)
    assert graph.has_edge("patchmap.cli", "patchmap.pipeline")  # function-local imports count
    assert graph.has_edge("patchmap.distributed", "patchmap.layers")


def test_no_import_cycles():
    graph, _ = import_graph()
    cycles = sorted(nx.simple_cycles(graph), key=len)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join([*c, c[0]]) for c in cycles[:10])


def test_no_private_names_across_modules():
    _, private = import_graph()
    assert not private, private


def _is_text(node: ast.AST) -> bool:
    """A string literal, an f-string, or text glued together from them."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.BinOp) and (_is_text(node.left) or _is_text(node.right))


def test_notes_are_typed():
    """Every note the package adds to a ``notes`` list is a Note (code + message + data) or
    comes from a function, never bare text that later code would have to parse."""
    bare = []
    for path in (SRC / "patchmap").rglob("*.py"):
        for node in ast.walk(_tree(path)):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("append", "insert")
                and "notes" in ast.unparse(node.func.value)
            ):
                continue
            if node.args and _is_text(node.args[-1]):
                bare.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not bare, bare
