"""Job states of many jobs: ONE `squeue` per cluster for all of them, then `sacct` only for what squeue forgot.

`squeue -h -r -t all -O 'JobArrayID:|,State:|,exit_code:|,Reason:' -j <base ids>` is the controller's live view:
it knows every job that is pending or running and every job that ended less than `MinJobAge` ago (300 s by
default), with its raw exit status. `sacct` (slurmdbd) lags it: a short job is PENDING in sacct for its whole
run and then COMPLETED, never RUNNING. So squeue answers first and its row wins; the ids it does not cover
(ended long ago, purged, or an array task it no longer lists) are asked of
`sacct -X -P -n --format=JobID,State,ExitCode,Reason -j <base ids>`. In the common case (every tracked job live
or recently ended) that is ONE command per cluster; with old jobs among them, two. When one of the two fails
(slurmctld busy, accounting off), the other answers alone.

Both print one row per job, array task (`123_4`), pending array range (`123_[5-9]`) and hetjob component
(`123+1`), no steps (sacct thanks to `-X`). Arrays are asked for by their base id, so one `-j` entry covers
every task.

Lag (seen on real clusters): right after sbatch a job has no row at all for a moment, and an array's task rows
appear in sacct seconds after the array is running or even done. So a requested array task with no row is
PENDING, an array asked for as a whole is only final once all its expected tasks have final rows, and a job
with no row at all is PENDING for `grace` seconds after its submission (then UNKNOWN, source "missing").
An array cancelled while its tasks were all pending has only a bare row in sacct (`123|CANCELLED by 0`, seen on
Slurm 22.05 for `--array=1,3`): that row answers each of its tasks with no row of its own.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping

from xm_slurm.job_ids import SlurmJobId
from xm_slurm.status import SlurmJobState, SlurmJobStatus, SlurmWorkUnitStatusEnum

log = logging.getLogger(__name__)

SACCT_FORMAT = "JobID,State,ExitCode,Reason"
SQUEUE_FORMAT = "JobArrayID:|,State:|,exit_code:|,Reason:"
MAX_COMMAND_CHARS = 60_000  # well below ARG_MAX and sshd's packet size; ids are chunked beyond this
#: How long after its sbatch a submission may still be unknown to Slurm (seconds): a job not visible yet is
#: PENDING, not lost; a pending row (recorded before its sbatch) the cluster does not know is dropped only
#: once this old. Longer than one submit can take (3 attempts, each waiting up to 30 s for a lost answer);
#: clocks of the machines involved are assumed to agree within a minute.
SUBMISSION_GRACE_SECONDS = 120.0


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of sacct/squeue output."""

    job_id: SlurmJobId
    state: SlurmJobState
    exit_code: int | None
    signal: int | None
    reason: str
    raw_state: str
    source: str = "sacct"  # the command that printed it: "sacct" or "squeue"


def _reason(raw_state: str, state: SlurmJobState, reason: str) -> str:
    if state is SlurmJobState.UNKNOWN:
        return f"unknown Slurm state {raw_state!r}"
    parts = [raw_state] if raw_state.strip() != state.value else []  # e.g. "CANCELLED by 0"
    if reason and reason not in ("None", "(null)"):
        parts.append(reason)
    return "; ".join(parts)


def parse_sacct(stdout: str) -> list[Row]:
    """Parse `sacct -P -n --format=JobID,State,ExitCode,Reason` output (extra fields are ignored)."""
    rows = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 3:
            log.warning("ignoring sacct line %r", line)
            continue
        job_id = SlurmJobId.parse(fields[0])
        if job_id.is_step:
            continue  # without -X, steps (123.batch) repeat the job's state; the job row is the one we want
        state = SlurmJobState.parse(fields[1])
        exit_code, signal = _parse_exit_code(fields[2])
        reason = fields[3] if len(fields) > 3 else ""
        rows.append(Row(job_id, state, exit_code, signal, _reason(fields[1], state, reason), fields[1]))
    return rows


def _parse_exit_code(text: str) -> tuple[int | None, int | None]:
    code, _, sig = text.partition(":")
    try:
        return int(code), int(sig or 0)
    except ValueError:
        return None, None


