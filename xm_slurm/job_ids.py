"""Every form of Slurm job id, parsed in one place (model layer, pure).

123            a job
123_4          task 4 of job array 123
123_[0-9%2]    the tasks of array 123 that have not started yet (sacct/squeue print this while pending)
123+1          component 1 of heterogeneous job 123
123;cluster    `sbatch --parsable` on a multi-cluster / federated site
123.batch      a step (also `123.0`, `123.extern`, `123_4.batch`, `123+1.0`)
"""

from __future__ import annotations

import dataclasses
import re

from xm_slurm.errors import ValidationError

_JOB_ID_RE = re.compile(
    r"""^\s*
    (?P<job>\d+)
    (?:
        _(?P<task>\d+)
      | _\[(?P<tasks>[0-9,\-:%]+)\]
      | \+(?P<het>\d+)
    )?
    (?:\.(?P<step>[A-Za-z0-9_+]+))?
    (?:;(?P<cluster>[A-Za-z0-9_.\-]+))?
    \s*$""",
    re.VERBOSE,
)


def expand_array_spec(spec: str) -> tuple[int, ...]:
    """Expand an `--array` spec (`0-9`, `1,3,5`, `0-15:4`, `0-99%10`) into its sorted task ids."""
    body = spec.split("%", 1)[0]
    tasks: set[int] = set()
    for part in body.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not m:
            raise ValidationError(f"array spec {spec!r}: {part!r} is not N, N-M or N-M:S")
        start = int(m.group(1))
        stop = int(m.group(2)) if m.group(2) is not None else start
        step = int(m.group(3)) if m.group(3) is not None else 1
        if stop < start or step < 1:
            raise ValidationError(f"array spec {spec!r}: range {part!r} is empty or has a bad step")
        tasks.update(range(start, stop + 1, step))
    return tuple(sorted(tasks))


@dataclasses.dataclass(frozen=True)
class SlurmJobId:
    """A parsed job id. `str()` gives back Slurm's spelling; `parse()` reads any form listed above."""

    job_id: int
    array_task: int | None = None
    array_spec: str | None = None  # the `[...]` of a pending array range, without brackets
    het_offset: int | None = None
    step: str | None = None
    cluster: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.job_id, bool) or not isinstance(self.job_id, int) or self.job_id <= 0:
            raise ValidationError(f"Slurm job id {self.job_id!r} must be a positive integer")
        parts = [self.array_task is not None, self.array_spec is not None, self.het_offset is not None]
        if sum(parts) > 1:
            raise ValidationError(
                f"Slurm job id {self!s} mixes an array task, an array range and a hetjob component"
            )
        for name in ("array_task", "het_offset"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValidationError(f"Slurm job id {name}={value!r} must be a non-negative integer")
        if self.array_spec is not None:
            expand_array_spec(self.array_spec)

    @classmethod
    def parse(cls, text: str | int | SlurmJobId) -> SlurmJobId:
        if isinstance(text, SlurmJobId):
            return text
        if isinstance(text, int) and not isinstance(text, bool):
            return cls(text)
        m = _JOB_ID_RE.match(text) if isinstance(text, str) else None
        if m is None:
            raise ValidationError(
                f"{text!r} is not a Slurm job id; expected forms like 123, 123_4, 123_[0-9], 123+1, "
                "123;cluster or 123.batch"
            )
        g = m.groupdict()
        return cls(
            int(g["job"]),
            array_task=None if g["task"] is None else int(g["task"]),
            array_spec=g["tasks"],
            het_offset=None if g["het"] is None else int(g["het"]),
            step=g["step"],
            cluster=g["cluster"],
        )

    @classmethod
    def from_sbatch_parsable(cls, stdout: str) -> SlurmJobId:
        """The id from `sbatch --parsable` output (`123` or `123;cluster`; warnings may precede it)."""
        lines = [line.strip() for line in stdout.splitlines() if line.strip()]
        if not lines:
            raise ValidationError("sbatch --parsable printed no job id")
        return cls.parse(lines[-1])

    # --- views ---

    @property
    def base(self) -> SlurmJobId:
        """The whole job: array / het parts and step dropped (cluster kept)."""
        return SlurmJobId(self.job_id, cluster=self.cluster)

    @property
    def is_array_task(self) -> bool:
        return self.array_task is not None

    @property
    def is_het_component(self) -> bool:
        return self.het_offset is not None

    @property
    def is_step(self) -> bool:
        return self.step is not None

    def task(self, index: int) -> SlurmJobId:
        return SlurmJobId(self.job_id, array_task=index, cluster=self.cluster)

    def component(self, offset: int) -> SlurmJobId:
        return SlurmJobId(self.job_id, het_offset=offset, cluster=self.cluster)

    def same_member_in(self, job: SlurmJobId) -> SlurmJobId:
        """This id's member (array task or het component, or the whole job) in another job `job`: where
        a pending row, a retry or an adopted submission finds its own part of a newly submitted job."""
        if self.array_task is not None:
            return job.base.task(self.array_task)
        if self.het_offset is not None:
            return job.base.component(self.het_offset)
        return job.base

    def without_step(self) -> SlurmJobId:
        return dataclasses.replace(self, step=None)

    def without_cluster(self) -> SlurmJobId:
        return dataclasses.replace(self, cluster=None)

    def array_tasks(self) -> tuple[int, ...]:
        """The task ids covered by an `123_[...]` range (empty for other forms)."""
        return () if self.array_spec is None else expand_array_spec(self.array_spec)

    def __str__(self) -> str:
        """Slurm's spelling without the cluster suffix, as sacct/squeue/scancel take it."""
        text = str(self.job_id)
        if self.array_task is not None:
            text += f"_{self.array_task}"
        elif self.array_spec is not None:
            text += f"_[{self.array_spec}]"
        elif self.het_offset is not None:
            text += f"+{self.het_offset}"
        if self.step is not None:
            text += f".{self.step}"
        return text

    def to_string(self) -> str:
        """Round-trippable spelling including `;cluster` (for storage)."""
        return f"{self}" + (f";{self.cluster}" if self.cluster else "")
