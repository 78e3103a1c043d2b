"""Job states of many jobs with ONE `sacct` call per cluster (or `squeue` when accounting is unavailable).

Rows come from `sacct -X -P -n --format=JobID,State,ExitCode,Reason -j <base ids>`: `-X` gives one row per job,
array task (`123_4`), pending array range (`123_[5-9]`) and hetjob component (`123+1`), no steps. Arrays
are asked for by their base id, so one `-j` entry covers every task.

Lag (seen on real clusters): right after sbatch a job has no row at all for a moment, and an array's task rows
appear seconds after the array is running or even done. So a requested array task with no row is PENDING, an
array asked for as a whole is only final once all its expected tasks have final rows, and a job with no row
at all is PENDING for `grace` seconds after its submission (then UNKNOWN, source "missing").

When `sacct` fails (e.g. "Slurm accounting storage is disabled", exit 1), `squeue -r -t all` answers instead:
it knows jobs until `MinJobAge` after they end, with the same id forms and the raw exit status.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping

from xm_slurm.errors import StatusUnavailableError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.status import SlurmJobState, SlurmJobStatus, SlurmWorkUnitStatusEnum
from xm_slurm.transport.base import CommandResult, Transport

log = logging.getLogger(__name__)

SACCT_FORMAT = "JobID,State,ExitCode,Reason"
SQUEUE_FORMAT = "JobArrayID:|,State:|,exit_code:|,Reason:"
MAX_COMMAND_CHARS = 60_000  # well below ARG_MAX and sshd's packet size; ids are chunked beyond this
DEFAULT_GRACE_SECONDS = 120.0


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of sacct/squeue output."""

    job_id: SlurmJobId
    state: SlurmJobState
    exit_code: int | None
    signal: int | None
    reason: str
    raw_state: str


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


def _from_row(requested: SlurmJobId, row: Row, source: str) -> SlurmJobStatus:
    return SlurmJobStatus(requested, row.state, row.exit_code, row.signal, row.reason, source)


_ORDER = [
    SlurmWorkUnitStatusEnum.FAILED,
    SlurmWorkUnitStatusEnum.CANCELLED,
    SlurmWorkUnitStatusEnum.RUNNING,
    SlurmWorkUnitStatusEnum.PENDING,
    SlurmWorkUnitStatusEnum.COMPLETED,
]


def resolve(
    requested: Iterable[SlurmJobId],
    rows: Iterable[Row],
    *,
    source: str = "sacct",
    submitted_at: Mapping[SlurmJobId, float] | None = None,
    array_sizes: Mapping[SlurmJobId, int] | None = None,
    grace: float = DEFAULT_GRACE_SECONDS,
    now: float | None = None,
) -> dict[SlurmJobId, SlurmJobStatus]:
    """Answer each requested id from the rows (pure; see the module docstring for the rules)."""
    now = time.time() if now is None else now
    submitted_at = submitted_at or {}
    array_sizes = array_sizes or {}
    exact: dict[tuple[int, int | None, int | None], Row] = {}
    ranges: dict[int, list[tuple[frozenset[int], Row]]] = {}
    parts: dict[int, list[Row]] = {}  # task, pending-range and component rows per base job
    known: set[int] = set()
    for row in rows:
        j = row.job_id
        known.add(j.job_id)
        if j.array_spec is not None:
            ranges.setdefault(j.job_id, []).append((frozenset(j.array_tasks()), row))
        else:
            exact[(j.job_id, j.array_task, j.het_offset)] = row
        if j.array_spec is not None or j.array_task is not None or j.het_offset is not None:
            parts.setdefault(j.job_id, []).append(row)

    answers: dict[SlurmJobId, SlurmJobStatus] = {}
    for req in requested:
        key = req.without_step()
        whole = key.array_task is None and key.het_offset is None and key.array_spec is None
        expected = array_sizes.get(key.base) if whole else None
        if whole and (key.job_id in parts or expected is not None) and key.job_id in known:
            # An array or hetjob asked for as a whole; a bare lag row of an array does not count.
            answers[req] = _whole(
                req, parts.get(key.job_id, []), exact.get((key.job_id, None, None)), expected, source
            )
            continue
        found = exact.get((key.job_id, key.array_task, key.het_offset))
        if found is not None:
            answers[req] = _from_row(req, found, source)
            continue
        if key.array_task is not None:
            pending = [r for tasks, r in ranges.get(key.job_id, []) if key.array_task in tasks]
            if pending:
                answers[req] = _from_row(req, pending[0], source)
                continue
        answers[req] = _missing(req, key.job_id in known, submitted_at.get(req), grace, now)
    return answers