def parse_squeue(stdout: str) -> list[Row]:
    """Parse `squeue -h -r -t all -O 'JobArrayID:|,State:|,exit_code:|,Reason:'` output."""
    rows = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", 3)
        if len(fields) < 2:
            log.warning("ignoring squeue line %r", line)
            continue
        state = SlurmJobState.parse(fields[1])
        exit_code = signal = None
        if len(fields) > 2 and fields[2].strip().isdigit():
            status = int(fields[2])  # a raw wait status: exit code in the high byte, signal in the low bits
            exit_code, signal = status >> 8, status & 0x7F
        reason = fields[3].strip() if len(fields) > 3 else ""
        rows.append(
            Row(
                SlurmJobId.parse(fields[0]),
                state,
                exit_code,
                signal,
                _reason(fields[1], state, reason),
                fields[1],
                "squeue",
            )
        )
    return rows


def _chunks(cluster: str | None, bases: list[str], prefix_len: int) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    length = prefix_len
    for base in bases:
        if chunks[-1] and length + len(base) + 1 > MAX_COMMAND_CHARS:
            chunks.append([])
            length = prefix_len
        chunks[-1].append(base)
        length += len(base) + 1
    return chunks


def sacct_commands(job_ids: Iterable[SlurmJobId]) -> list[list[str]]:
    """The sacct argv(s) for these jobs: one per cluster, chunked only by command length."""
    return _commands(["sacct", "-X", "-P", "-n", f"--format={SACCT_FORMAT}"], job_ids)


def squeue_commands(job_ids: Iterable[SlurmJobId]) -> list[list[str]]:
    return _commands(["squeue", "-h", "-r", "-t", "all", "-O", SQUEUE_FORMAT], job_ids)


def _commands(prefix: list[str], job_ids: Iterable[SlurmJobId]) -> list[list[str]]:
    by_cluster: dict[str | None, set[int]] = {}
    for j in job_ids:
        by_cluster.setdefault(j.cluster, set()).add(j.job_id)
    commands = []
    for cluster, bases in sorted(by_cluster.items(), key=lambda kv: kv[0] or ""):
        head = [*prefix, *(["-M", cluster] if cluster else [])]
        for chunk in _chunks(cluster, [str(b) for b in sorted(bases)], sum(len(w) + 3 for w in head) + 3):
            commands.append([*head, "-j", ",".join(chunk)])
    return commands


def _from_row(requested: SlurmJobId, row: Row) -> SlurmJobStatus:
    return SlurmJobStatus(requested, row.state, row.exit_code, row.signal, row.reason, row.source)


_ORDER = [
    SlurmWorkUnitStatusEnum.FAILED,
    SlurmWorkUnitStatusEnum.CANCELLED,
    SlurmWorkUnitStatusEnum.RUNNING,
    SlurmWorkUnitStatusEnum.PENDING,
    SlurmWorkUnitStatusEnum.COMPLETED,
]


def _seen_tasks(rows: Iterable[Row]) -> set[int]:
    seen: set[int] = set()
    for r in rows:
        seen.update(r.job_id.array_tasks())
        if r.job_id.array_task is not None:
            seen.add(r.job_id.array_task)
    return seen


def _is_part(j: SlurmJobId) -> bool:
    return j.array_spec is not None or j.array_task is not None or j.het_offset is not None


class Index:
    """Rows by the ways a requested id can be answered (job ids compared without their cluster)."""

    def __init__(self, rows: Iterable[Row]) -> None:
        self.exact: dict[tuple[int, int | None, int | None], Row] = {}
        self.ranges: dict[int, list[tuple[frozenset[int], Row]]] = {}
        self.parts: dict[int, list[Row]] = {}  # task, pending-range and component rows per base job
        for row in rows:
            j = row.job_id
            if j.array_spec is not None:
                self.ranges.setdefault(j.job_id, []).append((frozenset(j.array_tasks()), row))
            else:
                self.exact[(j.job_id, j.array_task, j.het_offset)] = row
            if _is_part(j):
                self.parts.setdefault(j.job_id, []).append(row)
        self.known = {key[0] for key in self.exact} | set(self.ranges)

    def is_whole(self, key: SlurmJobId, expected: int | None) -> bool:
        """An array or hetjob asked for as a whole (a bare lag row of an array does not make it one)."""
        plain = key.array_task is None and key.het_offset is None and key.array_spec is None
        return plain and (key.job_id in self.parts or expected is not None) and key.job_id in self.known

    def single(self, key: SlurmJobId) -> Row | None:
        """The row of one job / task / component: its own, or the pending range holding the task."""
        found = self.exact.get((key.job_id, key.array_task, key.het_offset))
        if found is None and key.array_task is not None:
            found = next((r for tasks, r in self.ranges.get(key.job_id, []) if key.array_task in tasks), None)
        if found is None and key.array_task is not None:
            # An array cancelled before its tasks were split off is ONE bare accounting row (`123`,
            # "CANCELLED by 0"): it answers every task that has no row of its own.
            bare = self.exact.get((key.job_id, None, None))
            if bare is not None and bare.state.work_unit_status is SlurmWorkUnitStatusEnum.CANCELLED:
                found = bare
        return found

    def covers(self, req: SlurmJobId, expected: int | None) -> bool:
        """Whether these rows alone give `req` its full answer (else sacct is asked too)."""
        key = req.without_step()
        if not self.is_whole(key, expected):
            return self.single(key) is not None
        rows = self.parts.get(key.job_id, [])
        if not any(r.job_id.array_task is not None or r.job_id.array_spec is not None for r in rows):
            return True  # a hetjob: its components come and go together
        if expected is not None:
            return len(_seen_tasks(rows)) >= expected
        # Size unknown: the tasks still listed cannot tell that an earlier, forgotten one failed, so a final
        # answer needs accounting; while some task is live the array is not final anyway.
        return any(not r.state.is_terminal for r in rows)


