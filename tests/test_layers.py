"""The package's layers, read from its import graph (every import, including those inside
functions): a module imports only its own layer and the layers below it, and no two modules
import each other, directly or through others."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mcinr_bids"

#: bottom first; a module may import its own layer and any earlier one
LAYERS = ("core", "methods", "quality", "pipeline", "config", "reports", "interfaces",
          "workflows", "cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (a name imported from a package counts as
    its submodule when there is one, else as the package)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mcinr_bids"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mcinr_bids"):
                continue
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules
                          else target)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def layer(module: str) -> int | None:
    """Index of ``module``'s layer in :data:`LAYERS`; None for the package root (its version)."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return LAYERS.index(parts[1])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_every_module_sits_in_a_named_layer():
    strays = [m for m in import_graph() if len(m.split(".")) > 1
              and m.split(".")[1] not in LAYERS]
    assert strays == [], f"modules outside the layers {LAYERS}: {strays}"


def test_no_module_imports_a_higher_layer():
    upward = [f"{module} -> {other}" for module, imports in import_graph().items()
              for other in imports
              if layer(other) is not None and layer(module) is not None
              and layer(other) > layer(module)]
    assert upward == []


def test_the_package_root_holds_only_the_version():
    root = import_graph()["mcinr_bids"]
    assert root == set()


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_checks_catch_a_cycle_and_an_upward_import():
    graph = {"mcinr_bids.core.a": {"mcinr_bids.core.b"},
             "mcinr_bids.core.b": {"mcinr_bids.core.c"},
             "mcinr_bids.core.c": {"mcinr_bids.core.a"}, "mcinr_bids.cli.d": set()}
    assert cycles(graph) == [["mcinr_bids.core.a", "mcinr_bids.core.b", "mcinr_bids.core.c"]]
    graph["mcinr_bids.core.c"] = set()
    assert cycles(graph) == []
    assert layer("mcinr_bids.cli.d") > layer("mcinr_bids.core.a")


@pytest.mark.parametrize("stack", ["nipype", "bids", "niworkflows"])
def test_lower_layers_never_import_the_workflow_stack(stack):
    """core, methods and quality run on arrays and files, without nipype or pybids."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        parts = module_name(path).split(".")
        if len(parts) < 2 or parts[1] not in ("core", "methods", "quality"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == stack for n in names):
                offenders.append(module_name(path))
    assert offenders == []
