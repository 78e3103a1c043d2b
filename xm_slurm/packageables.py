"""Packageables: what `experiment.package([...])` takes.

`docker_image` names an existing image; `docker_container` builds your Dockerfile; the Python
helpers (`python_container`, `uv_container`, `mamba_container` = `conda_container`) generate a
Dockerfile from the templates in `xm_slurm/packaging/templates/` and build your project folder
with it (your `.dockerignore` applies). Every built image is pushed to `executor_spec.tag`
(`xm_slurm.Slurm.Spec(tag="registry.example.org/me/train:latest")`) and pinned by digest; the
resulting `RemoteImage` runs the image's ENTRYPOINT (or CMD) in its WORKDIR.

Relative paths are taken from the launch script's folder, as XManager does (or from the current
folder when there is no launch script, e.g. in a notebook).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import immutabledict
from xmanager import xm
from xmanager.xm import utils as xm_utils

from xm_slurm.errors import ValidationError
from xm_slurm.executables import Dockerfile, DockerImage
from xm_slurm.executors import SlurmSpec
from xm_slurm.packaging import dockerfiles
from xm_slurm.packaging.image_ref import parse_image_ref

DEFAULT_PYTHON_IMAGE = "docker.io/python:3.11-slim"
DEFAULT_UV_IMAGE = "ghcr.io/astral-sh/uv:python3.11-bookworm-slim"
DEFAULT_MAMBA_IMAGE = "docker.io/mambaorg/micromamba:bookworm-slim"
WORKDIR = dockerfiles.DEFAULT_WORKDIR

_NO_ENV: Mapping[str, Any] = immutabledict.immutabledict()
Entrypoint: TypeAlias = xm.ModuleName | xm.CommandList


def _absolute(path: str | os.PathLike[str]) -> Path:
    text = os.fspath(path)
    if os.path.isabs(text):
        return Path(text)
    try:
        return Path(xm_utils.resolve_path_relative_to_launcher(text))
    except Exception:
        # XManager needs parsed absl flags or a readable script (not so in notebooks, `python -c`, or
        # scripts that skip `app.run`): then the main module's folder, else the current one.
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        base = Path(main_file).parent if main_file and os.path.isfile(main_file) else Path.cwd()
        return (base / text).absolute()


def _project(path: str | os.PathLike[str]) -> Path:
    folder = _absolute(path)
    if not folder.is_dir():
        raise ValidationError(
            f"path={str(folder)!r} is not a directory; pass the folder holding your project"
        )
    return folder


def _base_image(value: str, *, default: str) -> str:
    image = value or default
    parse_image_ref(image)  # raises ValidationError naming it
    return image


def _apt_instructions(packages: Sequence[str]) -> list[str]:
    if isinstance(packages, str):
        raise ValidationError(f"extra_system_packages={packages!r} must be a list of names, e.g. ['git']")
    if not packages:
        return []
    return [
        "RUN apt-get update && apt-get install -y --no-install-recommends "
        + shlex.join(packages)
        + " && rm -rf /var/lib/apt/lists/*"
    ]


def _dockerfile_packageable(
    generated: dockerfiles.GeneratedDockerfile,
    executor_spec: xm.ExecutorSpec,
    args: xm.UserArgs | None,
    env_vars: Mapping[str, Any],
) -> xm.Packageable:
    spec = Dockerfile(dockerfile=generated.dockerfile, context=generated.context, workdir=WORKDIR)
    return xm.Packageable(
        executable_spec=spec, executor_spec=executor_spec, args=args or [], env_vars=env_vars
    )


def docker_image(
    *,
    image: str,
    args: xm.UserArgs | None = None,
    env_vars: Mapping[str, Any] = _NO_ENV,
    executor_spec: xm.ExecutorSpec | None = None,
    workdir: str | None = None,
) -> xm.Packageable:
    """An existing image (by tag or digest). Packaging pins it by digest and reads what it runs
    (ENTRYPOINT/CMD, WORKDIR) from its registry, which must answer (see docs/packaging.md)."""
    return xm.Packageable(
        executable_spec=DockerImage(image=image, workdir=workdir),
        executor_spec=executor_spec if executor_spec is not None else SlurmSpec(),
        args=args or [],
        env_vars=env_vars,
    )


def docker_container(
    executor_spec: xm.ExecutorSpec,
    dockerfile: str | os.PathLike[str] | None = None,
    context: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
    cache_from: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    workdir: str | None = None,
    args: xm.UserArgs | None = None,
    env_vars: Mapping[str, Any] = _NO_ENV,
) -> xm.Packageable:
    """Build `dockerfile` (default: `<context>/Dockerfile`) with `context` (default: the launch script's folder)."""
    context_path = _absolute(context if context is not None else ".")
    dockerfile_path = _absolute(dockerfile) if dockerfile is not None else context_path / "Dockerfile"
    spec = Dockerfile(
        dockerfile=dockerfile_path,
        context=context_path,
        target=target,
        build_args=dict(build_args or {}),
        cache_from=tuple(cache_from),
        labels=dict(labels or {}),
        workdir=workdir,
    )
    return xm.Packageable(
        executable_spec=spec, executor_spec=executor_spec, args=args or [], env_vars=env_vars
    )


def python_container(
    executor_spec: xm.ExecutorSpec,
    entrypoint: Entrypoint,
    *,
    path: str | os.PathLike[str] = ".",
    requirements: str | os.PathLike[str] | None = "requirements.txt",
    base_image: str = DEFAULT_PYTHON_IMAGE,
    extra_system_packages: Sequence[str] = (),
    extra_instructions: Sequence[str] = (),
    args: xm.UserArgs | None = None,
    env_vars: Mapping[str, Any] = _NO_ENV,
) -> xm.Packageable:
    """A Python project installed with pip from `requirements` (relative to `path`; skipped if absent or empty)."""
    project = _project(path)
    requirements_rel = None
    if requirements is not None:
        explicit = os.fspath(requirements) != "requirements.txt"
        if explicit or (project / "requirements.txt").is_file():
            requirements_rel = dockerfiles.project_file(project, requirements, what="requirements file")
            if not dockerfiles.has_requirements(project / requirements_rel):
                requirements_rel = None  # nothing to install: no pip needed in the image
    text = dockerfiles.render(
        "python.Dockerfile.j2",
        base_image=_base_image(base_image, default=DEFAULT_PYTHON_IMAGE),
        python="python3",
        workdir=WORKDIR,
        requirements=requirements_rel,
        pre_instructions=_apt_instructions(extra_system_packages),
        post_instructions=dockerfiles.instructions(extra_instructions, what="extra_instructions"),
        entrypoint=dockerfiles.json_argv(dockerfiles.entrypoint_argv(entrypoint, python="python3")),
    )
    return _dockerfile_packageable(dockerfiles.write_generated(project, text), executor_spec, args, env_vars)


def uv_container(
    executor_spec: xm.ExecutorSpec,
    entrypoint: Entrypoint,
    *,
    path: str | os.PathLike[str] = ".",
    base_image: str = DEFAULT_UV_IMAGE,
    uv_image: str | None = None,
    sync_args: Sequence[str] = ("--no-dev",),
    extra_system_packages: Sequence[str] = (),
    extra_instructions: Sequence[str] = (),
    args: xm.UserArgs | None = None,
    env_vars: Mapping[str, Any] = _NO_ENV,
) -> xm.Packageable:
    """A uv project (`pyproject.toml` + `uv.lock`), installed with `uv sync --frozen` into /opt/venv.

    `uv_image` copies the `uv` binary from that image (as uv's docs suggest) for base images without uv.
    """
    project = _project(path)
    for name in ("pyproject.toml", "uv.lock"):
        dockerfiles.project_file(project, name, what=f"uv project file {name}")
    if uv_image is not None:
        parse_image_ref(uv_image)
    if isinstance(sync_args, str):
        raise ValidationError(f"sync_args={sync_args!r} must be a list of flags, e.g. ['--no-dev']")
    text = dockerfiles.render(
        "uv.Dockerfile.j2",
        base_image=_base_image(base_image, default=DEFAULT_UV_IMAGE),
        uv_image=uv_image,
        venv="/opt/venv",
        workdir=WORKDIR,
        sync_flags=shlex.join(sync_args),
        pre_instructions=_apt_instructions(extra_system_packages),
        post_instructions=dockerfiles.instructions(extra_instructions, what="extra_instructions"),
        entrypoint=dockerfiles.json_argv(dockerfiles.entrypoint_argv(entrypoint, python="python")),
    )
    return _dockerfile_packageable(dockerfiles.write_generated(project, text), executor_spec, args, env_vars)


def mamba_container(
    executor_spec: xm.ExecutorSpec,
    entrypoint: Entrypoint,
    *,
    path: str | os.PathLike[str] = ".",
    environment: str | os.PathLike[str] = "environment.yml",
    base_image: str = DEFAULT_MAMBA_IMAGE,
    extra_instructions: Sequence[str] = (),
    args: xm.UserArgs | None = None,
    env_vars: Mapping[str, Any] = _NO_ENV,
) -> xm.Packageable:
    """A conda project (`environment.yml`) installed with micromamba into the image's base environment."""
    project = _project(path)
    environment_rel = dockerfiles.project_file(project, environment, what="conda environment file")
    # micromamba images activate the environment in their own entrypoint script; keep it in front.
    argv = ["/usr/local/bin/_entrypoint.sh", *dockerfiles.entrypoint_argv(entrypoint, python="python")]
    text = dockerfiles.render(
        "mamba.Dockerfile.j2",
        base_image=_base_image(base_image, default=DEFAULT_MAMBA_IMAGE),
        environment=environment_rel,
        workdir=WORKDIR,
        pre_instructions=[],
        post_instructions=dockerfiles.instructions(extra_instructions, what="extra_instructions"),
        entrypoint=dockerfiles.json_argv(argv),
    )
    return _dockerfile_packageable(dockerfiles.write_generated(project, text), executor_spec, args, env_vars)


conda_container = mamba_container

__all__ = [
    "conda_container",
    "docker_container",
    "docker_image",
    "mamba_container",
    "python_container",
    "uv_container",
]