def uncovered(
    requested: Iterable[SlurmJobId], live: Iterable[Row], array_sizes: Mapping[SlurmJobId, int] | None = None
) -> list[SlurmJobId]:
    """The requested ids that squeue's rows do not fully answer: these are asked of sacct."""
    index, sizes = Index(live), array_sizes or {}
    return [j for j in requested if not index.covers(j, sizes.get(j.without_step().base))]


def merge_rows(live: Iterable[Row], accounting: Iterable[Row]) -> list[Row]:
    """squeue's rows plus sacct's for what squeue does not list: the controller's view wins where it has one."""
    live = list(live)
    index = Index(live)
    covered = {(j, t) for (j, t, _h) in index.exact} | {
        (j, t) for j, ranges in index.ranges.items() for tasks, _ in ranges for t in tasks
    }
    merged = list(live)
    for row in accounting:
        j = row.job_id
        if not _is_part(j):
            if j.job_id in index.known:
                continue  # squeue lists this job (or its tasks): its bare accounting row is older news
        elif j.array_spec is not None:
            if all((j.job_id, t) in covered for t in j.array_tasks()):
                continue
        elif j.array_task is not None:
            if (j.job_id, j.array_task) in covered:
                continue
        elif (j.job_id, None, j.het_offset) in index.exact:
            continue
        merged.append(row)
    return merged


def resolve(
    requested: Iterable[SlurmJobId],
    rows: Iterable[Row],
    *,
    submitted_at: Mapping[SlurmJobId, float] | None = None,
    array_sizes: Mapping[SlurmJobId, int] | None = None,
    grace: float = SUBMISSION_GRACE_SECONDS,
    now: float | None = None,
) -> dict[SlurmJobId, SlurmJobStatus]:
    """Answer each requested id from the rows (pure; see the module docstring for the rules)."""
    now = time.time() if now is None else now
    submitted_at = submitted_at or {}
    array_sizes = array_sizes or {}
    index = Index(rows)
    answers: dict[SlurmJobId, SlurmJobStatus] = {}
    for req in requested:
        key = req.without_step()
        expected = array_sizes.get(key.base)
        if index.is_whole(key, expected):
            bare = index.exact.get((key.job_id, None, None))
            answers[req] = _whole(req, index.parts.get(key.job_id, []), bare, expected)
        elif (found := index.single(key)) is not None:
            answers[req] = _from_row(req, found)
        else:
            answers[req] = _missing(req, key.job_id in index.known, submitted_at.get(req), grace, now)
    return answers


def _whole(req: SlurmJobId, rows: list[Row], bare: Row | None, expected: int | None) -> SlurmJobStatus:
    """An array or hetjob asked for as a whole: its most telling part, but never final while tasks lag."""
    seen = _seen_tasks(rows)
    candidates = rows or ([bare] if bare is not None else [])
    worst = min(candidates, key=lambda r: _ORDER.index(r.state.work_unit_status))
    if expected is not None and len(seen) < expected and worst.state.is_terminal:
        missing = expected - len(seen)
        return SlurmJobStatus(
            req,
            SlurmJobState.PENDING,
            reason=f"{missing} of {expected} array tasks not yet in accounting",
            source=worst.source,
        )
    return _from_row(req, worst)


def _missing(
    req: SlurmJobId, base_known: bool, submitted: float | None, grace: float, now: float
) -> SlurmJobStatus:
    if base_known or (submitted is not None and now - submitted < grace):
        return SlurmJobStatus(
            req, SlurmJobState.PENDING, reason="not yet visible to the scheduler", source="grace"
        )
    return SlurmJobStatus(req, SlurmJobState.UNKNOWN, reason="not found by squeue or sacct", source="missing")
