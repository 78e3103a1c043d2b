"""Job states as functions of an open transaction (see `api.job_states`): record, and read back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from xm_slurm.api.job_states import JobStateRecord
from xm_slurm.api.storage import schema as t
from xm_slurm.errors import NotFoundError


def state_fields(row: Any) -> dict[str, Any]:
    """A job row's last known state, as `SlurmJob`'s fields (SQLite drops the zone: we store UTC)."""
    seen = row.state_seen_at
    if seen is not None and seen.tzinfo is None:
        seen = seen.replace(tzinfo=dt.timezone.utc)
    return {
        "state": row.state,
        "state_reason": row.state_reason,
        "exit_code": row.exit_code,
        "state_seen_at": seen,
    }


def record_job_states(conn: sa.Connection, xid: int, records: Sequence[JobStateRecord]) -> None:
    """Set each job's last known state, unless the store holds a later observation. Jobs the experiment
    does not hold (e.g. a dependency of another experiment the poller also watched) are skipped."""
    e, w, j = t.experiments, t.work_units, t.jobs
    if conn.execute(sa.select(e.c.id).where(e.c.id == xid)).first() is None:
        raise NotFoundError(f"experiment {xid} does not exist")
    if not records:
        return
    units = sa.select(w.c.id).where(w.c.experiment_id == xid).scalar_subquery()
    newer = sa.or_(j.c.state_seen_at.is_(None), j.c.state_seen_at <= sa.bindparam("seen"))
    update = (
        sa.update(j)
        .where(j.c.work_unit_id.in_(units), j.c.slurm_job_id == sa.bindparam("job"), newer)
        .values(
            state=sa.bindparam("new_state"),
            state_reason=sa.bindparam("reason"),
            exit_code=sa.bindparam("code"),
            state_seen_at=sa.bindparam("seen"),
        )
    )
    latest: dict[str, JobStateRecord] = {}
    for r in records:  # the latest observation of each job in the batch
        if r.slurm_job_id not in latest or latest[r.slurm_job_id].seen_at <= r.seen_at:
            latest[r.slurm_job_id] = r
    conn.execute(
        update,
        [
            {
                "job": r.slurm_job_id,
                "new_state": r.state,
                "reason": r.reason,
                "code": r.exit_code,
                "seen": r.seen_at.astimezone(dt.timezone.utc),
            }
            for r in latest.values()
        ],
    )
