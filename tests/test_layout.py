"""Repository layout rules that the test runner and the layering rely on."""

from __future__ import annotations

import ast
import collections
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "xm_slurm"
MAX_MODULE_LINES = 450

# Layers, lowest first: a module imports only from its own layer or the layers below, and no two modules
# import each other, directly or round a loop. Every import counts wherever it is written: at the top, inside
# a function (deferred), under `if TYPE_CHECKING:`, relative, or `importlib.import_module("literal")`.
# Each entry names the first part after `xm_slurm.` (a top-level module or a subpackage).
LAYERS: tuple[frozenset[str], ...] = (
    # model: pure data and validation, no I/O.
    frozenset(
        {
            "config",
            "ssh_config",
            "resources",
            "resource_types",
            "topology",
            "mounts",
            "executors",
            "executables",
            "dependencies",
            "job_ids",
            "status",
            "errors",
            "types",
            "job_blocks",
            "text_rules",
            "version",
            "paths",
        }
    ),
    frozenset({"rendering"}),
    frozenset({"transport"}),
    frozenset({"scheduler"}),
    frozenset({"packaging"}),
    # packageables builds xm.Packageable specs from the user's project: it renders packaging's Dockerfile
    # templates, writes the generated Dockerfile into the project folder and checks image references with
    # packaging's parser. That is I/O and packaging knowledge, so it is not model; nothing in packaging needs
    # it, so it sits just above packaging (and below everything that hands packageables to `package`).
    frozenset({"packageables"}),
    frozenset({"api"}),
    frozenset({"experiment", "experimental", "contrib"}),
    frozenset({"cli"}),
)
# The root package `xm_slurm/__init__.py` re-exports (lazily) names from every layer up to the experiment,
# so importing it can load anything: it is the top, and no module inside the package may import it.
ROOT_LAYER = len(LAYERS)

# Offences in modules other work is rewriting right now (the experiment layer and the store client of issue
# 14; the SSH transport of the hardening issue), listed so that the rest of the package is held to the rules
# meanwhile. Each entry must still be true: the tests below fail once it is fixed, until it is removed from
# here. Nothing may be added.
PENDING_OFFENCES: frozenset[str] = frozenset()
PENDING_LONG_MODULES: frozenset[str] = frozenset()


def test_test_module_basenames_are_unique() -> None:
    # The tests folders have no __init__.py (pytest's prepend import mode): two test modules with one
    # basename would make collection fail.
    names = collections.Counter(p.name for p in (REPO / "tests").rglob("*.py") if p.name != "conftest.py")
    assert [name for name, count in names.items() if count > 1] == []


def package_modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` (a package is named by its __init__.py)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The longest package module `name` starts with (`a.b.C` names module a.b), None outside the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: Mapping[str, Path]) -> Iterator[str | None]:
    """The module each import in `module` loads, wherever it is written; relative imports made absolute."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (_resolve(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # `from pkg import name` loads the submodule pkg.name if there is one, else pkg itself.
            for alias in node.names:
                yield _resolve(f"{base}.{alias.name}", modules)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield _resolve(node.args[0].value, modules)


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the other modules of the package it imports."""
    modules = package_modules(package)
    return {
        module: {target for target in _imports(module, path, modules) if target not in (None, module)}
        for module, path in modules.items()
    }


def layer(module: str, root: str = "xm_slurm") -> int | None:
    """The layer of a package module (ROOT_LAYER for the root package), None if it is in no layer."""
    parts = module.split(".")
    if parts[0] != root:
        return None
    if len(parts) == 1:
        return ROOT_LAYER
    return next((index for index, names in enumerate(LAYERS) if parts[1] in names), None)


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
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
                    if len(component) > 1:
                        components.append(sorted(component))
    return sorted(components)


def architecture_offences(package: Path) -> list[str]:
    """Every module in no layer, upward import and import cycle in `package` (a copy of xm_slurm)."""
    graph = import_graph(package)
    root = package.name
    offences = []
    for module in sorted(graph):
        own = layer(module, root)
        if own is None:
            offences.append(f"{module} is in no layer: add it to LAYERS in tests/test_layout.py")
            continue
        for target in sorted(graph[module]):
            target_layer = layer(target, root)
            if target_layer is not None and target_layer > own:
                offences.append(f"{module} (layer {own}) imports {target} (layer {target_layer})")
    offences += [f"import cycle: {' <-> '.join(component)}" for component in _cycles(graph)]
    return offences


def test_layers_import_only_from_below_and_never_in_a_cycle() -> None:
    offences = set(architecture_offences(PACKAGE))
    assert sorted(offences - PENDING_OFFENCES) == []
    assert sorted(PENDING_OFFENCES - offences) == [], "fixed: remove it from PENDING_OFFENCES"


def test_architecture_check_reports_a_planted_upward_import_and_cycle(tmp_path: Path) -> None:
    copy = tmp_path / "xm_slurm"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = set(architecture_offences(copy))
    # An upward import deferred into a function of a model module...
    with (copy / "executors.py").open("a") as file:
        file.write("\n\ndef _planted() -> None:\n    import xm_slurm.cli  # noqa\n")
    # ...a cycle between two scheduler modules that do not import each other: one side deferred, the
    # other relative and only for the type checker...
    with (copy / "scheduler" / "local_state.py").open("a") as file:
        file.write("\n\ndef _planted() -> None:\n    from xm_slurm.scheduler import logs  # noqa\n")
    with (copy / "scheduler" / "logs.py").open("a") as file:
        file.write("\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from . import local_state\n")
    # ...and a module nobody placed in a layer.
    (copy / "stray.py").write_text("")

    planted = sorted(set(architecture_offences(copy)) - before)

    assert planted == [
        "import cycle: xm_slurm.scheduler.local_state <-> xm_slurm.scheduler.logs",
        "xm_slurm.executors (layer 0) imports xm_slurm.cli (layer 8)",
        "xm_slurm.stray is in no layer: add it to LAYERS in tests/test_layout.py",
    ]


def test_modules_are_at_most_about_450_lines() -> None:
    long = {
        str(path.relative_to(REPO))
        for path in PACKAGE.rglob("*.py")
        if len(path.read_text().splitlines()) > MAX_MODULE_LINES
    }
    assert sorted(long - PENDING_LONG_MODULES) == []
    assert sorted(PENDING_LONG_MODULES - long) == [], "split: remove it from PENDING_LONG_MODULES"
