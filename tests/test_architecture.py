"""The package's floors, read from its import graph (docs/architecture.md draws them).

Every module of kubepki belongs to a floor; a module may import its own package and
any lower floor, never a higher one, and the runtime import graph (imports inside
functions included, ``if TYPE_CHECKING:`` blocks excluded) has no cycle. Packages keep
their implementation modules private: another package imports their public names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import kubepki

PACKAGE = Path(kubepki.__file__).parent

#: floor of each top-level part of kubepki (a module or a package)
FLOORS: dict[str, int] = {
    "_version": 0, "_lazy": 0, "errors": 0, "_crash": 0, "_report": 0,
    "versions": 1, "_clock": 1, "_args": 1,
    "catalog": 2,
    "pki": 3,
    "node": 4,
    "inspection": 5,
    "backups": 6, "objects": 6,
    "renewal": 7, "restarts": 7, "permissions": 7,
    "metrics": 8, "testing": 8, "autorenew": 8,
    "cluster": 9,
    "cli": 10,
    "__main__": 11, "__init__": 11,
}
GENERATED = "_cri_api"
#: private top-level modules every package may import (the shared helpers)
SHARED = {"_version", "_lazy", "_clock", "_crash", "_report", "_args"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out[name] = path
    return out


MODULES = _modules()


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(module: str) -> Iterator[tuple[str, bool]]:
    """(imported kubepki module, type-only?) for every import statement of *module*."""
    tree = ast.parse(MODULES[module].read_text())
    typing_only = _type_checking_lines(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from kubepki.x import y": y may be a module of its own
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                       for a in node.names]
        else:
            continue
        for target in targets:
            if target == "kubepki" or target.startswith("kubepki."):
                yield target, node.lineno in typing_only


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _package(module: str) -> str:
    """The package a module belongs to (restarts.methods is a package of its own)."""
    parts = module.split(".")[1:]
    if MODULES[module].name == "__init__.py":
        return ".".join(parts)
    return ".".join(parts[:-1])


def _edges() -> Iterator[tuple[str, str, bool]]:
    for module in MODULES:
        if GENERATED in module:
            continue
        for target, typing_only in _imports(module):
            yield module, target, typing_only


def test_every_part_has_a_floor() -> None:
    """A new module or package must be placed on a floor (and in docs/architecture.md)."""
    assert {_part(m) for m in MODULES} <= set(FLOORS)
    assert {_part(m) for m in MODULES} >= set(FLOORS) - {"__init__"}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if GENERATED not in m))
def test_no_module_imports_a_higher_floor(module: str) -> None:
    """Imports go down (or sideways inside one package), type-only imports included."""
    if module == "kubepki":
        return  # the top-level re-exports everything lazily
    upward = [target for target, _ in _imports(module) if target != "kubepki" and _upward(module, target)]
    assert upward == []


def _upward(module: str, target: str) -> bool:
    """Does *module* importing *target* break the floors?"""
    return _part(target) != _part(module) and FLOORS[_part(target)] >= FLOORS[_part(module)]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if GENERATED not in m))
def test_other_packages_import_public_names_only(module: str) -> None:
    """An implementation module (``_name``) is imported only from inside its own package."""
    for target, _ in _imports(module):
        private = [i for i, part in enumerate(target.split(".")) if part.startswith("_") and part != "__main__"]
        if not private or target.split(".")[private[0]] in SHARED:
            continue
        owner = ".".join(target.split(".")[1:private[0]])
        assert _package(module) == owner or _package(module).startswith(owner + "."), (
            f"{module} imports the private module {target}")


def test_runtime_import_graph_has_no_cycle() -> None:  # noqa: C901  -- Tarjan's algorithm, kept whole to read as the textbook one
    """No import cycle, counting imports inside functions (the lazy ones) too."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, target, typing_only in _edges():
        if typing_only or module.endswith("__init__") or MODULES[module].name == "__init__.py":
            continue
        if target in MODULES and MODULES[target].name == "__init__.py":
            continue  # a package's __init__ only names its modules (kubepki._lazy)
        if target in graph:
            graph[module].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    assert cycles == []


@pytest.mark.parametrize(("module", "target", "upward"), [
    ("kubepki.catalog", "kubepki.node._node", True),
    ("kubepki.renewal._renewal", "kubepki.restarts", True),  # same floor, other package
    ("kubepki.pki._issuing", "kubepki.cli._common", True),
    ("kubepki.node._node", "kubepki.catalog", False),
    ("kubepki.restarts._restarts", "kubepki.restarts._observe", False),
])
def test_the_floor_rule(module: str, target: str, upward: bool) -> None:
    """Negative control beside the real graph: the rule rejects upward and sideways imports."""
    assert _upward(module, target) is upward


def test_docker_is_imported_only_by_the_docker_method() -> None:
    """The ``docker`` SDK stays an optional import of one module."""
    users = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "docker" or n.startswith("docker.") for n in names):
                users.append(module)
    assert set(users) <= {"kubepki.restarts.methods._docker"}
