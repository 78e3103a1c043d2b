"""The jobs of FakeSlurm (tests/fakes/fake_slurm.py) and how Slurm 22.05 prints them.

A FAKE for tests: the row formats follow the real output captured in tests/scheduler/data (squeue's raw wait
status in `exit_code`, sacct's `CANCELLED by 0`, a pending array as one `123_[0-3]` range row where Slurm
prints one, `JobHeldUser` as the reason of a held job, an empty `Comment` because the test cluster does not
store comments in accounting).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

from xm_slurm.job_ids import SlurmJobId, expand_array_spec

TERMINAL = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL"}
)
_DIRECTIVE = re.compile(r"^#SBATCH\s+(\S.*?)\s*$")


@dataclasses.dataclass
class Member:
    """One array task, hetjob component, or the whole of a plain job."""

    job_id: str  # as Slurm prints it: `12`, `12_3`, `12+1`
    state: str = "PENDING"
    exit_code: int = 0
    signal: int = 0
    started: bool = False  # a task that never left PENDING is printed in its array's range row

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL


@dataclasses.dataclass
class FakeJob:
    """A submitted job: its sbatch command line (`argv`, script last) and its members' states."""

    job_id: int
    argv: tuple[str, ...]
    script: str
    token: str
    partition: str
    name: str
    held: bool
    dependency: str
    array_tasks: tuple[int, ...] | None
    members: list[Member]
    workdir: str
    in_squeue: bool = True  # False once slurmctld purged it (after MinJobAge): accounting only

    @property
    def submit_line(self) -> str:
        return " ".join(self.argv)  # sacct's SubmitLine: the words as given, unquoted

    def member(self, job_id: SlurmJobId) -> list[Member]:
        """The members an id names: all of them for the bare job id, else the one task or component."""
        if job_id.array_task is None and job_id.het_offset is None:
            return list(self.members)
        wanted = job_id.without_step().to_string()
        return [m for m in self.members if m.job_id == wanted]


def sbatch_options(script: str, argv: Sequence[str]) -> tuple[dict[str, str], int]:
    """The options of a submission (the script's `#SBATCH` lines, then the command line's, which win) and
    its number of hetjob components."""
    options: dict[str, str] = {}
    components = 1
    for line in script.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break  # Slurm reads directives up to the first command
        m = _DIRECTIVE.match(line)
        if m is None:
            continue
        if m.group(1) == "hetjob":
            components += 1
        elif components == 1:
            _add_option(options, m.group(1))
    for word in argv[1:-1]:
        _add_option(options, word)
    return options, components


def _add_option(options: dict[str, str], word: str) -> None:
    name, _, value = word.partition("=")
    short = {"-J": "--job-name", "-p": "--partition", "-d": "--dependency", "-a": "--array", "-H": "--hold"}
    options[short.get(name, name)] = value


def array_tasks(spec: str) -> tuple[int, ...]:
    """`0-3%2`, `1,3` -> the task ids."""
    return tuple(expand_array_spec(spec.split("%", 1)[0]))


def ranges(tasks: Iterable[int]) -> str:
    """`[0, 1, 2, 5]` -> `0-2,5` (as Slurm prints a pending array's tasks)."""
    ordered = sorted(set(tasks))
    parts: list[str] = []
    start = prev = ordered[0]
    for task in [*ordered[1:], None]:
        if task is not None and task == prev + 1:
            prev = task
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if task is not None:
            start = prev = task
    return ",".join(parts)


def squeue_reason(job: FakeJob, member: Member) -> str:
    if member.state == "PENDING":
        return "JobHeldUser" if job.held else "None"
    return "NonZeroExitCode" if member.state == "FAILED" else "None"


def squeue_rows(job: FakeJob, expand: bool) -> list[tuple[str, Member]]:
    """(id as squeue prints it, member): with `-r` every task, else a pending array's tasks as one range."""
    if expand or job.array_tasks is None:
        return [(m.job_id, m) for m in job.members]
    return _collapsed(job)


def _collapsed(job: FakeJob) -> list[tuple[str, Member]]:
    """Started tasks on their own rows; the never-started ones as one range row per state."""
    rows = [(m.job_id, m) for m in job.members if m.started]
    waiting: dict[str, list[Member]] = {}
    for m in job.members:
        if not m.started:
            waiting.setdefault(m.state, []).append(m)
    for members in waiting.values():
        tasks = [SlurmJobId.parse(m.job_id).array_task for m in members]
        spec = ranges(t for t in tasks if t is not None)
        rows.append((f"{job.job_id}_[{spec}]" if len(members) > 1 else members[0].job_id, members[0]))
    return rows


def squeue_field(job: FakeJob, shown: str, member: Member, field: str) -> str:
    """One `-O` / `-o` field of squeue (the formats the library asks for)."""
    values = {
        "JobArrayID": shown,
        "%i": shown,
        "State": member.state,
        "exit_code": str(member.exit_code << 8 | member.signal),  # a raw wait status
        "Reason": squeue_reason(job, member),
        "%k": comment(job),
        "%A": str(job.job_id + _offset(member)),
        # The array's id for a task; a hetjob component's own id (as Slurm prints them).
        "%F": str(job.job_id if job.array_tasks is not None else job.job_id + _offset(member)),
    }
    return values.get(field, "")


def comment(job: FakeJob) -> str:
    """The job's `--comment` (where the library puts its submission token)."""
    return next((w.split("=", 1)[1] for w in job.argv if w.startswith("--comment=")), "")


def _offset(member: Member) -> int:
    het = SlurmJobId.parse(member.job_id).het_offset
    return het or 0


def sacct_field(job: FakeJob, shown: str, member: Member, field: str) -> str:
    """One `--format` field of `sacct -X -P`."""
    state = "CANCELLED by 0" if member.state == "CANCELLED" else member.state
    values = {
        "JobID": shown,
        "JobIDRaw": str(job.job_id + _offset(member)),
        "State": state,
        # A cancelled job's allocation row says 0:0; its signal shows only on the step rows.
        "ExitCode": "0:0" if member.state == "CANCELLED" else f"{member.exit_code}:{member.signal}",
        "Reason": "JobHeldUser" if job.held else "None",
        "Comment": "",  # not stored without AccountingStoreFlags=job_comment (as on the test cluster)
        "SubmitLine": job.submit_line,
        "WorkDir": job.workdir,
        "JobName": job.name,
        "Partition": job.partition,
    }
    return values.get(field, "")


def sacct_rows(job: FakeJob) -> list[tuple[str, Member]]:
    """(id as sacct -X prints it, member): a task that never started is in its array's range row."""
    return squeue_rows(job, expand=job.array_tasks is None)
