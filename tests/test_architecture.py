"""Every boundary of the house, read from the source with ast (nothing is imported):

- core (the domain) imports neither api nor worker, nor the client; the worker not the api;
- the client (client/mlft_client, its own distribution) imports nothing of the server, and its
  pyproject asks for httpx and at most one progress library (rich), the only two it imports
  when it loads;
- the api reaches the worker only through one small module, api/queue.py;
- no import circles among the project's modules.

Module names come from the file tree, so the tests keep holding when modules move.
"""

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIENT_ROOT = REPO_ROOT / "client"
SERVER_PACKAGES = ("api", "core", "worker", "migrations")
CLIENT_PACKAGE = "mlft_client"
# The one api module that may import the worker (its Celery app, task names, embedded worker).
API_QUEUE_MODULE = "api.queue"
# What the client may need at import time besides the standard library, and what it may import
# only inside a function or for type checking (its optional extras: YAML specs, the calculator).
CLIENT_REQUIREMENTS = {"httpx"}
CLIENT_PROGRESS_LIBRARIES = {"tqdm", "rich"}
CLIENT_LAZY_IMPORTS = {"yaml", "mace"}
# Import circles tolerated for now, each one strongly connected component; none is left. The
# test fails on a listed circle that is gone too, so the list cannot go stale.
KNOWN_CIRCLES: list[set[str]] = []


