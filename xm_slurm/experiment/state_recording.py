"""Job states into the store: what this process's watchers saw of an experiment's jobs (`api.job_states`).

A `JobWatcher` calls `StateRecorder` with each status round's answers (no command of its own: the rounds
are those the process pays anyway for `wait`, `show`, `logs -f` or a launch script waiting). Only changes are
sent (state, reason or exit code differs from what this process last recorded), all of a round in one write
(`record_job_states`), one write in flight at a time; what arrives meanwhile goes in the next. A store that
refuses writes (a read-only REST token: HTTP 403) ends the recording for this process, silently; any other
failure is logged and the next change is tried again. `aclose` sends what is left, so the final states of
`xm-slurm wait` land before it exits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping

from xm_slurm.api import JobStateRecord, XManagerAPI
from xm_slurm.errors import ConfigurationError, ValidationError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.status import SlurmJobStatus
from xm_slurm.text_rules import MAX_LINE

log = logging.getLogger(__name__)


def _record(status: SlurmJobStatus, seen_at: dt.datetime) -> JobStateRecord | None:
    code = status.exit_code if status.exit_code is not None and 0 <= status.exit_code <= 255 else None
    reason = " ".join(status.reason.split())[:MAX_LINE] or None  # one line, as Slurm's reasons are
    try:
        return JobStateRecord(
            slurm_job_id=status.job_id.to_string(),
            state=status.state.name,
            reason=reason,
            exit_code=code,
            seen_at=seen_at,
        )
    except ValidationError as e:  # a job id or reason the store would refuse: not worth failing a wait
        log.debug("not recording %s: %s", status.job_id, e)
        return None


class StateRecorder:
    """A `JobWatcher` listener recording the state changes of experiment `xid`'s jobs."""

    def __init__(self, api: XManagerAPI, xid: int) -> None:
        self._api = api
        self._xid = xid
        self._sent: dict[str, tuple[str, str | None, int | None]] = {}
        self._pending: dict[str, JobStateRecord] = {}
        self._task: asyncio.Task[None] | None = None
        self.enabled = True
        self.writes = 0

    def __call__(self, statuses: Mapping[SlurmJobId, SlurmJobStatus], asked_at: float) -> None:
        """One round's answers (called on the event loop, by the watcher)."""
        if not self.enabled:
            return
        seen_at = dt.datetime.fromtimestamp(asked_at, dt.timezone.utc)
        for status in statuses.values():
            if status.source == "grace":  # not yet visible to Slurm: nothing it said
                continue
            record = _record(status, seen_at)
            if record is None:
                continue
            key = (record.state, record.reason, record.exit_code)
            if self._sent.get(record.slurm_job_id) == key:
                continue
            self._sent[record.slurm_job_id] = key
            self._pending[record.slurm_job_id] = record
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        while self._pending and self.enabled:
            batch = list(self._pending.values())
            self._pending.clear()
            try:
                await self._api.arecord_job_states(self._xid, batch)
                self.writes += 1
            except ConfigurationError as e:  # a read-only token (403) or no access: record nothing more
                self.enabled = False
                log.debug("job states are not recorded (the store refused the write): %s", e)
            except Exception as e:  # the store is down: the states stay unrecorded; the next change retries
                for record in batch:
                    self._sent.pop(record.slurm_job_id, None)
                log.warning("could not record job states of experiment %s: %s", self._xid, e)
                return

    async def aclose(self) -> None:
        """Send what is pending (once: a store that fails is not waited for twice)."""
        if self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._pending and self.enabled:
            await self._send()
