"""One status round: ONE `squeue` for every tracked job, then ONE `sacct` for the jobs squeue does not cover.

Why this order, and what each command knows, is in `states`' docstring; this module runs the commands (one
per cluster, chunked only by command length), tolerates either one failing, and merges their rows with
`states.merge_rows` (squeue's row wins).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping

from xm_slurm.errors import StatusUnavailableError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler.states import (
    SUBMISSION_GRACE_SECONDS,
    Row,
    merge_rows,
    parse_sacct,
    parse_squeue,
    resolve,
    sacct_commands,
    squeue_commands,
    uncovered,
)
from xm_slurm.status import SlurmJobStatus
from xm_slurm.transport.base import CommandResult, Transport

log = logging.getLogger(__name__)


def _failed(result: CommandResult) -> str:
    return f"`{result.command}` exited with {result.exit_status}: {result.stderr.strip() or result.stdout.strip()}"


@dataclasses.dataclass(frozen=True)
class StatusRows:
    """What one status round printed: rows (each knows its command) and why a command could not answer."""

    rows: list[Row]
    commands: tuple[str, ...]  # the programs that answered, in order: ("squeue",), ("squeue", "sacct"), ...
    sacct_failure: str | None = None  # set when sacct was needed and failed (accounting off or slurmdbd down)
    squeue_failure: str | None = None


async def _run_all(
    transport: Transport, commands: list[list[str]], parse: Callable[[str], list[Row]]
) -> tuple[list[Row], str | None]:
    rows: list[Row] = []
    for argv in commands:
        result = await transport.run(argv, check=False, idempotent=True)
        # With a single unknown id squeue exits 1 ("Invalid job id specified"): that just means no rows.
        if result.exit_status != 0 and not (
            argv[0] == "squeue" and "invalid job id" in result.stderr.lower()
        ):
            return rows, _failed(result)
        rows += parse(result.stdout)
    return rows, None


async def query_rows(
    transport: Transport,
    job_ids: Iterable[SlurmJobId],
    *,
    use_sacct: bool = True,
    array_sizes: Mapping[SlurmJobId, int] | None = None,
) -> StatusRows:
    """ONE squeue for these jobs, then ONE sacct for those it does not cover (per cluster / length chunk).

    `use_sacct=False`: accounting is known to be off; squeue alone. `array_sizes` (by base id): arrays asked
    for as a whole, so that one squeue no longer lists every task of is completed from sacct.
    Raises `StatusUnavailableError` when neither command answers.
    """
    ids = list(job_ids)
    if not ids:
        return StatusRows([], ())
    live, squeue_failure = await _run_all(transport, squeue_commands(ids), parse_squeue)
    if squeue_failure is None:
        rest = uncovered(ids, live, array_sizes)
        if not rest:
            return StatusRows(live, ("squeue",))
    else:
        log.info("squeue failed (%s); asking sacct for every job", squeue_failure)
        live, rest = [], ids
    if not use_sacct:
        if squeue_failure is None:
            return StatusRows(live, ("squeue",))
        raise StatusUnavailableError(f"squeue could not report job states and sacct is off: {squeue_failure}")
    accounting, sacct_failure = await _run_all(transport, sacct_commands(rest), parse_sacct)
    if sacct_failure is None:
        answered = ("sacct",) if squeue_failure else ("squeue", "sacct")
        return StatusRows(merge_rows(live, accounting), answered, None, squeue_failure)
    if squeue_failure is not None:
        raise StatusUnavailableError(
            f"neither squeue nor sacct could report job states (squeue: {squeue_failure}; sacct: {sacct_failure})"
        )
    log.info("sacct unavailable (%s); answering from squeue alone", sacct_failure)
    return StatusRows(live, ("squeue",), sacct_failure)


async def get_job_states(
    transport: Transport,
    job_ids: Iterable[SlurmJobId | str],
    *,
    submitted_at: Mapping[SlurmJobId, float] | None = None,
    array_sizes: Mapping[SlurmJobId, int] | None = None,
    grace: float = SUBMISSION_GRACE_SECONDS,
    use_sacct: bool = True,
) -> dict[SlurmJobId, SlurmJobStatus]:
    """The state of every requested job / array task / hetjob component: one squeue (+ one sacct) per cluster."""
    ids = [SlurmJobId.parse(j) for j in job_ids]
    found = await query_rows(transport, ids, use_sacct=use_sacct, array_sizes=array_sizes)
    return resolve(ids, found.rows, submitted_at=submitted_at, array_sizes=array_sizes, grace=grace)
