"""Slurm job states and the work-unit status built from them (model layer, pure).

`SlurmJobState.parse` understands every state string `sacct` and `squeue` print, long (`PENDING`) and compact
(`PD`), including `CANCELLED by 1234`. An unknown string (a newer Slurm) parses to `SlurmJobState.UNKNOWN` and
keeps the raw text: it counts as *active* (pending), so a watcher keeps polling instead of declaring a job
finished on a word it does not understand; the raw string appears in the status message. Use
`SlurmJobState.parse(text, strict=True)` to get a `ValidationError` instead.

Each state maps to one of five work-unit states (`SlurmWorkUnitStatusEnum`, an `IntEnum` as in 0.4.x:
PENDING < RUNNING < COMPLETED < FAILED < CANCELLED). `SlurmWorkUnitStatus` implements XManager's
`xm.ExperimentUnitStatus` over one or several jobs (an array task, hetjob components, a generator's jobs, ...).
The sets `SlurmPendingJobStates`, `SlurmRunningJobStates`, `SlurmActiveJobStates`, `SlurmCompletedJobStates`,
`SlurmFailedJobStates` and `SlurmCancelledJobStates` hold the job states of each kind.

Aggregation of several jobs into one unit status (`SlurmWorkUnitStatus.aggregate`):
  1. any job active -> the unit is active: RUNNING if one runs, else PENDING (its jobs may still produce
     results; XManager's `is_active` means "not in a terminal state");
  2. all terminal: any FAILED -> FAILED; else any CANCELLED -> CANCELLED; else COMPLETED.
  No jobs at all is PENDING (not submitted yet).
0.4.7 differs in three places, on purpose (docs/migrating-from-0.4.md): FAILED with CANCELLED is FAILED here
(0.4.7: CANCELLED; a cancellation usually follows the failure), REVOKED is CANCELLED (0.4.7: FAILED; the
federation removed this copy because another cluster runs the job) and RESIZING is RUNNING (0.4.7: PENDING;
the job holds its allocation).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable

from xmanager import xm

from xm_slurm.errors import ValidationError
from xm_slurm.job_ids import SlurmJobId


class SlurmWorkUnitStatusEnum(enum.IntEnum):
    """What a work unit is doing, independent of Slurm's vocabulary (numbered as XManager's local backend,
    with PENDING first: `status >= COMPLETED` means terminal)."""

    PENDING = 0
    RUNNING = 1
    COMPLETED = 2
    FAILED = 3
    CANCELLED = 4

    @classmethod
    def from_job_state(cls, state: SlurmJobState) -> SlurmWorkUnitStatusEnum:
        """The work-unit status one job in `state` stands for (0.4.x's name)."""
        if not isinstance(state, SlurmJobState):
            raise ValidationError(f"{state!r} is not a SlurmJobState; parse it with SlurmJobState.from_str")
        return _TO_WORK_UNIT[state]

    @property
    def label(self) -> str:
        """The lower-case name shown to people and in JSON output: `pending`, `running`, ..."""
        return self.name.lower()

    def __str__(self) -> str:
        return self.label

    def __format__(self, spec: str) -> str:
        return (
            format(self.label, spec) if not spec or spec[-1] not in "bcdnoxX" else int.__format__(self, spec)
        )

    @property
    def is_active(self) -> bool:
        return self in (SlurmWorkUnitStatusEnum.PENDING, SlurmWorkUnitStatusEnum.RUNNING)

    @property
    def is_terminal(self) -> bool:
        return not self.is_active


_P, _R = SlurmWorkUnitStatusEnum.PENDING, SlurmWorkUnitStatusEnum.RUNNING
_C, _F, _X = (
    SlurmWorkUnitStatusEnum.COMPLETED,
    SlurmWorkUnitStatusEnum.FAILED,
    SlurmWorkUnitStatusEnum.CANCELLED,
)


class SlurmJobState(enum.Enum):
    """A Slurm job state. The value is the long name Slurm prints."""

    # waiting for resources, or requeued and waiting again
    PENDING = "PENDING"
    CONFIGURING = "CONFIGURING"
    REQUEUED = "REQUEUED"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    REQUEUE_FED = "REQUEUE_FED"
    RESV_DEL_HOLD = "RESV_DEL_HOLD"
    POWER_UP_NODE = "POWER_UP_NODE"
    # holding an allocation
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    RESIZING = "RESIZING"
    SUSPENDED = "SUSPENDED"
    STOPPED = "STOPPED"
    SIGNALING = "SIGNALING"
    STAGE_OUT = "STAGE_OUT"
    UPDATE_DB = "UPDATE_DB"
    # terminal
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    REVOKED = "REVOKED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    PREEMPTED = "PREEMPTED"
    NODE_FAIL = "NODE_FAIL"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    LAUNCH_FAILED = "LAUNCH_FAILED"
    RECONFIG_FAIL = "RECONFIG_FAIL"
    # a string this library does not know (see module docstring)
    UNKNOWN = "UNKNOWN"

    @classmethod
    def from_str(cls, text: str) -> SlurmJobState:
        """A state by its name (`"RUNNING"`, `"CANCELLED"`, or a squeue code `"R"`); unknown text is a
        ValidationError (0.4.x's name)."""
        return cls.parse(text, strict=True)

    @classmethod
    def from_slurm_str(cls, text: str) -> SlurmJobState:
        """A state as sacct/squeue print it (`"CANCELLED by 0"`, `"RUNNING+"`, `"OOM"`); a word this library
        does not know is UNKNOWN (an active state, see the module docstring) (0.4.x's name)."""
        return cls.parse(text)

    @property
    def message(self) -> str:
        """What the state means, in one sentence."""
        return _MESSAGES[self]

    @classmethod
    def parse(cls, text: str, *, strict: bool = False) -> SlurmJobState:
        """`RUNNING`, `R`, `CANCELLED by 0`, `OUT_OF_MEMORY`, `OOM`, ... -> member."""
        word = text.split()[0].upper().rstrip("+") if text and text.strip() else ""
        state = _BY_NAME.get(word)
        if state is None:
            if strict or not word:
                raise ValidationError(
                    f"{text!r} is not a Slurm job state; expected one of "
                    f"{sorted(s.value for s in cls if s is not cls.UNKNOWN)} or a squeue short code"
                )
            return cls.UNKNOWN
        return state

    @property
    def work_unit_status(self) -> SlurmWorkUnitStatusEnum:
        return _TO_WORK_UNIT[self]

    @property
    def is_active(self) -> bool:
        return self.work_unit_status.is_active

    @property
    def is_terminal(self) -> bool:
        return self.work_unit_status.is_terminal


_TO_WORK_UNIT: dict[SlurmJobState, SlurmWorkUnitStatusEnum] = {
    SlurmJobState.PENDING: _P,
    SlurmJobState.CONFIGURING: _P,
    SlurmJobState.REQUEUED: _P,
    SlurmJobState.REQUEUE_HOLD: _P,  # held by a user or admin: it may still run, so it stays active
    SlurmJobState.REQUEUE_FED: _P,
    SlurmJobState.RESV_DEL_HOLD: _P,
    SlurmJobState.POWER_UP_NODE: _P,
    SlurmJobState.UNKNOWN: _P,
    SlurmJobState.RUNNING: _R,
    SlurmJobState.COMPLETING: _R,
    SlurmJobState.RESIZING: _R,
    SlurmJobState.SUSPENDED: _R,
    SlurmJobState.STOPPED: _R,
    SlurmJobState.SIGNALING: _R,
    SlurmJobState.STAGE_OUT: _R,
    SlurmJobState.UPDATE_DB: _R,
    SlurmJobState.COMPLETED: _C,
    SlurmJobState.CANCELLED: _X,
    SlurmJobState.REVOKED: _X,  # a federation sibling removed because another cluster runs the job
    SlurmJobState.FAILED: _F,
    SlurmJobState.TIMEOUT: _F,
    SlurmJobState.PREEMPTED: _F,  # final only when not requeued (a requeued job shows REQUEUED/PENDING)
    SlurmJobState.NODE_FAIL: _F,
    SlurmJobState.BOOT_FAIL: _F,
    SlurmJobState.DEADLINE: _F,
    SlurmJobState.OUT_OF_MEMORY: _F,
    SlurmJobState.SPECIAL_EXIT: _F,  # held after a special exit code; needs a person to release it
    SlurmJobState.LAUNCH_FAILED: _F,
    SlurmJobState.RECONFIG_FAIL: _F,
}

_MESSAGES: dict[SlurmJobState, str] = {
    SlurmJobState.PENDING: "Job is waiting for resources or its dependencies.",
    SlurmJobState.CONFIGURING: "Job has its nodes and waits for them to boot or be configured.",
    SlurmJobState.REQUEUED: "Job was requeued and waits to run again.",
    SlurmJobState.REQUEUE_HOLD: "Job was requeued and is held until someone releases it.",
    SlurmJobState.REQUEUE_FED: "Job is being requeued by its federation.",
    SlurmJobState.RESV_DEL_HOLD: "Job is held because its reservation was deleted.",
    SlurmJobState.POWER_UP_NODE: "Job waits for its powered-down nodes to start.",
    SlurmJobState.RUNNING: "Job is running.",
    SlurmJobState.COMPLETING: "Job is finishing: some of its processes are still ending.",
    SlurmJobState.RESIZING: "Job is changing the size of its allocation.",
    SlurmJobState.SUSPENDED: "Job is suspended and keeps its allocation.",
    SlurmJobState.STOPPED: "Job is stopped (SIGSTOP) and keeps its allocation.",
    SlurmJobState.SIGNALING: "Job is being sent a signal.",
    SlurmJobState.STAGE_OUT: "Job ran and its files are being staged out.",
    SlurmJobState.UPDATE_DB: "Job is being updated in the accounting database.",
    SlurmJobState.COMPLETED: "Job finished with exit code 0.",
    SlurmJobState.CANCELLED: "Job was cancelled by a user or an administrator.",
    SlurmJobState.REVOKED: "Job was removed here because another cluster of its federation runs it.",
    SlurmJobState.FAILED: "Job finished with a non-zero exit code or another failure.",
    SlurmJobState.TIMEOUT: "Job reached its time limit.",
    SlurmJobState.PREEMPTED: "Job was preempted and not requeued.",
    SlurmJobState.NODE_FAIL: "Job ended because one of its nodes failed.",
    SlurmJobState.BOOT_FAIL: "Job ended because a node failed to boot.",
    SlurmJobState.DEADLINE: "Job reached its deadline before it could run.",
    SlurmJobState.OUT_OF_MEMORY: "Job ran out of memory.",
    SlurmJobState.SPECIAL_EXIT: "Job ended with a special exit code and is held for someone to release it.",
    SlurmJobState.LAUNCH_FAILED: "Job could not be launched on its nodes.",
    SlurmJobState.RECONFIG_FAIL: "Job failed when its nodes were reconfigured.",
    SlurmJobState.UNKNOWN: "Job is in a state this version of xm_slurm does not know; it counts as pending.",
}


def _states(*kinds: SlurmWorkUnitStatusEnum) -> frozenset[SlurmJobState]:
    return frozenset(state for state, kind in _TO_WORK_UNIT.items() if kind in kinds)


#: Job states of each kind (0.4.x's names). Active = pending or running.
SlurmPendingJobStates = _states(_P)
SlurmRunningJobStates = _states(_R)
SlurmActiveJobStates = _states(_P, _R)
SlurmCompletedJobStates = _states(_C)
SlurmFailedJobStates = _states(_F)
SlurmCancelledJobStates = _states(_X)

# squeue's compact codes (`%t`), from squeue(1) "JOB STATE CODES".
_SHORT_CODES = {
    "PD": SlurmJobState.PENDING,
    "CF": SlurmJobState.CONFIGURING,
    "RQ": SlurmJobState.REQUEUED,
    "RH": SlurmJobState.REQUEUE_HOLD,
    "RF": SlurmJobState.REQUEUE_FED,
    "RD": SlurmJobState.RESV_DEL_HOLD,
    "R": SlurmJobState.RUNNING,
    "CG": SlurmJobState.COMPLETING,
    "RS": SlurmJobState.RESIZING,
    "S": SlurmJobState.SUSPENDED,
    "ST": SlurmJobState.STOPPED,
    "SI": SlurmJobState.SIGNALING,
    "SO": SlurmJobState.STAGE_OUT,
    "CD": SlurmJobState.COMPLETED,
    "CA": SlurmJobState.CANCELLED,
    "RV": SlurmJobState.REVOKED,
    "F": SlurmJobState.FAILED,
    "TO": SlurmJobState.TIMEOUT,
    "PR": SlurmJobState.PREEMPTED,
    "NF": SlurmJobState.NODE_FAIL,
    "BF": SlurmJobState.BOOT_FAIL,
    "DL": SlurmJobState.DEADLINE,
    "OOM": SlurmJobState.OUT_OF_MEMORY,
    "SE": SlurmJobState.SPECIAL_EXIT,
    "LF": SlurmJobState.LAUNCH_FAILED,
}
_BY_NAME: dict[str, SlurmJobState] = {
    **{s.value: s for s in SlurmJobState if s is not SlurmJobState.UNKNOWN},
    **_SHORT_CODES,
    "CANCELED": SlurmJobState.CANCELLED,  # American spelling seen in some tools' output
}


@dataclasses.dataclass(frozen=True)
class SlurmJobStatus:
    """One job's (or array task's, or hetjob component's) state as the scheduler saw it."""

    job_id: SlurmJobId
    state: SlurmJobState
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""  # e.g. "CANCELLED by 1234", "not yet in accounting", or an unknown raw state
    source: str = "sacct"  # sacct | squeue | scontrol | grace | missing

    @property
    def work_unit_status(self) -> SlurmWorkUnitStatusEnum:
        return self.state.work_unit_status

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    def describe(self) -> str:
        text = f"{self.job_id} {self.state.value}"
        if self.exit_code is not None and (self.exit_code or self.signal):
            text += f" (exit code {self.exit_code}" + (f", signal {self.signal})" if self.signal else ")")
        if self.reason:
            text += f": {self.reason}"
        return text


class SlurmWorkUnitStatus(xm.ExperimentUnitStatus):
    """The status of a work unit made of one or more Slurm jobs (aggregated as the module docstring says).

    `SlurmWorkUnitStatus(jobs)` takes the jobs' `SlurmJobStatus`es; `SlurmWorkUnitStatus(state)` wraps one
    `SlurmJobState` (0.4.x's form) and `SlurmWorkUnitStatus.aggregate(states)` several.
    """

    def __init__(self, jobs: Iterable[SlurmJobStatus] | SlurmJobState = (), *, message: str = "") -> None:
        if isinstance(jobs, SlurmJobState):
            self._jobs: tuple[SlurmJobStatus, ...] = ()
            self._status = jobs.work_unit_status
            self._message = message or jobs.message
            return
        self._jobs = tuple(jobs)
        for job in self._jobs:
            if not isinstance(job, SlurmJobStatus):
                raise ValidationError(
                    f"{job!r} is not a SlurmJobStatus; for job states use SlurmWorkUnitStatus.aggregate(states)"
                )
        self._status = _aggregate(j.work_unit_status for j in self._jobs)
        self._message = message

    @classmethod
    def aggregate(cls, states: Iterable[SlurmJobState]) -> SlurmWorkUnitStatus:
        """One unit status for jobs in `states` (0.4.x's form; the rule is in the module docstring)."""
        states = list(states)
        for state in states:
            if not isinstance(state, SlurmJobState):
                raise ValidationError(
                    f"{state!r} is not a SlurmJobState; parse it with SlurmJobState.from_str"
                )
        status = cls((), message="; ".join(sorted({s.message for s in states})))
        status._status = _aggregate(s.work_unit_status for s in states)
        return status

    @classmethod
    def from_state(
        cls, state: SlurmJobState | SlurmWorkUnitStatusEnum, *, message: str = ""
    ) -> SlurmWorkUnitStatus:
        """A status with no job details (e.g. rebuilt from the metadata store)."""
        if isinstance(state, SlurmJobState):
            state = state.work_unit_status
        status = cls((), message=message)
        status._status = state
        return status

    @property
    def status(self) -> SlurmWorkUnitStatusEnum:
        return self._status

    @property
    def jobs(self) -> tuple[SlurmJobStatus, ...]:
        return self._jobs

    @property
    def is_active(self) -> bool:
        return self._status.is_active

    @property
    def is_completed(self) -> bool:
        return self._status is SlurmWorkUnitStatusEnum.COMPLETED

    @property
    def is_failed(self) -> bool:
        return self._status is SlurmWorkUnitStatusEnum.FAILED

    @property
    def is_cancelled(self) -> bool:
        return self._status is SlurmWorkUnitStatusEnum.CANCELLED

    @property
    def message(self) -> str:
        if self._message:
            return self._message
        # Name the jobs that explain the status: the failed/cancelled ones, or any with a reason.
        notable = [
            j for j in self._jobs if j.work_unit_status is self._status and (j.reason or j.is_terminal)
        ]
        if self._status in (_F, _X) and notable:
            return "; ".join(j.describe() for j in notable[:5]) + (" ..." if len(notable) > 5 else "")
        reasons = [j.describe() for j in self._jobs if j.reason]
        return "; ".join(reasons[:5])

    def __repr__(self) -> str:
        return f"SlurmWorkUnitStatus({self._status.name}, jobs={len(self._jobs)}, message={self.message!r})"


def _aggregate(statuses: Iterable[SlurmWorkUnitStatusEnum]) -> SlurmWorkUnitStatusEnum:
    seen = set(statuses)
    for status in (_R, _P, _F, _X):  # active first, then the worst terminal state
        if status in seen:
            return status
    return _C if seen else _P
