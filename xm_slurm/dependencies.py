"""Slurm job dependencies as values: `after...` terms combined with `&` (all of) or `|` (any of).

    afterok("12") & afterany("13", "14")   ->  afterok:12,afterany:13:14
    after("12", time=dt.timedelta(minutes=5)) | singleton()  ->  after:12+5?singleton

Slurm forbids mixing `,` and `?` in one `--dependency`, so mixing `&` and `|` is a ValidationError.
Job ids are strings: "123", an array task "123_4", or a het-job component "123+1".
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import math
import re
from collections.abc import Iterable

from xm_slurm.errors import ValidationError

_JOB_ID = re.compile(r"[0-9]+(?:_[0-9]+|\+[0-9]+)?")


def _job_ids(ids: Iterable[object]) -> tuple[str, ...]:
    out = []
    for job_id in ids:
        if isinstance(job_id, int) and not isinstance(job_id, bool):
            job_id = str(job_id)
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise ValidationError(
                f"job id {job_id!r} is not a Slurm job id; use e.g. '123', '123_4' or '123+1'"
            )
        out.append(job_id)
    if not out:
        raise ValidationError("a dependency needs at least one job id")
    return tuple(out)


class SlurmDependency(abc.ABC):
    """A value of `sbatch --dependency=`."""

    @abc.abstractmethod
    def to_dependency_str(self) -> str: ...

    def flatten(self) -> tuple[SlurmDependency, ...]:
        return (self,)

    def __and__(self, other: SlurmDependency) -> SlurmDependencyAND:
        return SlurmDependencyAND(dependencies=(*_operand(self, "&"), *_operand(other, "&")))

    def __or__(self, other: SlurmDependency) -> SlurmDependencyOR:
        return SlurmDependencyOR(dependencies=(*_operand(self, "|"), *_operand(other, "|")))

    def __str__(self) -> str:
        return self.to_dependency_str()


def _operand(dep: object, op: str) -> tuple[SlurmDependency, ...]:
    if not isinstance(dep, SlurmDependency):
        raise ValidationError(f"cannot combine {dep!r} with '{op}'; both sides must be dependencies")
    other = SlurmDependencyOR if op == "&" else SlurmDependencyAND
    if isinstance(dep, other):
        raise ValidationError(
            f"cannot mix '&' and '|' in one dependency ({dep.to_dependency_str()!r} {op} ...): "
            "Slurm accepts either all-of (',') or any-of ('?'), not both"
        )
    return dep.flatten()


@dataclasses.dataclass(frozen=True, init=False)
class _JobsDependency(SlurmDependency):
    job_ids: tuple[str, ...]
    _kind = ""

    def __init__(self, *job_ids: str) -> None:
        object.__setattr__(self, "job_ids", _job_ids(job_ids))

    def to_dependency_str(self) -> str:
        return f"{self._kind}:{':'.join(self.job_ids)}"


@dataclasses.dataclass(frozen=True, init=False)
class SlurmJobDependencyAfter(_JobsDependency):
    """Start after the jobs started (plus `time`, rounded up to whole minutes)."""

    time: dt.timedelta | None = None

    def __init__(self, *job_ids: str, time: dt.timedelta | None = None) -> None:
        super().__init__(*job_ids)
        if time is not None and (not isinstance(time, dt.timedelta) or time <= dt.timedelta(0)):
            raise ValidationError(f"time={time!r} must be a datetime.timedelta > 0 (or None)")
        object.__setattr__(self, "time", time)

    def to_dependency_str(self) -> str:
        if self.time is None:
            return f"after:{':'.join(self.job_ids)}"
        minutes = math.ceil(self.time.total_seconds() / 60)
        return "after:" + ":".join(f"{job_id}+{minutes}" for job_id in self.job_ids)


@dataclasses.dataclass(frozen=True, init=False)
class SlurmJobDependencyAfterAny(_JobsDependency):
    """Start after the jobs finished, whatever their state."""

    _kind = "afterany"


@dataclasses.dataclass(frozen=True, init=False)
class SlurmJobDependencyAfterOK(_JobsDependency):
    """Start after the jobs completed successfully."""

    _kind = "afterok"


@dataclasses.dataclass(frozen=True, init=False)
class SlurmJobDependencyAfterNotOK(_JobsDependency):
    """Start after the jobs failed (non-zero exit, timeout, node failure...)."""

    _kind = "afternotok"


@dataclasses.dataclass(frozen=True, init=False)
class SlurmJobDependencyAfterCorr(_JobsDependency):
    """Array task i starts after task i of the given array job completed successfully."""

    _kind = "aftercorr"


@dataclasses.dataclass(frozen=True)
class SlurmJobDependencySingleton(SlurmDependency):
    """At most one running job of this name and user."""

    def to_dependency_str(self) -> str:
        return "singleton"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmDependencyAND(SlurmDependency):
    dependencies: tuple[SlurmDependency, ...]

    def flatten(self) -> tuple[SlurmDependency, ...]:
        return self.dependencies

    def to_dependency_str(self) -> str:
        return ",".join(d.to_dependency_str() for d in self.dependencies)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmDependencyOR(SlurmDependency):
    dependencies: tuple[SlurmDependency, ...]

    def flatten(self) -> tuple[SlurmDependency, ...]:
        return self.dependencies

    def to_dependency_str(self) -> str:
        return "?".join(d.to_dependency_str() for d in self.dependencies)


# Short constructors.
def after(*job_ids: str, time: dt.timedelta | None = None) -> SlurmJobDependencyAfter:
    return SlurmJobDependencyAfter(*job_ids, time=time)


def afterany(*job_ids: str) -> SlurmJobDependencyAfterAny:
    return SlurmJobDependencyAfterAny(*job_ids)


def afterok(*job_ids: str) -> SlurmJobDependencyAfterOK:
    return SlurmJobDependencyAfterOK(*job_ids)


def afternotok(*job_ids: str) -> SlurmJobDependencyAfterNotOK:
    return SlurmJobDependencyAfterNotOK(*job_ids)


def aftercorr(*job_ids: str) -> SlurmJobDependencyAfterCorr:
    return SlurmJobDependencyAfterCorr(*job_ids)


def singleton() -> SlurmJobDependencySingleton:
    return SlurmJobDependencySingleton()
