"""Repository layout rules that the test runner and the layering rely on."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# SPEC §5: each layer imports only from the layers below it (its own included).
LAYERS = {
    "model": 1,
    "rendering": 2,
    "transport": 3,
    "scheduler": 4,
    "packaging": 5,
    "api": 6,
    "experiment": 7,
    "experimental": 7,
    "contrib": 7,
    "cli": 8,
}
MODEL_MODULES = {
    "config",
    "ssh_config",
    "resources",
    "executors",
    "executables",
    "dependencies",
    "job_ids",
    "status",
    "errors",
    "types",
    "text_rules",
}


def test_test_module_basenames_are_unique() -> None:
    # The tests folders have no __init__.py (pytest's prepend import mode): two test modules with one
    # basename would make collection fail.
    names = collections.Counter(p.name for p in (REPO / "tests").rglob("*.py") if p.name != "conftest.py")
    assert [name for name, count in names.items() if count > 1] == []


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "xm_slurm" or len(parts) < 2:
        return None
    if parts[1] in MODEL_MODULES:
        return 1
    return LAYERS.get(parts[1])


def test_layers_import_only_from_below() -> None:
    offences = []
    for path in (REPO / "xm_slurm").rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        own = _layer(module)
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                layer = _layer(target)
                if layer is not None and layer > own:
                    offences.append(f"{module} (layer {own}) imports {target} (layer {layer})")
    assert offences == []
