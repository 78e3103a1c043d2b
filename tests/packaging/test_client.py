"""The build client's command lines and its choice by XM_DOCKER_CLIENT (no builds run here)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from xm_slurm.errors import ValidationError
from xm_slurm.packaging.client import (
    BuildRequest,
    DockerBuildxClient,
    DockerClient,
    PodmanClient,
    display_command,
    select_client,
)


def _fake_bin(tmp_path: Path, *names: str, script: str = "exit 0") -> str:
    """Stand-ins for the CLIs whose answers (`docker version`, `docker buildx version`) pick the client."""
    bindir = tmp_path / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name in names:
        exe = bindir / name
        exe.write_text(f"#!/bin/sh\n{script}\n")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(bindir)


NO_DAEMON = 'if [ "$1" = version ]; then echo "Cannot connect to the Docker daemon" >&2; exit 1; fi; exit 0'
NO_BUILDX = 'if [ "$1" = buildx ]; then echo "unknown command: docker buildx" >&2; exit 1; fi; exit 0'


def test_choice_order_and_override(tmp_path: Path) -> None:
    # docker with a daemon and buildx > docker with BuildKit > podman; XM_DOCKER_CLIENT overrides.
    full = _fake_bin(tmp_path / "full", "docker")
    both = f"{full}:{_fake_bin(tmp_path / 'p', 'podman')}"
    assert type(select_client({"PATH": both})) is DockerBuildxClient
    assert type(select_client({"PATH": both, "XM_DOCKER_CLIENT": "podman"})) is PodmanClient
    plain = f"{_fake_bin(tmp_path / 'plain', 'docker', script=NO_BUILDX)}:{tmp_path / 'p' / 'bin'}"
    assert type(select_client({"PATH": plain})) is DockerClient
    down = f"{_fake_bin(tmp_path / 'down', 'docker', script=NO_DAEMON)}:{tmp_path / 'p' / 'bin'}"
    assert type(select_client({"PATH": down})) is PodmanClient  # a CLI without a daemon cannot build
    assert type(select_client({"PATH": down, "XM_DOCKER_CLIENT": "docker"})) is DockerBuildxClient
    only_down = _fake_bin(tmp_path / "only", "docker", script=NO_DAEMON)
    with pytest.raises(ValidationError, match=r"daemon does not answer.*podman is not installed"):
        select_client({"PATH": only_down})


def test_choice_on_this_machine() -> None:
    # The real CLIs: docker only when its daemon answers, else podman (the local-cluster set-up has podman).
    path = os.environ["PATH"]
    docker = shutil.which("docker")
    daemon = docker is not None and subprocess.run([docker, "version"], capture_output=True).returncode == 0
    chosen = select_client({"PATH": path, "HOME": os.environ.get("HOME", "/root")})
    assert isinstance(chosen, DockerClient if daemon else PodmanClient), chosen


def test_bake_file(tmp_path: Path) -> None:
    request = BuildRequest(
        dockerfile=tmp_path / "Dockerfile",
        context=tmp_path,
        build_args=(("A", "1"),),
        labels=(("l", "v"),),
        cache_from=("r.io/cache:1",),
    )
    client = DockerBuildxClient("docker", env={})
    bake = client.bake_definition(request, ["r.io/a:1", "r.io/b:2"])
    assert bake == {
        "target": {
            "xm-slurm": {
                "context": str(tmp_path),
                "dockerfile": str(tmp_path / "Dockerfile"),
                "tags": ["r.io/a:1", "r.io/b:2"],
                "output": ["type=docker"],
                "args": {"A": "1"},
                "labels": {"l": "v"},
                "cache-from": ["r.io/cache:1"],
                "platforms": ["linux/amd64"],
            }
        }
    }
    assert json.loads(json.dumps(bake)) == bake
    assert client.bake_argv(tmp_path / "b.json")[:3] == ["docker", "buildx", "bake"]


def test_bad_choice_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"XM_DOCKER_CLIENT='bogus'.*'docker' or 'podman'"):
        select_client({"PATH": os.environ["PATH"], "XM_DOCKER_CLIENT": "bogus"})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValidationError, match=r"'docker' is not on PATH"):
        select_client({"PATH": str(empty), "XM_DOCKER_CLIENT": "docker"})
    with pytest.raises(ValidationError, match="neither podman nor docker"):
        select_client({"PATH": str(empty)})


def test_build_argv(tmp_path: Path) -> None:
    request = BuildRequest(
        dockerfile=tmp_path / "Dockerfile",
        context=tmp_path,
        build_args=(("A", "1"), ("TOKEN", "hush")),
        target="final",
        ignorefile=tmp_path / "Dockerfile.dockerignore",
    )
    podman = PodmanClient("podman", env={})
    assert podman.build_argv(request, ["r.io/a:1", "r.io/b:2"]) == [
        "podman", "build", "--file", str(tmp_path / "Dockerfile"),
        "--tag", "r.io/a:1", "--tag", "r.io/b:2",
        "--build-arg", "A=1", "--build-arg", "TOKEN=hush",
        "--target", "final", "--platform", "linux/amd64", "--network=host",
        "--ignorefile", str(tmp_path / "Dockerfile.dockerignore"),
        str(tmp_path),
    ]  # fmt: skip
    # With its own .dockerignore the context's file rules, as in any build.
    (tmp_path / ".dockerignore").write_text("x\n")
    assert "--ignorefile" not in podman.build_argv(request, ["r.io/a:1"])
    docker = DockerClient("docker", env={"PATH": "/bin"})
    argv = docker.build_argv(request, ["r.io/a:1"])
    assert argv[:2] == ["docker", "build"] and "--network=host" in argv and "--ignorefile" not in argv
    assert docker.build_env()["DOCKER_BUILDKIT"] == "1"
    assert podman.push_argv("r.io/a:1", tmp_path / "d") == [
        "podman",
        "push",
        "--digestfile",
        str(tmp_path / "d"),
        "r.io/a:1",
    ]
    assert docker.push_argv("r.io/a:1", tmp_path / "d") == ["docker", "push", "r.io/a:1"]


def test_display_command_hides_build_arg_values() -> None:
    shown = display_command(["podman", "build", "--build-arg", "TOKEN=hush", "--build-arg=K=v2", "ctx"])
    assert "hush" not in shown and "v2" not in shown
    assert "TOKEN=***" in shown and "K=***" in shown


def test_request_key_follows_content_not_path(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("FROM x\n")
    b.write_text("FROM x\n")
    assert BuildRequest(a, tmp_path).key() == BuildRequest(b, tmp_path).key()
    b.write_text("FROM y\n")
    assert BuildRequest(a, tmp_path).key() != BuildRequest(b, tmp_path).key()
    assert BuildRequest(a, tmp_path).key() != BuildRequest(a, tmp_path, build_args=(("A", "1"),)).key()
