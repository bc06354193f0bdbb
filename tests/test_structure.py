"""The shape of the package: no import cycle between rella_hf modules, no module over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rella_hf"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Edges module -> rella_hf module for every import statement, at any depth (lazy imports included)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            edges |= {target for target in targets if target in modules and target != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_sees_relative_and_lazy_imports():
    graph = import_graph()
    assert "rella_hf.builders" in graph["rella_hf.loading"]  # a lazy import inside a function
    assert "rella_hf.hub.naming" in graph["rella_hf.hub.datasets"]  # a relative import
    assert "rella_hf.errors" in graph["rella_hf.hub.naming"]


def test_no_import_cycle_in_rella_hf():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_builders_and_hub_do_not_import_each_other_for_dispatch():
    graph = import_graph()
    builders = {name for name in graph if name.startswith("rella_hf.builders")}
    assert not any(target.startswith("rella_hf.hub") for name in builders for target in graph[name])


def test_no_module_over_600_lines():
    long = {str(path.relative_to(PACKAGE.parent)): lines for path in _modules().values()
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_slow_marker_is_registered_strictly_and_documented():
    import configparser

    setup = configparser.ConfigParser()
    setup.read(PACKAGE.parent / "setup.cfg")
    pytest_section = setup["tool:pytest"]
    assert "--strict-markers" in pytest_section["addopts"].split()
    assert any(line.strip().startswith("slow:") for line in pytest_section["markers"].splitlines())
    assert '-m "not slow"' in (PACKAGE.parent / "README.md").read_text()

