"""Slurm job dependencies as values: `after...` terms combined with `&` (all of) or `|` (any of).

    afterok("12") & afterany("13", "14")   ->  afterok:12,afterany:13:14
    after("12", time=dt.timedelta(minutes=5)) | singleton()  ->  after:12+5?singleton

The classes take a sequence of job handles, as in 0.4.x (`SlurmJobDependencyAfterOK([job])`, where a handle is
a job id string or int, a `SlurmJobId`, a unit's `slurm_jobs` or `launched_jobs`); the short
constructors take ids as arguments (`afterok("12", "13")`). `dep.to_directive()` is the sbatch option,
`dep.traverse()` walks the tree.

Slurm forbids mixing `,` and `?` in one `--dependency`, so mixing `&` and `|` raises `NoChainingException` (a
`SlurmDependencyException`, itself a `ValidationError`). Job ids are strings: "123", an array task "123_4", or a
het-job component "123+1".
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

from xm_slurm.errors import ValidationError
from xm_slurm.job_ids import SlurmJobId

_JOB_ID = re.compile(r"[0-9]+(?:_[0-9]+|\+[0-9]+)?")


class SlurmDependencyException(ValidationError):
    """A dependency that Slurm cannot express (0.4.x's name)."""


class NoChainingException(SlurmDependencyException):
    """`&` and `|` mixed in one dependency: Slurm takes all-of (`,`) or any-of (`?`), not both."""


def _job_id(handle: object) -> str:
    # A launched job's handle carries its SlurmJobId; XManager's LaunchedJob (unit.launched_jobs) its address.
    job_id = getattr(handle, "job_id", None) or getattr(handle, "address", None) or handle
    if isinstance(job_id, SlurmJobId) or (isinstance(job_id, int) and not isinstance(job_id, bool)):
        job_id = str(job_id)
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise SlurmDependencyException(
            f"job handle {handle!r} is not a Slurm job; give job ids such as '123', '123_4' or '123+1', or "
            "launched jobs (unit.slurm_jobs)"
        )
    return job_id


def _job_ids(handles: Iterable[object]) -> tuple[str, ...]:
    if isinstance(handles, (str, bytes)) or not isinstance(handles, Iterable):
        raise SlurmDependencyException(
            f"handles={handles!r} must be a sequence of job handles, e.g. ['123'] or unit.slurm_jobs"
        )
    out = tuple(_job_id(h) for h in handles)
    if not out:
        raise SlurmDependencyException("a dependency needs at least one job")
    return out


class SlurmJobDependency(abc.ABC):
    """A value of `sbatch --dependency=` (0.4.x's base class; `SlurmDependency` is the same class)."""

    @abc.abstractmethod
    def to_dependency_str(self) -> str:
        """The option's value: `afterok:12,afterany:13`."""

    def to_directive(self) -> str:
        """The sbatch option: `--dependency=afterok:12,afterany:13`."""
        return f"--dependency={self.to_dependency_str()}"

    def flatten(self) -> tuple[SlurmJobDependency, ...]:
        return (self,)

    def traverse(self) -> Iterator[SlurmJobDependency]:
        """This dependency, then (for `&` / `|`) each of its terms."""
        yield self

    def __and__(self, other: SlurmJobDependency) -> SlurmJobDependencyAND:
        return SlurmJobDependencyAND(self, other)

    def __or__(self, other: SlurmJobDependency) -> SlurmJobDependencyOR:
        return SlurmJobDependencyOR(self, other)

    def __str__(self) -> str:
        return self.to_dependency_str()


SlurmDependency = SlurmJobDependency


@dataclasses.dataclass(frozen=True, init=False)
class _JobsDependency(SlurmJobDependency):
    job_ids: tuple[str, ...]
    _kind = ""

    def __init__(self, handles: Iterable[Any]) -> None:
        object.__setattr__(self, "job_ids", _job_ids(handles))

    def to_dependency_str(self) -> str:
        return f"{self._kind}:{':'.join(self.job_ids)}"


@dataclasses.dataclass(frozen=True, init=False)
class SlurmJobDependencyAfter(_JobsDependency):
    """Start after the jobs started (plus `time`, rounded up to whole minutes)."""

    time: dt.timedelta | None = None

    def __init__(self, handles: Iterable[Any], time: dt.timedelta | None = None) -> None:
        super().__init__(handles)
        if time is not None and (not isinstance(time, dt.timedelta) or time <= dt.timedelta(0)):
            raise SlurmDependencyException(f"time={time!r} must be a datetime.timedelta > 0 (or None)")
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
class SlurmJobArrayDependencyAfterOK(_JobsDependency):
    """Array task i starts after task i of the given array job completed successfully (`aftercorr`)."""

    _kind = "aftercorr"


SlurmJobDependencyAfterCorr = SlurmJobArrayDependencyAfterOK


@dataclasses.dataclass(frozen=True)
class SlurmJobDependencySingleton(SlurmJobDependency):
    """At most one running job of this name and user."""

    def to_dependency_str(self) -> str:
        return "singleton"


class _Combined(SlurmJobDependency):
    """All of (`&`) or any of (`|`) two or more dependencies, kept flat: `a & b & c` has three terms."""

    _separator = ""
    _operator = ""
    dependencies: tuple[SlurmJobDependency, ...]

    def __init__(
        self, first: SlurmJobDependency, second: SlurmJobDependency, *more: SlurmJobDependency
    ) -> None:
        terms: list[SlurmJobDependency] = []
        for dep in (first, second, *more):
            terms += self._operand(dep)
        self.dependencies = tuple(terms)

    def _operand(self, dep: object) -> tuple[SlurmJobDependency, ...]:
        if not isinstance(dep, SlurmJobDependency):
            raise SlurmDependencyException(
                f"cannot combine {dep!r} with '{self._operator}'; both sides must be dependencies"
            )
        if isinstance(dep, _Combined) and type(dep) is not type(self):
            raise NoChainingException(
                f"cannot mix '&' and '|' in one dependency ({dep.to_dependency_str()!r} {self._operator} ...): "
                "Slurm accepts either all-of (',') or any-of ('?'), not both"
            )
        return dep.flatten()

    def flatten(self) -> tuple[SlurmJobDependency, ...]:
        return self.dependencies

    def traverse(self) -> Iterator[SlurmJobDependency]:
        yield self
        for dep in self.dependencies:
            yield from dep.traverse()

    def to_dependency_str(self) -> str:
        return self._separator.join(d.to_dependency_str() for d in self.dependencies)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Combined)
        return self.dependencies == other.dependencies

    def __hash__(self) -> int:
        return hash((type(self), self.dependencies))

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.dependencies!r}"


