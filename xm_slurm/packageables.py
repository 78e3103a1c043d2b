"""Packageables: what `experiment.package([...])` takes.

`docker_image` names an existing image; `docker_container` builds your Dockerfile; the Python
helpers (`python_container`, `uv_container`, `mamba_container` = `conda_container`) generate a
Dockerfile from the templates in `xm_slurm/packaging/templates/` and build your project with it
(your `.dockerignore` applies). Every built image is pushed to `executor_spec.tag`
(`xm_slurm.Slurm.Spec(tag="registry.example.org/me/train:latest")`) and pinned by digest; the
resulting `RemoteImage` runs the image's ENTRYPOINT (or CMD) in its WORKDIR.

The build context (`context=`) defaults to the project root, as in xmanager-slurm 0.4.x: the nearest
folder, from the launch script's own upwards, holding a project file (`project.PROJECT_MARKERS`). A
relative `context` is taken from the launch script's folder, as XManager does.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import immutabledict
from xmanager import xm

from xm_slurm.errors import ValidationError
from xm_slurm.executables import Dockerfile, DockerImage
from xm_slurm.executables.build_options import SshOption
from xm_slurm.executors import SlurmSpec
from xm_slurm.packaging import dockerfiles
from xm_slurm.packaging.image_ref import parse_image_ref
from xm_slurm.packaging.project import build_context

DEFAULT_PYTHON_IMAGE = "docker.io/python:3.11-slim"
DEFAULT_UV_IMAGE = "ghcr.io/astral-sh/uv:python3.11-bookworm-slim"
DEFAULT_MAMBA_IMAGE = "docker.io/mambaorg/micromamba:bookworm-slim"
WORKDIR = dockerfiles.DEFAULT_WORKDIR

_NO_ENV: Mapping[str, Any] = immutabledict.immutabledict()
Entrypoint: TypeAlias = xm.ModuleName | xm.CommandList
PathArg: TypeAlias = str | os.PathLike[str]


def _path(value: object, field: str) -> Path:
    """A path argument, `~` expanded (an absolute one stays as it is when joined to a folder)."""
    if not isinstance(value, (str, os.PathLike)):
        raise ValidationError(f"{field}={value!r} must be a path (str or pathlib.Path)")
    return Path(os.path.expanduser(os.fspath(value)))


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


def _as_root(instructions: list[str]) -> list[str]:
    """micromamba images build as $MAMBA_USER; system packages need root for their step only."""
    return ["USER root", *instructions, "USER $MAMBA_USER"] if instructions else []


def _python_packages(packages: Sequence[str]) -> str:
    """`extra_python_packages` as pip/uv arguments (requirement specifiers, e.g. 'numpy>=2')."""
    if isinstance(packages, str):
        raise ValidationError(
            f"extra_python_packages={packages!r} must be a list of requirements, e.g. ['numpy>=2']"
        )
    for package in packages:
        if not isinstance(package, str) or not package.strip() or any(c in package for c in "\n\0"):
            raise ValidationError(f"extra_python_packages: {package!r} is not a requirement, e.g. 'numpy>=2'")
    return shlex.join(packages)


def _generated(
    template: str,
    project: Path,
    executor_spec: xm.ExecutorSpec,
    *,
    ssh: SshOption,
    cache_from: str | Sequence[str] | None,
    labels: Mapping[str, str] | None,
    args: xm.UserArgs | None,
    env_vars: Mapping[str, Any],
    **values: object,
) -> xm.Packageable:
    """Render `template`, store it, and build it with `project` as the context."""
    text = dockerfiles.render(
        template, workdir=WORKDIR, run_mounts="--mount=type=ssh " if ssh else "", **values
    )
    generated = dockerfiles.write_generated(project, text)
    spec = Dockerfile(
        dockerfile=generated.dockerfile,
        context=generated.context,
        workdir=WORKDIR,
        ssh=ssh,
        cache_from=cache_from,
        labels=labels or {},
    )
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
    dockerfile: PathArg | None = None,
    context: PathArg | None = None,
    *,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
    ssh: SshOption = None,
    cache_from: str | Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    platforms: str | Sequence[str] | None = None,
    workdir: str | None = None,
    args: xm.UserArgs | None = None,
    env_vars: Mapping[str, Any] = _NO_ENV,
) -> xm.Packageable:
    """Build `dockerfile` (default: `<context>/Dockerfile`; a relative one is a file of the context, as in
    docker compose and bake) with `context` (default: the project root)."""
    context_path = build_context(context, what="docker_container")
    dockerfile_path = context_path / _path(
        dockerfile if dockerfile is not None else "Dockerfile", "dockerfile"
    )
    spec = Dockerfile(
        dockerfile=dockerfile_path,
        context=context_path,
        target=target,
        build_args=dict(build_args or {}),
        ssh=ssh,
        cache_from=cache_from,
        labels=labels or {},
        platforms=platforms,
        workdir=workdir,
    )
    return xm.Packageable(
        executable_spec=spec, executor_spec=executor_spec, args=args or [], env_vars=env_vars
    )


def python_container(
    executor_spec: xm.ExecutorSpec,
    entrypoint: Entrypoint,
    *,
    context: PathArg | None = None,
    requirements: PathArg | None = "requirements.txt",
    base_image: str = DEFAULT_PYTHON_IMAGE,
    extra_system_packages: Sequence[str] = (),
    extra_python_packages: Sequence[str] = (),
    extra_instructions: Sequence[str] = (),
    ssh: SshOption = None,
    cache_from: str | Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    args: xm.UserArgs | None = None,
    env_vars: Mapping[str, Any] = _NO_ENV,
    path: PathArg | None = None,
) -> xm.Packageable:
    """A Python project installed with pip from `requirements` (relative to the context; skipped if absent
    or empty). `CommandList(["main.py", ...])` runs `python3 main.py ... ARGS`."""
    project = build_context(context, path=path, what="python_container")
    requirements_rel = None
    if requirements is not None:
        explicit = os.fspath(requirements) != "requirements.txt"
        if explicit or (project / "requirements.txt").is_file():
            requirements_rel = dockerfiles.project_file(project, requirements, what="requirements file")
            if not dockerfiles.has_requirements(project / requirements_rel):
                requirements_rel = None  # nothing to install: no pip needed in the image
    return _generated(
        "python.Dockerfile.j2",
        project,
        executor_spec,
        ssh=ssh,
        cache_from=cache_from,
        labels=labels,
        args=args,
        env_vars=env_vars,
        base_image=_base_image(base_image, default=DEFAULT_PYTHON_IMAGE),
        python="python3",
        requirements=requirements_rel,
        python_packages=_python_packages(extra_python_packages),
        pre_instructions=_apt_instructions(extra_system_packages),
        post_instructions=dockerfiles.instructions(extra_instructions, what="extra_instructions"),
        entrypoint=dockerfiles.json_argv(
            dockerfiles.entrypoint_argv(entrypoint, python="python3", what="python_container")
        ),
    )


def uv_container(
    executor_spec: xm.ExecutorSpec,
    entrypoint: Entrypoint,
    *,
    context: PathArg | None = None,
    base_image: str = DEFAULT_UV_IMAGE,
    uv_image: str | None = None,
    sync_args: Sequence[str] = ("--no-dev",),
    extra_system_packages: Sequence[str] = (),
    extra_python_packages: Sequence[str] = (),
    extra_instructions: Sequence[str] = (),
    ssh: SshOption = None,
    cache_from: str | Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    args: xm.UserArgs | None = None,
    env_vars: Mapping[str, Any] = _NO_ENV,
    path: PathArg | None = None,
) -> xm.Packageable:
    """A uv project (`pyproject.toml` + `uv.lock`), installed with `uv sync --frozen` into /opt/venv.

    `uv_image` copies the `uv` binary from that image (as uv's docs suggest) for base images without uv.
    """
    project = build_context(context, path=path, what="uv_container")
    for name in ("pyproject.toml", "uv.lock"):
        dockerfiles.project_file(project, name, what=f"uv project file {name}")
    if uv_image is not None:
        parse_image_ref(uv_image)
    if isinstance(sync_args, str):
        raise ValidationError(f"sync_args={sync_args!r} must be a list of flags, e.g. ['--no-dev']")
    return _generated(
        "uv.Dockerfile.j2",
        project,
        executor_spec,
        ssh=ssh,
        cache_from=cache_from,
        labels=labels,
        args=args,
        env_vars=env_vars,
        base_image=_base_image(base_image, default=DEFAULT_UV_IMAGE),
        uv_image=uv_image,
        venv="/opt/venv",
        sync_flags=shlex.join(sync_args),
        python_packages=_python_packages(extra_python_packages),
        pre_instructions=_apt_instructions(extra_system_packages),
        post_instructions=dockerfiles.instructions(extra_instructions, what="extra_instructions"),
        entrypoint=dockerfiles.json_argv(
            dockerfiles.entrypoint_argv(entrypoint, python="python", what="uv_container")
        ),
    )


def mamba_container(
    executor_spec: xm.ExecutorSpec,
    entrypoint: Entrypoint,
    *,
    context: PathArg | None = None,
    environment: PathArg = "environment.yml",
    base_image: str = DEFAULT_MAMBA_IMAGE,
    extra_system_packages: Sequence[str] = (),
    extra_instructions: Sequence[str] = (),
    ssh: SshOption = None,
    cache_from: str | Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    args: xm.UserArgs | None = None,
    env_vars: Mapping[str, Any] = _NO_ENV,
    path: PathArg | None = None,
) -> xm.Packageable:
    """A conda project (`environment.yml`) installed with micromamba into the image's base environment;
    commands run with that environment's python."""
    project = build_context(context, path=path, what="mamba_container")
    environment_rel = dockerfiles.project_file(project, environment, what="conda environment file")
    # micromamba images activate the environment in their own entrypoint script; keep it in front.
    argv = [
        "/usr/local/bin/_entrypoint.sh",
        *dockerfiles.entrypoint_argv(entrypoint, python="python", what="mamba_container"),
    ]
    return _generated(
        "mamba.Dockerfile.j2",
        project,
        executor_spec,
        ssh=ssh,
        cache_from=cache_from,
        labels=labels,
        args=args,
        env_vars=env_vars,
        base_image=_base_image(base_image, default=DEFAULT_MAMBA_IMAGE),
        environment=environment_rel,
        pre_instructions=_as_root(_apt_instructions(extra_system_packages)),
        post_instructions=dockerfiles.instructions(extra_instructions, what="extra_instructions"),
        entrypoint=dockerfiles.json_argv(argv),
    )


conda_container = mamba_container

__all__ = [
    "conda_container",
    "docker_container",
    "docker_image",
    "mamba_container",
    "python_container",
    "uv_container",
]
