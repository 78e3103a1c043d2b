"""Entry points of the Python packageables, as in xmanager-slurm 0.4.x: a command list is the interpreter's
argv (`python main.py --fast ARGS`), a module runs as `python -m m ARGS`; a shell command line is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from xmanager import xm

import xm_slurm.packageables as pk
from xm_slurm.errors import ValidationError
from xm_slurm.executors import SlurmSpec

SPEC = SlurmSpec(tag="localhost:5000/xm-test-entrypoints/x:latest")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n')
    (root / "uv.lock").write_text("version = 1\n")
    (root / "environment.yml").write_text("name: base\n")
    return root


def _entrypoint(packageable: xm.Packageable) -> list[str]:
    text = Path(packageable.executable_spec.dockerfile).read_text()  # type: ignore[attr-defined]
    [line] = [line for line in text.splitlines() if line.startswith("ENTRYPOINT ")]
    return list(json.loads(line.removeprefix("ENTRYPOINT ")))


@pytest.mark.parametrize(
    ("make", "python"),
    [
        (pk.python_container, ["python3"]),
        (pk.uv_container, ["python"]),
        (pk.mamba_container, ["/usr/local/bin/_entrypoint.sh", "python"]),
    ],
)
def test_command_list_is_the_interpreters_argv(make, python: list[str], project: Path) -> None:  # type: ignore[no-untyped-def]
    def entry(ep: xm.ModuleName | xm.CommandList) -> list[str]:
        return _entrypoint(make(SPEC, ep, context=project))

    assert entry(xm.CommandList(["main.py"])) == [*python, "main.py"]
    assert entry(xm.CommandList(["main.py", "--fast"])) == [*python, "main.py", "--fast"]
    assert entry(xm.ModuleName("pkg.train")) == [*python, "-m", "pkg.train"]
    # Arguments after the script are words of their own, spaces and all; so is python's own -c code.
    assert entry(xm.CommandList(["-u", "main.py", "--name=a b", "x y"])) == [
        *python,
        *["-u", "main.py", "--name=a b", "x y"],
    ]
    assert entry(xm.CommandList(["-c", "import sys; print(sys.argv)", "a"])) == [
        *python,
        *["-c", "import sys; print(sys.argv)", "a"],
    ]


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        (
            ["cd sub && ./run"],
            r"'cd sub && ./run' .* reads as a shell command line.*put shell steps in a script",
        ),
        (["python3 hello.py"], r"did you mean xm\.CommandList\(\['hello\.py'\]\)"),
        (["main.py --fast"], r"did you mean xm\.CommandList\(\['main\.py', '--fast'\]\)"),
        (["echo first", "python3 hello.py"], r"'echo first' .* shell command line"),
        (["main.py", "a && b"], r"'a && b' .* shell command line"),
        (["main.py", "x\ny"], r"shell command line"),
        (["run.py;rm -rf x"], r"shell command line"),
        (["$HOME/main.py"], r"shell command line"),
        ([], r"CommandList\(\[\]\) is empty"),
        ([""], r"holds ''; each element is one non-empty argv word"),
    ],
)
def test_shell_command_lines_are_refused_with_the_argv_form(
    commands: list[str], message: str, project: Path
) -> None:
    for make in (pk.python_container, pk.uv_container, pk.mamba_container):
        with pytest.raises(ValidationError, match=message):
            make(SPEC, xm.CommandList(commands), context=project)


def test_module_and_other_entrypoints(project: Path) -> None:
    for bad in ("two words", "", "m-1", "a..b", "-m x"):
        with pytest.raises(ValidationError, match=rf"ModuleName\({bad!r}\) is not a module name"):
            pk.python_container(SPEC, xm.ModuleName(bad), context=project)
    with pytest.raises(ValidationError, match=r"neither xm\.ModuleName\('module'\) nor xm\.CommandList"):
        pk.python_container(SPEC, "main.py", context=project)  # type: ignore[arg-type]
