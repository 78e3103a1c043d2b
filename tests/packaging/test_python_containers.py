"""The generated Dockerfiles (python_container, uv_container) built for real and run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from packaging_helpers import RecordingRunner, podman_run, read_text, uv_binary, uv_lock
from xmanager import xm

import xm_slurm.packageables as pk
from xm_slurm.executables import Dockerfile, RemoteImage
from xm_slurm.executors import SlurmSpec
from xm_slurm.packaging import ImageBuilder, package_async

pytestmark = pytest.mark.cluster

MAIN = """\
import os, sys
print("hello from", __name__, sys.argv[1:], os.environ.get("XM_GREETING"))
print("prefix:", sys.prefix)
print("secret present:", os.path.exists("secret.txt"), "data present:", os.path.exists("data.txt"))
"""


def _project(root: Path, *, ignore: str | None = "secret.txt\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "hello.py").write_text(MAIN)
    (root / "data.txt").write_text("kept\n")
    (root / "secret.txt").write_text("must not be in the image\n")
    (root / "requirements.txt").write_text("# nothing to install\n\n")
    if ignore is not None:
        (root / ".dockerignore").write_text(ignore)
    return root


async def test_python_container_module_and_commands(
    local_cluster, builder: ImageBuilder, recorder: RecordingRunner, unique, tmp_path
) -> None:
    project = _project(tmp_path / "proj")
    spec = SlurmSpec(tag=f"{local_cluster.registry}/{unique}/py:latest")
    module = pk.python_container(
        spec, xm.ModuleName("hello"), context=project, base_image=local_cluster.python_image
    )
    commands = pk.python_container(
        SlurmSpec(tag=f"{local_cluster.registry}/{unique}/cmd:latest"),
        xm.CommandList(["-u", "hello.py", "--first"]),
        context=project,
        base_image=local_cluster.python_image,
    )
    assert isinstance(module.executable_spec, Dockerfile)
    generated = read_text(module.executable_spec.dockerfile)
    assert f"FROM {local_cluster.python_image}" in generated
    assert "pip install" not in generated  # comment-only requirements: nothing to install

    module_image, command_image = await package_async([module, commands], builder=builder)

    assert isinstance(module_image, RemoteImage) and isinstance(command_image, RemoteImage)
    assert module_image.workdir == "/workdir"
    assert module_image.entrypoint.to_list() == ["python3", "-m", "hello"]
    # The command list is python's arguments (0.4.x), not a shell script.
    assert command_image.entrypoint.to_list() == ["python3", "-u", "hello.py", "--first"]
    assert recorder.count("build") == 2
    out = podman_run(module_image.image, "--lr", "a b")
    assert "hello from __main__ ['--lr', 'a b'] None" in out
    # The project's own .dockerignore applied: secret.txt was left out, data.txt went in.
    assert "secret present: False data present: True" in out
    out = podman_run(command_image.image, "x y", "$HOME")
    assert "hello from __main__ ['--first', 'x y', '$HOME']" in out


def test_default_ignores_apply_without_a_dockerignore(tmp_path, isolated_env) -> None:
    project = _project(tmp_path / "proj", ignore=None)
    packageable = pk.python_container(
        SlurmSpec(tag="localhost:5000/x/y:latest"), xm.ModuleName("hello"), context=project
    )
    spec = packageable.executable_spec
    assert isinstance(spec, Dockerfile)
    ignore = Path(str(spec.dockerfile) + ".dockerignore")
    assert ".git" in ignore.read_text() and ".venv" in ignore.read_text()
    # Same project, same Dockerfile path: a second launch reuses it (and dedup sees the same build).
    again = pk.python_container(
        SlurmSpec(tag="localhost:5000/x/y:latest"), xm.ModuleName("hello"), context=project
    )
    assert again.executable_spec == spec


async def test_uv_container(local_cluster, builder: ImageBuilder, unique, tmp_path) -> None:
    uv = uv_binary()
    if uv is None:
        pytest.skip("no uv executable on this machine to build the local uv image from")
    # An image holding just /uv, in the local registry (no ghcr.io here); uv_container copies it in.
    uv_ctx = tmp_path / "uvimage"
    uv_ctx.mkdir()
    shutil.copy(uv, uv_ctx / "uv")
    (uv_ctx / "Dockerfile").write_text('FROM scratch\nCOPY uv /uv\nCMD ["/uv"]\n')
    uv_image_tag = f"{local_cluster.registry}/{unique}/uv:latest"
    [uv_image] = await package_async(
        [pk.docker_container(SlurmSpec(tag=uv_image_tag), context=uv_ctx)], builder=builder
    )
    assert isinstance(uv_image, RemoteImage)

    project = _project(tmp_path / "uvproj")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "hello"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
    )
    uv_lock(uv, project)
    packageable = pk.uv_container(
        SlurmSpec(tag=f"{local_cluster.registry}/{unique}/uvapp:latest"),
        xm.ModuleName("hello"),
        context=project,
        base_image=local_cluster.python_image,
        uv_image=uv_image.image,
        env_vars={"XM_GREETING": "hi"},
    )
    [image] = await package_async([packageable], builder=builder)
    assert isinstance(image, RemoteImage) and dict(image.env_vars) == {"XM_GREETING": "hi"}
    out = podman_run(image.image, "--seed", "1")
    assert "hello from __main__ ['--seed', '1']" in out
    assert "prefix: /opt/venv" in out  # it ran in the environment uv made from the lock
