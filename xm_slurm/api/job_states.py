"""Job states in the store: what a poller with write access saw of a job (docs/metadata.md, "Job states").

Whoever follows jobs with write access to the store (a launch script waiting, `xm-slurm wait`, `show`,
`logs -f`) records each job's state changes: the state (a `SlurmJobState` name, e.g. RUNNING), Slurm's
reason, the exit code, and when it was seen. A store keeps one last known state per job; an observation
older than the one it holds is ignored, so processes that watch the same job in any order agree.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from xm_slurm.errors import ValidationError
from xm_slurm.text_rules import MAX_LINE, check_line

#: A state as `SlurmJobState` names it (an upper-case word: PENDING, RUNNING, COMPLETED, OUT_OF_MEMORY...).
_STATE = re.compile(r"[A-Z][A-Z_]{0,31}")
MAX_STATES_PER_CALL = 10_000


def check_state(value: object, what: str) -> str:
    if not isinstance(value, str) or not _STATE.fullmatch(value):
        raise ValidationError(f"{what} must be a Slurm state name such as RUNNING, got {value!r:.100}")
    return value


def check_exit_code(value: object, what: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
        raise ValidationError(f"{what} must be an integer in 0..255 or None, got {value!r:.100}")
    return value


def check_seen_at(value: object, what: str) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ValidationError(f"{what} must be a timezone-aware datetime, got {value!r:.100}")
    return value.astimezone(dt.timezone.utc)


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobStateRecord:
    """One state of one job of an experiment, as a poller saw it at `seen_at`."""

    slurm_job_id: str
    state: str
    reason: str | None = None
    exit_code: int | None = None
    seen_at: dt.datetime

    def __post_init__(self) -> None:
        check_line(self.slurm_job_id, "JobStateRecord.slurm_job_id", MAX_LINE)
        check_state(self.state, "JobStateRecord.state")
        if self.reason is not None:
            check_line(self.reason, "JobStateRecord.reason", MAX_LINE)
        check_exit_code(self.exit_code, "JobStateRecord.exit_code")
        object.__setattr__(self, "seen_at", check_seen_at(self.seen_at, "JobStateRecord.seen_at"))


def records_of(records: object) -> list[JobStateRecord]:
    if isinstance(records, (str, bytes)) or not hasattr(records, "__iter__"):
        raise ValidationError(f"record_job_states needs a list of JobStateRecord, got {records!r:.100}")
    found = list(records)
    if len(found) > MAX_STATES_PER_CALL:
        raise ValidationError(
            f"record_job_states takes at most {MAX_STATES_PER_CALL:,} states, got {len(found):,}"
        )
    for r in found:
        if not isinstance(r, JobStateRecord):
            raise ValidationError(f"record_job_states needs JobStateRecord items, got {r!r:.100}")
    return found


def record_to_json(record: JobStateRecord) -> dict[str, object]:
    return {
        "slurm_job_id": record.slurm_job_id,
        "state": record.state,
        "reason": record.reason,
        "exit_code": record.exit_code,
        "seen_at": record.seen_at.isoformat(),
    }
