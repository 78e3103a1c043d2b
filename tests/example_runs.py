"""Which examples a test runs: the tests of tests/examples call `example_env.run("NAME")` or `.popen("NAME")`.

Shared by the examples' layout test and the docs test (an excerpt must come from an example that runs)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

TESTS = Path(__file__).resolve().parent


@functools.cache
def examples_run_by_tests() -> frozenset[str]:
    """The example folder names passed as a literal to `.run(...)` / `.popen(...)` in tests/examples."""
    names = set()
    for path in (TESTS / "examples").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("run", "popen")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
    return frozenset(names)
