"""A cluster's site settings: `SlurmClusterConfig` and `ContainerRuntime` (model layer, pure data).

Re-exports `SlurmSSHConfig` and `PublicKey` so that `from xm_slurm.config import ...` works as in 0.4.x.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Mapping
from typing import Any

from immutabledict import immutabledict

from xm_slurm.errors import ValidationError
from xm_slurm.executables import check_env_name
from xm_slurm.resource_types import ResourceType
from xm_slurm.ssh_config import PublicKey, SlurmSSHConfig
from xm_slurm.text_rules import check_line

__all__ = ["ContainerRuntime", "PublicKey", "SlurmClusterConfig", "SlurmSSHConfig"]


class ContainerRuntime(enum.Enum):
    """How a job runs its container image on the compute node."""

    SINGULARITY = "singularity"
    APPTAINER = "apptainer"
    PODMAN = "podman"
    DOCKER = "docker"  # accepted in configs; rendering a job for it raises a clear error

    def __str__(self) -> str:
        return self.value


_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_SLURM_NAME = re.compile(r"[A-Za-z0-9_.\-+,]+")
_PROXY_HOST = re.compile(r"([A-Za-z0-9_.\-]+@)?[A-Za-z0-9_.\-\[\]:]+")

#: `SlurmClusterConfig(proxy=SUBMISSION_HOST)`: tunnel through the host sbatch was run on.
SUBMISSION_HOST = "submission-host"


def _check_env(field: str, env: Mapping[str, str]) -> immutabledict[str, str]:
    for name, value in env.items():
        check_env_name(name, field)
        if not isinstance(value, str):
            raise ValidationError(f"{field}[{name!r}]={value!r} must be a str")
        if "\0" in value:
            raise ValidationError(f"{field}[{name!r}] contains a NUL byte, which no environment can hold")
    return immutabledict(env)


def _check_mount_path(src: object, dst: object, path: object) -> str:
    """One side of a mount: an absolute path the runtimes' bind syntax can carry, with no `..` segment."""
    where = f"mount {src!r} -> {dst!r}"
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValidationError(f"{where}: {path!r} must be an absolute path (starting with '/')")
    check_line(path, f"{where}: path")
    # Apptainer's --bind is `src:dst[:opts]` in a comma-separated list and Podman's --volume is
    # `src:dst[:opts]`: a ':' or ',' inside a path would be read as a separator.
    for sep in (":", ","):
        if sep in path:
            raise ValidationError(
                f"{where}: {path!r} contains {sep!r}, which the container runtimes' bind syntax "
                "(src:dst, comma-separated) cannot carry; use a path without ':' or ','"
            )
    if ".." in path.split("/"):
        raise ValidationError(
            f"{where}: {path!r} has a '..' segment; give the resolved absolute path instead"
        )
    return path


def _check_mounts(mounts: Mapping[str, str]) -> immutabledict[str, str]:
    if not isinstance(mounts, Mapping):
        raise ValidationError(f"mounts={mounts!r:.100} must be a mapping of host path -> container path")
    destinations: dict[str, str] = {}
    for src, dst in mounts.items():
        _check_mount_path(src, dst, src)
        _check_mount_path(src, dst, dst)
        if dst.rstrip("/") == "":
            raise ValidationError(
                f"mount {src!r} -> {dst!r}: the destination '/' would hide the image's whole file system; "
                "mount into a folder such as '/data'"
            )
        key = dst.rstrip("/")
        if key in destinations:
            raise ValidationError(
                f"mounts {destinations[key]!r} and {src!r} both go to {dst!r}; give each destination once"
            )
        destinations[key] = src
    return immutabledict(mounts)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmClusterConfig:
    """Everything site-specific about a cluster; validated at construction.

    mounts: host path -> container path, both absolute, without ':', ',' or a '..' segment (the runtimes'
      bind syntax); the destination is not '/' and each destination appears once.
    resources: accelerator -> GRES type (`{ResourceType.A100: "a100"}` renders `--gres=gpu:a100:N`).
    features: accelerator -> node feature (renders `--gres=gpu:N --constraint=<feature>`).
    proxy: None, "submission-host" (SOCKS tunnel to $SLURM_SUBMIT_HOST) or "[user@]host".
    host_environment: exported by the job script on the node; values are expanded by its bash (`$HOME/bin:$PATH`).
    container_environment: set inside the container, literally (no expansion).
    validate: called by the experiment layer with each job before submission; raise to refuse it.
    """

    name: str
    ssh: SlurmSSHConfig
    runtime: ContainerRuntime
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    proxy: str | None = None
    prolog: str | None = None
    epilog: str | None = None
    host_environment: Mapping[str, str] = dataclasses.field(default_factory=immutabledict)
    container_environment: Mapping[str, str] = dataclasses.field(default_factory=immutabledict)
    mounts: Mapping[str, str] = dataclasses.field(default_factory=immutabledict)
    resources: Mapping[ResourceType, str] = dataclasses.field(default_factory=immutabledict)
    features: Mapping[ResourceType, str] = dataclasses.field(default_factory=immutabledict)
    validate: Callable[[Any], None] | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the mappings once
        if not isinstance(self.name, str) or not _CLUSTER_NAME.fullmatch(self.name):
            raise ValidationError(
                f"cluster name {self.name!r} is invalid; use letters, digits, '_', '.', '-' (max 64)"
            )
        if not isinstance(self.ssh, SlurmSSHConfig):
            raise ValidationError(f"ssh={self.ssh!r} must be a SlurmSSHConfig(host=...)")
        if not isinstance(self.runtime, ContainerRuntime):
            raise ValidationError(
                f"runtime={self.runtime!r} must be a ContainerRuntime (APPTAINER, SINGULARITY or PODMAN)"
            )
        for field in ("account", "partition", "qos"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not _SLURM_NAME.fullmatch(value)):
                raise ValidationError(f"{field}={value!r} is not a valid Slurm {field} name")
        if self.proxy is not None and (
            not isinstance(self.proxy, str) or not _PROXY_HOST.fullmatch(self.proxy)
        ):
            raise ValidationError(f"proxy={self.proxy!r}: use None, {SUBMISSION_HOST!r} or '[user@]host'")
        for field in ("prolog", "epilog"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, str):
                raise ValidationError(f"{field}={value!r} must be a str of shell commands")
        set_(self, "host_environment", _check_env("host_environment", self.host_environment))
        set_(self, "container_environment", _check_env("container_environment", self.container_environment))
        set_(self, "mounts", _check_mounts(self.mounts))
        for field in ("resources", "features"):
            mapping = getattr(self, field)
            for key, value in mapping.items():
                if not isinstance(key, ResourceType) or not key.is_accelerator:
                    raise ValidationError(
                        f"{field}: key {key!r} must be an accelerator ResourceType such as A100"
                    )
                if not isinstance(value, str) or not _SLURM_NAME.fullmatch(value.replace(":", "")):
                    raise ValidationError(f"{field}[{key}]={value!r} is not a valid Slurm gres/feature name")
            set_(self, field, immutabledict(mapping))
        if self.validate is not None and not callable(self.validate):
            raise ValidationError(f"validate={self.validate!r} must be a callable taking the job")

    def __hash__(self) -> int:
        return hash((self.name, self.ssh, self.runtime))
