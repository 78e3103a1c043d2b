"""What the dashboard reads from (and the server records in) the store beyond the store's operations: the
name of the token that created each experiment (revision 0010) and the units' last known states.

A unit's state is its current job's (the job no other job of the unit retries); the job's last known state
is what the pollers with write access recorded (`SlurmJob.state`, revision 0011).
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from xm_slurm.api.models import SlurmJob, WorkUnit
from xm_slurm.api.storage import schema as t

#: A unit with no job recorded yet, and a job whose state no poller has recorded.
NO_JOB = "no job"
UNKNOWN = "unknown"


def record_creator(conn: sa.Connection, xid: int, token_name: str) -> int:
    """Note which token created experiment `xid` (the server calls this in the insert's transaction)."""
    conn.execute(sa.update(t.experiments).where(t.experiments.c.id == xid).values(created_by=token_name))
    return xid


def creators(conn: sa.Connection, xids: Sequence[int]) -> dict[int, str | None]:
    """Each experiment's creating token name (None: created before revision 0010, or through SQLite)."""
    if not xids:
        return {}
    e = t.experiments.c
    return {r.id: r.created_by for r in conn.execute(sa.select(e.id, e.created_by).where(e.id.in_(xids)))}


def state_counts(conn: sa.Connection, xids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per experiment, how many units are in each last known state (in one query)."""
    if not xids:
        return {}
    w, j = t.work_units.c, t.jobs.c
    rows = conn.execute(
        sa.select(w.experiment_id, w.id, j.slurm_job_id, j.retry_of, j.state)
        .select_from(t.work_units.outerjoin(t.jobs, j.work_unit_id == w.id))
        .where(w.experiment_id.in_(xids))
    ).all()
    by_unit: dict[tuple[int, int], list[Any]] = collections.defaultdict(list)
    for r in rows:
        by_unit[(r.experiment_id, r.id)].append(r)
    counts: dict[int, dict[str, int]] = {xid: collections.Counter() for xid in xids}
    for (xid, _), unit_rows in by_unit.items():
        counts[xid][_unit_state_of_rows(unit_rows)] += 1
    return {xid: dict(sorted(c.items())) for xid, c in counts.items()}


def _unit_state_of_rows(rows: Iterable[Any]) -> str:
    jobs = [r for r in rows if r.slurm_job_id is not None]
    if not jobs:
        return NO_JOB
    retried = {r.retry_of for r in jobs if r.retry_of}
    current = [r for r in jobs if r.slurm_job_id not in retried] or jobs
    return str(current[-1].state or UNKNOWN)


def job_state(job: SlurmJob) -> tuple[str | None, dt.datetime | None]:
    """A job's last known state and when it was seen (None, None when no poller recorded it)."""
    return job.state, job.state_seen_at


def current_job(unit: WorkUnit) -> SlurmJob | None:
    if not unit.jobs:
        return None
    retried = {j.retry_of for j in unit.jobs if j.retry_of}
    current = [j for j in unit.jobs if j.slurm_job_id not in retried] or list(unit.jobs)
    return current[-1]


def unit_state(unit: WorkUnit) -> str:
    job = current_job(unit)
    if job is None:
        return NO_JOB
    return job_state(job)[0] or UNKNOWN