@dataclass(frozen=True)
class Import:
    """One import statement's target as an absolute dotted name; `names` for `from X import a`.
    `lazy`: inside a function or under `if TYPE_CHECKING:`, so not run when the module loads."""

    module: str
    names: tuple[str, ...]
    lazy: bool


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_under(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    return {
        module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }


SERVER_MODULES = modules_under(REPO_ROOT, SERVER_PACKAGES)
CLIENT_MODULES = modules_under(CLIENT_ROOT, (CLIENT_PACKAGE,))
PROJECT_MODULES = {**SERVER_MODULES, **CLIENT_MODULES}


def imports_of(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return list(_imports(tree.body, package, lazy=False))


def _imports(body: list[ast.stmt], package: str, *, lazy: bool) -> Iterator[Import]:
    for node in body:
        if isinstance(node, ast.Import):
            yield from (Import(alias.name, (), lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            yield Import(_absolute(node, package), names, lazy)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _imports(node.body, package, lazy=True)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _imports(node.body, package, lazy=True)
            yield from _imports(node.orelse, package, lazy=lazy)
        else:  # classes, try, with, loops, other ifs: run when the module loads
            for field in ("body", "orelse", "finalbody"):
                yield from _imports(getattr(node, field, []), package, lazy=lazy)
            for handler in getattr(node, "handlers", []):
                yield from _imports(handler.body, package, lazy=lazy)


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def project_targets(item: Import) -> set[str]:
    """The project modules an import names: `from core import e0s` is core.science.e0s, `import
    core.service.db` is core.service.db; names that are not modules (functions, classes) fall to
    their module."""
    targets = {f"{item.module}.{name}" for name in item.names} & PROJECT_MODULES.keys()
    if len(targets) < len(item.names) or not item.names:
        owner = _longest_project_prefix(item.module)
        if owner is not None:
            targets.add(owner)
    return targets


def _longest_project_prefix(dotted: str) -> str | None:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in PROJECT_MODULES:
            return ".".join(parts[:end])
    return None


def import_graph() -> dict[str, set[str]]:
    return {
        module: {
            target
            for item in imports_of(module, path)
            for target in project_targets(item)
            if target != module
        }
        for module, path in PROJECT_MODULES.items()
    }


def strongly_connected_components(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the graph is deep enough to matter for recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif successor not in index:
                index[successor] = low[successor] = len(index)
                stack.append(successor)
                on_stack.add(successor)
                work.append((successor, iter(sorted(graph.get(successor, ())))))
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
    return components


def offenders(modules: dict[str, Path], forbidden: set[str]) -> dict[str, list[str]]:
    """Module -> the forbidden top-level packages it imports (lazily or not)."""
    found = {
        module: sorted(
            {item.module for item in imports_of(module, path) if _top(item.module) in forbidden}
        )
        for module, path in modules.items()
    }
    return {module: names for module, names in found.items() if names}


def _top(dotted: str) -> str:
    return dotted.split(".")[0]


def test_the_module_tree_is_found() -> None:
    assert {"core", "api.app", "worker.tasks", API_QUEUE_MODULE} <= SERVER_MODULES.keys()
    assert {CLIENT_PACKAGE, f"{CLIENT_PACKAGE}.cli"} <= CLIENT_MODULES.keys()


def test_core_imports_neither_api_nor_worker_nor_the_client() -> None:
    core = {name: path for name, path in SERVER_MODULES.items() if _top(name) == "core"}

    assert offenders(core, {"api", "worker", CLIENT_PACKAGE}) == {}


def test_the_worker_imports_nothing_of_the_api() -> None:
    worker = {name: path for name, path in SERVER_MODULES.items() if _top(name) == "worker"}

    assert offenders(worker, {"api", CLIENT_PACKAGE}) == {}


def test_the_server_does_not_import_the_client() -> None:
    assert offenders(SERVER_MODULES, {CLIENT_PACKAGE}) == {}


def test_the_client_imports_nothing_of_the_server() -> None:
    assert offenders(CLIENT_MODULES, {*SERVER_PACKAGES, "bench", "tests"}) == {}


def client_dependencies() -> set[str]:
    project = tomllib.loads((CLIENT_ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(text).name.lower() for text in project["dependencies"]}


def test_the_client_needs_only_the_standard_library_httpx_and_its_progress_library() -> None:
    progress = client_dependencies() & CLIENT_PROGRESS_LIBRARIES
    allowed = {*sys.stdlib_module_names, CLIENT_PACKAGE, *CLIENT_REQUIREMENTS, *progress}
    eager, lazy = set(), set()
    for module, path in CLIENT_MODULES.items():
        for item in imports_of(module, path):
            (lazy if item.lazy else eager).add(_top(item.module))

    assert eager - allowed == set()
    assert lazy - allowed - CLIENT_LAZY_IMPORTS == set()


def test_the_client_distribution_asks_for_httpx_and_at_most_one_progress_library() -> None:
    project = tomllib.loads((CLIENT_ROOT / "pyproject.toml").read_text())["project"]
    required = client_dependencies()

    assert required >= CLIENT_REQUIREMENTS
    assert required - CLIENT_REQUIREMENTS <= CLIENT_PROGRESS_LIBRARIES
    assert len(required & CLIENT_PROGRESS_LIBRARIES) <= 1
    assert project["scripts"]["mlft"] == f"{CLIENT_PACKAGE}.cli:main"


def test_the_server_distribution_ships_its_packages_and_not_the_client() -> None:
    server = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    included = server["tool"]["setuptools"]["packages"]["find"]["include"]

    assert {pattern.rstrip("*") for pattern in included} == set(SERVER_PACKAGES)
    assert "mlft" not in server["project"]["scripts"]
    assert server["project"]["scripts"]["mlft-server"] == "api.__main__:main"


def test_the_api_reaches_the_worker_only_through_its_queue_module() -> None:
    api = {name: path for name, path in SERVER_MODULES.items() if _top(name) == "api"}

    assert set(offenders(api, {"worker"})) == {API_QUEUE_MODULE}


def test_no_import_circles_among_project_modules() -> None:
    circles = [
        component
        for component in strongly_connected_components(import_graph())
        if len(component) > 1
    ]

    unknown = [sorted(circle) for circle in circles if circle not in KNOWN_CIRCLES]
    broken = [sorted(circle) for circle in KNOWN_CIRCLES if circle not in circles]
    assert unknown == [], "new import circles"
    assert broken == [], "these circles are gone: remove them from KNOWN_CIRCLES"


def test_the_circle_finder_finds_a_circle_and_leaves_a_chain_alone() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}

    components = strongly_connected_components(graph)

    assert {"a", "b", "c"} in components
    assert sorted(len(component) for component in components) == [1, 1, 3]
