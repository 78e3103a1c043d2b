"""The build client's command lines and its choice by XM_DOCKER_CLIENT (no builds run here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from xm_slurm.errors import ValidationError
from xm_slurm.packaging.client import (
    BuildRequest,
    DockerClient,
    PodmanClient,
    display_command,
    select_client,
)


def _fake_bin(tmp_path: Path, *names: str) -> str:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name in names:
        exe = bindir / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(bindir)


def test_choice_by_env(tmp_path: Path) -> None:
    path = _fake_bin(tmp_path, "docker", "podman")
    assert isinstance(select_client({"PATH": path}), PodmanClient)  # podman preferred
    assert isinstance(select_client({"PATH": path, "XM_DOCKER_CLIENT": "docker"}), DockerClient)
    assert isinstance(select_client({"PATH": path, "XM_DOCKER_CLIENT": "podman"}), PodmanClient)
    (tmp_path / "d").mkdir()
    only_docker = _fake_bin(tmp_path / "d", "docker")
    assert isinstance(select_client({"PATH": only_docker}), DockerClient)


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
