"""A cluster's site settings: `SlurmClusterConfig` and `ContainerRuntime` (model layer, pure data).

Re-exports `SlurmSSHConfig` and `PublicKey` so that `from xm_slurm.config import ...` works as in 0.4.x.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from immutabledict import immutabledict

from xm_slurm.errors import ValidationError
from xm_slurm.executables import check_env_name
from xm_slurm.mounts import MountKind, MountMode, MountSpec, infiniband_mounts, nvidia_mounts
from xm_slurm.resource_types import ResourceType
from xm_slurm.ssh_config import Endpoint, PublicKey, SlurmSSHConfig, SSHConfig
from xm_slurm.text_rules import check_line

__all__ = [
    "ContainerRuntime",
    "Endpoint",
    "MountKind",
    "MountMode",
    "MountSpec",
    "PublicKey",
    "SSHConfig",
    "SlurmClusterConfig",
    "SlurmSSHConfig",
    "infiniband_mounts",
    "nvidia_mounts",
]


class ContainerRuntime(enum.Enum):
    """How a job runs its container image on the compute node."""

    SINGULARITY = "singularity"
    APPTAINER = "apptainer"
    PODMAN = "podman"
    DOCKER = "docker"  # accepted in configs; rendering a job for it raises a clear error

    def __str__(self) -> str:
        return self.value

    @classmethod
    def from_string(cls, runtime: str) -> ContainerRuntime:
        """`"podman"`, `"Apptainer"`, `"SINGULARITY"`, ... -> member (0.4.x's spelling)."""
        if isinstance(runtime, str):
            member = cls.__members__.get(runtime.strip().upper())
            if member is not None:
                return member
        known = ", ".join(m.value for m in cls)
        raise ValidationError(f"container runtime {runtime!r} is unknown; use one of: {known}")


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


def _check_mounts(
    mounts: Mapping[str, str] | Sequence[MountSpec],
) -> immutabledict[str, str] | tuple[MountSpec, ...]:
    """A mapping host -> container path (0.4.x) stays a mapping; a sequence of `MountSpec` a tuple."""
    if isinstance(mounts, Mapping):
        specs = [MountSpec(src, dst) for src, dst in mounts.items()]
    elif isinstance(mounts, (list, tuple)) and all(isinstance(m, MountSpec) for m in mounts):
        specs = list(mounts)
    else:
        raise ValidationError(
            f"mounts={mounts!r:.100} must be a mapping of host path -> container path or a list of "
            "xm_slurm.config.MountSpec"
        )
    destinations: dict[str, str] = {}
    for spec in specs:
        key = spec.target.rstrip("/")
        if key in destinations:
            raise ValidationError(
                f"mounts {destinations[key]!r} and {spec.source!r} both go to {spec.target!r}; "
                "give each destination once"
            )
        destinations[key] = spec.source
    return immutabledict(mounts) if isinstance(mounts, Mapping) else tuple(specs)


def _check_recommended(
    table: Mapping[ResourceType, Mapping[ResourceType, float]],
) -> immutabledict[ResourceType, immutabledict[ResourceType, float]]:
    """accelerator -> {CPU: count, MEMORY: bytes} per unit, each amount > 0."""
    checked = {}
    for accelerator, per_unit in table.items():
        if not isinstance(accelerator, ResourceType) or not accelerator.is_accelerator:
            raise ValidationError(
                f"recommended_resources: key {accelerator!r} must be an accelerator ResourceType"
            )
        for resource, amount in per_unit.items():
            if resource not in (ResourceType.CPU, ResourceType.MEMORY) or not (
                isinstance(amount, (int, float)) and not isinstance(amount, bool) and amount > 0
            ):
                raise ValidationError(
                    f"recommended_resources[{accelerator}]: {resource!r}={amount!r}; give CPU (a count) and "
                    "MEMORY (bytes) per unit, each > 0"
                )
        checked[accelerator] = immutabledict(per_unit)
    return immutabledict(checked)


def _check_cwd(cwd: object) -> None:
    if cwd is None:
        return
    if not isinstance(cwd, str) or not cwd.startswith(("/", "$")):
        raise ValidationError(
            f"cwd={cwd!r} must be an absolute path on the cluster ('/scratch/me/runs') or start with a "
            "variable the job's shell expands ('$SCRATCH/runs')"
        )
    check_line(cwd, "cwd")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmClusterConfig:
    """Everything site-specific about a cluster; validated at construction.

    mounts: host path -> container path, or a list of `MountSpec` (kind, read-only/read-write, which jobs);
      both paths absolute, without ':', ',' or a '..' segment (the runtimes' bind syntax; `$USER` and
      `${USER:0:1}` are expanded by the job's bash); the destination is not '/' and appears once.
    resources: accelerator -> GRES type (`{ResourceType.A100: "a100"}` renders `--gpus-per-task=a100:N`; MIG
      slices are requested only through this map).
    features: accelerator -> node feature (renders `--gpus-per-task=N --constraint=<feature>`).
    proxy: None, "submission-host" (SOCKS tunnel to $SLURM_SUBMIT_HOST) or "[user@]host".
    host_environment: exported by the job script on the node; values are expanded by its bash (`$HOME/bin:$PATH`).
    container_environment: set inside the container, literally (no expansion).
    validate: called by the experiment layer with each job before submission; raise to refuse it.
    cwd: the folder on the cluster the job script runs in (`cd` before the prolog: relative paths of the
      prolog and epilog start there; the container keeps its image's working folder): an absolute path, or
      one starting with a variable the job's bash expands (`$SCRATCH/runs`). None: Slurm's default, the
      folder sbatch ran in (the login's home).
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
    mounts: Mapping[str, str] | Sequence[MountSpec] = dataclasses.field(default_factory=immutabledict)
    resources: Mapping[ResourceType, str] = dataclasses.field(default_factory=immutabledict)
    features: Mapping[ResourceType, str] = dataclasses.field(default_factory=immutabledict)
    validate: Callable[[Any], None] | None = dataclasses.field(default=None, compare=False)
    cwd: str | None = None
    # Set by site presets: accelerator -> {CPU: n, MEMORY: bytes} per unit (one GPU or MIG slice), filled in
    # by `JobRequirements` where a job sets none (see `recommended_for`).
    recommended_resources: Mapping[ResourceType, Mapping[ResourceType, float]] = dataclasses.field(
        default_factory=immutabledict
    )

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
        _check_cwd(self.cwd)
        set_(self, "recommended_resources", _check_recommended(self.recommended_resources))
        if self.validate is not None and not callable(self.validate):
            raise ValidationError(f"validate={self.validate!r} must be a callable taking the job")

    def recommended_for(self, accelerator: ResourceType, count: int) -> dict[ResourceType, float]:
        """What the site recommends for `count` units of `accelerator` ({CPU: n, MEMORY: bytes}; {}: none)."""
        per_unit = self.recommended_resources.get(accelerator, {})
        return {resource: amount * count for resource, amount in per_unit.items()}

    @property
    def mount_specs(self) -> tuple[MountSpec, ...]:
        """Every mount as a `MountSpec` (a mapping's entries are read-write folders for every job)."""
        if isinstance(self.mounts, Mapping):
            return tuple(MountSpec(src, dst) for src, dst in self.mounts.items())
        return tuple(self.mounts)

    def __hash__(self) -> int:
        return hash((self.name, self.ssh, self.runtime))