class SlurmJobDependencyAND(_Combined):
    """Every one of the dependencies: `a & b` (`afterok:1,afterany:2`)."""

    _separator = ","
    _operator = "&"


class SlurmJobDependencyOR(_Combined):
    """Any one of the dependencies: `a | b` (`afterok:1?afternotok:2`)."""

    _separator = "?"
    _operator = "|"


SlurmDependencyAND = SlurmJobDependencyAND
SlurmDependencyOR = SlurmJobDependencyOR


# Short constructors.
def after(*job_ids: str, time: dt.timedelta | None = None) -> SlurmJobDependencyAfter:
    return SlurmJobDependencyAfter(job_ids, time=time)


def afterany(*job_ids: str) -> SlurmJobDependencyAfterAny:
    return SlurmJobDependencyAfterAny(job_ids)


def afterok(*job_ids: str) -> SlurmJobDependencyAfterOK:
    return SlurmJobDependencyAfterOK(job_ids)


def afternotok(*job_ids: str) -> SlurmJobDependencyAfterNotOK:
    return SlurmJobDependencyAfterNotOK(job_ids)


def aftercorr(*job_ids: str) -> SlurmJobArrayDependencyAfterOK:
    return SlurmJobArrayDependencyAfterOK(job_ids)


def singleton() -> SlurmJobDependencySingleton:
    return SlurmJobDependencySingleton()
