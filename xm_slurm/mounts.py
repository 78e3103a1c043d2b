"""Container mounts: `MountSpec`, `MountKind`, `MountMode`, `nvidia_mounts()`, `infiniband_mounts()` (model layer).

A mount is a host path -> container path (the same path when no destination is given), a kind (a folder or
a file), a mode (read-only or read-write) and a selector saying which jobs get it (every job when None).
Paths keep shell syntax (`/scratch/$USER`, `${USER:0:1}`): the job's bash expands them on the node, so a
site's mounts can name each user's folders. Re-exported by `xm_slurm.config` and `xm_slurm`.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable
from typing import Any

from xm_slurm.errors import ValidationError
from xm_slurm.text_rules import check_line

__all__ = [
    "MountKind",
    "MountMode",
    "MountSpec",
    "check_mount_path",
    "gpu_jobs",
    "infiniband_mounts",
    "nvidia_mounts",
]


class MountKind(enum.Enum):
    """What the source is: a folder or a single file (a runtime refuses to bind one onto the other)."""

    DIR = "dir"
    FILE = "file"


class MountMode(enum.Enum):
    """Whether the job may write through the mount."""

    READ_ONLY = "ro"
    READ_WRITE = "rw"
    RO = "ro"  # aliases, as the runtimes spell them
    RW = "rw"


_SHELL_EXPANSION = re.compile(r"\$\{[^}]*\}")


def check_mount_path(src: object, dst: object, path: object) -> str:
    """One side of a mount: an absolute path the runtimes' bind syntax can carry, with no `..` segment."""
    where = f"mount {src!r} -> {dst!r}"
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValidationError(f"{where}: {path!r} must be an absolute path (starting with '/')")
    check_line(path, f"{where}: path")
    # Apptainer's --bind is `src:dst[:opts]` in a comma-separated list and Podman's --volume is
    # `src:dst[:opts]`: a ':' or ',' inside a path would be read as a separator.
    for sep in (":", ","):
        if sep in _SHELL_EXPANSION.sub("", path):  # `${USER:0:1}` is the job's bash's, not a separator
            raise ValidationError(
                f"{where}: {path!r} contains {sep!r}, which the container runtimes' bind syntax "
                "(src:dst, comma-separated) cannot carry; use a path without ':' or ','"
            )
    if ".." in path.split("/"):
        raise ValidationError(
            f"{where}: {path!r} has a '..' segment; give the resolved absolute path instead"
        )
    return path


def gpu_jobs(requirements: Any) -> bool:
    """Selector: jobs that ask for an accelerator (the generic GPU, a named GPU or a MIG profile)."""
    return getattr(requirements, "accelerator", None) is not None


@dataclasses.dataclass(frozen=True)
class MountSpec:
    """`source` (host) -> `destination` (container; the same path when None), of `kind` and `mode`.

    select: called with a job's `JobRequirements`; the job gets the mount when it returns True (None: every
      job). Two mounts are equal when both paths are equal.
    """

    source: str
    destination: str | None = None
    kind: MountKind = dataclasses.field(default=MountKind.DIR, compare=False)
    mode: MountMode = dataclasses.field(default=MountMode.READ_WRITE, compare=False)
    select: Callable[[Any], bool] | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        destination = self.source if self.destination is None else self.destination
        check_mount_path(self.source, destination, self.source)
        check_mount_path(self.source, destination, destination)
        if destination.rstrip("/") == "":
            raise ValidationError(
                f"mount {self.source!r} -> {destination!r}: the destination '/' would hide the image's "
                "whole file system; mount into a folder such as '/data'"
            )
        object.__setattr__(self, "destination", destination)
        if not isinstance(self.kind, MountKind):
            raise ValidationError(f"mount {self.source!r}: kind={self.kind!r} must be MountKind.DIR or FILE")
        if not isinstance(self.mode, MountMode):
            raise ValidationError(
                f"mount {self.source!r}: mode={self.mode!r} must be MountMode.READ_ONLY or READ_WRITE"
            )
        if self.select is not None and not callable(self.select):
            raise ValidationError(
                f"mount {self.source!r}: select={self.select!r} must be a callable taking the job's "
                "requirements, or None for every job"
            )

    @property
    def target(self) -> str:
        assert self.destination is not None  # set in __post_init__
        return self.destination

    @property
    def read_only(self) -> bool:
        return self.mode is MountMode.READ_ONLY

    def applies_to(self, requirements: Any) -> bool:
        return self.select is None or bool(self.select(requirements))


_NVIDIA_FILES = (
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
)


def nvidia_mounts(prefix: str = "/usr/bin") -> list[MountSpec]:
    """The NVIDIA tools under `prefix` (read-only) and the persistenced socket (read-write), same paths
    inside, for GPU jobs only (for runtimes or sites that do not add them themselves)."""
    files = [
        MountSpec(
            f"{prefix.rstrip('/')}/{name}", kind=MountKind.FILE, mode=MountMode.READ_ONLY, select=gpu_jobs
        )
        for name in _NVIDIA_FILES
    ]
    socket = MountSpec(
        "/run/nvidia-persistenced/socket", kind=MountKind.FILE, mode=MountMode.READ_WRITE, select=gpu_jobs
    )
    return [*files, socket]


def infiniband_mounts() -> list[MountSpec]:
    """`/dev/infiniband` (read-write, same path) for GPU jobs: NCCL's RDMA transport needs its devices."""
    return [MountSpec("/dev/infiniband", kind=MountKind.DIR, mode=MountMode.READ_WRITE, select=gpu_jobs)]