def _whole(
    req: SlurmJobId, rows: list[Row], bare: Row | None, expected: int | None, source: str
) -> SlurmJobStatus:
    """An array or hetjob asked for as a whole: its most telling part, but never final while tasks lag."""
    seen: set[int] = set()
    for r in rows:
        seen.update(r.job_id.array_tasks())
        if r.job_id.array_task is not None:
            seen.add(r.job_id.array_task)
    candidates = rows or ([bare] if bare is not None else [])
    worst = min(candidates, key=lambda r: _ORDER.index(r.state.work_unit_status))
    if expected is not None and len(seen) < expected and worst.state.is_terminal:
        missing = expected - len(seen)
        return SlurmJobStatus(
            req,
            SlurmJobState.PENDING,
            reason=f"{missing} of {expected} array tasks not yet in accounting",
            source=source,
        )
    return _from_row(req, worst, source)


def _missing(
    req: SlurmJobId, base_known: bool, submitted: float | None, grace: float, now: float
) -> SlurmJobStatus:
    if base_known or (submitted is not None and now - submitted < grace):
        return SlurmJobStatus(
            req, SlurmJobState.PENDING, reason="not yet visible to the scheduler", source="grace"
        )
    return SlurmJobStatus(req, SlurmJobState.UNKNOWN, reason="not found by sacct or squeue", source="missing")


def _sacct_failed(result: CommandResult) -> str:
    return f"`{result.command}` exited with {result.exit_status}: {result.stderr.strip() or result.stdout.strip()}"


async def query_rows(
    transport: Transport, job_ids: Iterable[SlurmJobId], *, use_sacct: bool = True
) -> tuple[list[Row], str]:
    """Rows for these jobs and their source ("sacct" or "squeue"), one command per cluster/chunk."""
    ids = list(job_ids)
    if not ids:
        return [], "sacct"
    failure = "sacct not used"
    if use_sacct:
        rows: list[Row] = []
        for argv in sacct_commands(ids):
            result = await transport.run(argv, check=False, idempotent=True)
            if result.exit_status != 0:
                failure = _sacct_failed(result)
                log.info("sacct unavailable (%s); falling back to squeue", failure)
                break
            rows += parse_sacct(result.stdout)
        else:
            return rows, "sacct"
    rows = []
    for argv in squeue_commands(ids):
        result = await transport.run(argv, check=False, idempotent=True)
        # With a single unknown id squeue exits 1 ("Invalid job id specified"): that just means no rows.
        if result.exit_status != 0 and "invalid job id" not in result.stderr.lower():
            raise StatusUnavailableError(
                f"neither sacct nor squeue could report job states ({failure}; squeue: {_sacct_failed(result)})"
            )
        rows += parse_squeue(result.stdout)
    return rows, "squeue"


async def get_job_states(
    transport: Transport,
    job_ids: Iterable[SlurmJobId | str],
    *,
    submitted_at: Mapping[SlurmJobId, float] | None = None,
    array_sizes: Mapping[SlurmJobId, int] | None = None,
    grace: float = DEFAULT_GRACE_SECONDS,
    use_sacct: bool = True,
) -> dict[SlurmJobId, SlurmJobStatus]:
    """The state of every requested job / array task / hetjob component, with ONE sacct per cluster."""
    ids = [SlurmJobId.parse(j) for j in job_ids]
    rows, source = await query_rows(transport, ids, use_sacct=use_sacct)
    return resolve(ids, rows, source=source, submitted_at=submitted_at, array_sizes=array_sizes, grace=grace)
