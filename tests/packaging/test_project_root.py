"""The build context: `context=`, else the project root found from the launch script (0.4.x's rule)."""

from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path

import pytest
from xmanager import xm

import xm_slurm.packageables as pk
from xm_slurm.errors import ValidationError
from xm_slurm.executables import Dockerfile
from xm_slurm.executors import SlurmSpec
from xm_slurm.packaging import project as project_rules
from xm_slurm.packaging.project import PROJECT_MARKERS, launch_folder, project_root

SPEC = SlurmSpec(tag="localhost:5000/xm-test-context/x:latest")


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """proj/{pyproject.toml, requirements.txt, Dockerfile, main.py}, launched as proj/scripts/launch.py."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "proj"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "launch.py").write_text("")
    (root / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n')
    (root / "requirements.txt").write_text("numpy==2.0\n")
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "environment.yml").write_text("name: base\n")
    monkeypatch.setattr(sys, "argv", [str(root / "scripts" / "launch.py")])
    return root


def _spec(packageable: xm.Packageable) -> Dockerfile:
    spec = packageable.executable_spec
    assert isinstance(spec, Dockerfile)
    return spec


def test_default_context_is_the_project_root(proj: Path) -> None:
    python = _spec(pk.python_container(SPEC, xm.CommandList(["main.py"])))
    assert python.context == proj
    # requirements, environment and dockerfile default to files of that context.
    assert "COPY requirements.txt /tmp/xm-slurm/requirements.txt" in Path(python.dockerfile).read_text()
    assert _spec(pk.mamba_container(SPEC, xm.ModuleName("m"))).context == proj
    docker = _spec(pk.docker_container(SPEC))
    assert (docker.context, docker.dockerfile) == (proj, proj / "Dockerfile")
    # A relative dockerfile is a file of the context (as in docker compose and bake), wherever the script is.
    (proj / "docker").mkdir()
    gpu = _spec(pk.docker_container(SPEC, dockerfile=Path("docker/Dockerfile.gpu")))
    assert (gpu.context, gpu.dockerfile) == (proj, proj / "docker" / "Dockerfile.gpu")
    # A relative context is taken from the launch script's folder, as XManager does.
    assert _spec(pk.docker_container(SPEC, context="..")).context == proj
    assert _spec(pk.docker_container(SPEC, context=proj)).context == proj


@pytest.mark.parametrize("marker", PROJECT_MARKERS)
def test_each_marker_makes_a_project_root(marker: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    if marker == ".venv":
        (root / marker).mkdir()
    else:
        (root / marker).write_text("")
    assert project_root(root / "a" / "b") == root
    assert project_root(root) == root  # the script's own folder counts


def test_launch_script_rule(proj: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert launch_folder() == proj / "scripts"
    # argv[0] not a .py file (a console script, `python -m`): the __main__ module's file.
    main = types.ModuleType("__main__")
    main.__file__ = str(proj / "scripts" / "launch.py")
    monkeypatch.setattr(sys, "argv", ["/usr/bin/some-tool"])
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert launch_folder() == proj / "scripts"
    # Neither (a notebook, `python -c`): the current folder.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.chdir(proj / "scripts")
    assert launch_folder() == proj / "scripts"
    assert project_root() == proj


def test_no_project_root_asks_for_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "launch.py").write_text("")
    monkeypatch.setattr(sys, "argv", [str(lone / "launch.py")])
    monkeypatch.setattr(project_rules, "PROJECT_MARKERS", ("no-such-marker-xm-test",))
    with pytest.raises(ValidationError, match=r"no project root found: .*lone.*pass context=pathlib\.Path"):
        pk.python_container(SPEC, xm.CommandList(["main.py"]))
    with pytest.raises(ValidationError, match="no project root found"):
        pk.docker_container(SPEC)


def test_missing_context_is_named(proj: Path) -> None:
    for make in (
        lambda c: pk.python_container(SPEC, xm.ModuleName("m"), context=c),
        lambda c: pk.uv_container(SPEC, xm.ModuleName("m"), context=c),
        lambda c: pk.docker_container(SPEC, context=c),
    ):
        with pytest.raises(ValidationError, match=r"build context '.*/proj/scripts/nope' is not a directory"):
            make("nope")
    with pytest.raises(ValidationError, match=r"context=3 must be a path"):
        pk.docker_container(SPEC, context=3)  # type: ignore[arg-type]


def test_path_is_the_deprecated_name_of_context(proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(project_rules, "_warned_path", False)
    with pytest.warns(
        DeprecationWarning, match=r"python_container\(path=\.\.\.\) is deprecated; pass context="
    ):
        old = pk.python_container(SPEC, xm.ModuleName("m"), path="..")
    assert _spec(old).context == proj
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        assert _spec(pk.python_container(SPEC, xm.ModuleName("m"), path=proj)).context == proj
    with pytest.raises(ValidationError, match="pass the build context once, as context="):
        pk.python_container(SPEC, xm.ModuleName("m"), path=proj, context=proj)


def test_unknown_keywords_stay_type_errors(proj: Path) -> None:
    with pytest.raises(TypeError, match="contxt"):
        pk.python_container(SPEC, xm.ModuleName("m"), contxt=proj)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="platforms"):
        pk.python_container(SPEC, xm.ModuleName("m"), platforms=["linux/amd64"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="extra_python_packages"):
        pk.docker_container(SPEC, extra_python_packages=["x"])  # type: ignore[call-arg]
