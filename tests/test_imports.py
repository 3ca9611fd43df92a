"""The project's modules import one another without a cycle: each can be imported first, on
its own, whatever order a user or a test picks. Checked on the source with ast, relative
imports resolved (tests/test_layering.py holds the resolver and the layering rules)."""

from __future__ import annotations

import itertools

from tests.test_layering import MODULES, ROOT, imports_of


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {project module it imports: first line}. Every import statement counts,
    at module level or inside a function (a deferred import still closes a cycle the moment it
    runs), except those under `if TYPE_CHECKING:`, which never run. Importing a.b.c from
    module m also runs the packages a, a.b that m is not itself inside: edges to them too."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in MODULES.items():
        edges = graph.setdefault(name, {})
        for line, module in imports_of(path, at_run_time=True):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):
                target = ".".join(parts[:depth])
                inside = name == target or name.startswith(target + ".")
                if target in MODULES and target != name and not inside:
                    edges.setdefault(target, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm),
    each as one cycle through its first module, found by a breadth-first search."""
    return [_cycle_through(graph, component) for component in sorted(_components(graph))]


def _components(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycle_through(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle from the component's first module back to it, inside the component."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt == start:
                    return [*paths[node], start]
                if nxt in members and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle in the component {component}")


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    steps = [
        f"  {MODULES[a].relative_to(ROOT)}:{graph[a][b]} imports {b}"
        for a, b in itertools.pairwise(cycle)
    ]
    return " -> ".join(cycle) + "\n" + "\n".join(steps)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def test_every_import_is_seen() -> None:
    graph = import_graph()
    assert "imcc.frontends.onnx.converters" in graph["imcc.frontends.onnx.importer"]  # relative
    assert "imcc.tools.demo" in graph["imcc.cli"]  # inside a function
    assert "imcc.isa.target" not in graph["imcc.tools.demo"]  # under TYPE_CHECKING only


def test_no_import_cycle_among_the_project_modules() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "\n".join(describe(graph, cycle) for cycle in found)
