"""Each example is a small project whose launch.py says, at its top, the one command that runs it; each is run
by a test of tests/examples (conda: only its Dockerfile is checked, see test_conda.py)."""

from __future__ import annotations

import ast

import pytest
from example_runs import examples_run_by_tests
from examples_helpers import EXAMPLES, REPO

EXAMPLE_NAMES = sorted(p.parent.name for p in EXAMPLES.glob("*/launch.py"))
NOT_RUN_HERE = {"conda": "no micromamba image or conda channel is reachable offline (test_conda.py)"}


def test_the_expected_examples_exist() -> None:
    expected = {
        "uv",
        "pip",
        "conda",
        "custom-dockerfile",
        "job-array-sweep",
        "job-dependencies",
        "job-group",
        "metadata",
        "parameter-controller",
        "preemption",
    }
    assert expected <= set(EXAMPLE_NAMES)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_launch_script_starts_with_its_command(name: str) -> None:
    docstring = ast.get_docstring(ast.parse((EXAMPLES / name / "launch.py").read_text()))
    assert docstring, f"examples/{name}/launch.py has no docstring"
    head = "\n".join(docstring.splitlines()[:6])
    assert f"uv run python examples/{name}/launch.py" in head, (
        f"examples/{name}/launch.py: its first lines must give the command that runs it"
    )


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_is_run_by_a_test(name: str) -> None:
    if name == "demo":
        # scripts/demo runs it; docs/getting-started.md's `bash scripts/demo` block is run by tests/docs.
        assert "examples/demo/launch.py" in (REPO / "scripts" / "demo").read_text()
        return
    if name in NOT_RUN_HERE:
        pytest.skip(NOT_RUN_HERE[name])
    assert name in examples_run_by_tests(), (
        f"no test of tests/examples runs examples/{name} (example_env.run({name!r}))"
    )
