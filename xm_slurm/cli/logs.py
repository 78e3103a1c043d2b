"""`xm-slurm logs XID`: the last lines of the jobs' logs, and with `-f` new lines until the jobs end.

With several units, each line is prefixed `[wid N] ` (a unit with several logs adds `[job name] `); with `-f`
their lines are interleaved as they arrive and the command ends when every followed job has ended. A job
without a log (not started, or cancelled before it started) is named on stderr with Slurm's reason.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

from xm_slurm.cli import exit_codes
from xm_slurm.cli.output import warn
from xm_slurm.cli.selection import add_experiment_arguments, label, non_negative_int, opened, select_units

EPILOG = """\
examples:
  xm-slurm logs 12                    # the last 10 lines of every job of experiment 12
  xm-slurm logs 12 --wid 3 -n 100
  xm-slurm logs 12 --identity seed-0 -f   # follow until the job ends
  xm-slurm logs 12 --failed -n 50     # the logs of the units that failed

A job that has not started has no log: that is said on stderr with Slurm's reason (pending: Priority,
Dependency, ...; or ended before it started: CANCELLED, DependencyNeverSatisfied). Exit code 3 when no
selected job has started (nothing printed), else 0; `--failed` with no failed unit says so and exits 0.
"""


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _logs_async(args: argparse.Namespace) -> int:
    from xm_slurm.errors import NotFoundError

    async with opened(args.xid) as (experiment, _):
        units = [u for u in select_units(experiment, args.wid, args.identity) if u.slurm_jobs]
        if not units:
            raise NotFoundError(
                f"experiment {args.xid}: no Slurm job to read logs from in the selected units"
            )
        headings: dict[int, str] = {}
        if args.failed:
            headings = await _failed(units)
            units = [u for u in units if u.unit_id in headings]
            if not units:
                warn("logs", f"experiment {args.xid}: no selected work unit has failed")
                return exit_codes.OK
        prefixes = {u.unit_id: (f"[{label(u)}] " if len(units) > 1 else "") for u in units}
        if not args.follow:
            return await _snapshot(experiment, units, prefixes, headings, args.lines)
        await _notes(experiment, units)  # pending jobs: said once, then followed from when they start

        from xm_slurm.scheduler.logs import interleave

        async def lines_of(unit: Any) -> AsyncIterator[str]:
            async for line in unit.logs(num_lines=args.lines, follow=True):
                yield prefixes[unit.unit_id] + line

        async for line in interleave([lines_of(u) for u in units]):
            _emit(line)
    return exit_codes.OK


async def _snapshot(
    experiment: Any, units: list[Any], prefixes: dict[int, str], headings: dict[int, str], lines: int
) -> int:
    """The last lines of each unit's logs, one unit after the other (stable output). Exit 3 when no unit
    printed anything because none has started; a note on stderr for each job that has not."""
    silent = []
    for unit in units:
        if unit.unit_id in headings:
            _emit(headings[unit.unit_id])
        found = [line async for line in unit.logs(num_lines=lines, wait=False, follow=False)]
        for line in found:
            _emit(prefixes[unit.unit_id] + line)
        if not found:
            silent.append(unit)
    if not lines or not silent:
        return exit_codes.OK
    noted = await _notes(experiment, silent)
    return exit_codes.NOT_FOUND if noted == len(units) else exit_codes.OK


async def _notes(experiment: Any, units: list[Any]) -> int:
    """Say, on stderr, which jobs of `units` have not started (or ended before they did) and why; returns
    how many units have such a job (their statuses: one round per cluster, shared)."""
    from xm_slurm.experiment.outcome import job_notes

    notes = await asyncio.gather(*(job_notes(experiment.connections, u) for u in units))
    for unit, found in zip(units, notes, strict=True):
        for note in found:
            warn("logs", f"{label(unit)}: {note}")
    return sum(1 for found in notes if found)


async def _failed(units: list[Any]) -> dict[int, str]:
    """`{unit id: heading}` of the units whose status is failed (failed, timed out, out of memory, ...)."""
    from xm_slurm.experiment.outcome import describe_job

    statuses = await asyncio.gather(*(u.get_status() for u in units))  # one round per cluster, shared
    return {
        u.unit_id: f"== {label(u)} failed: " + "; ".join(describe_job(j) for j in s.jobs if j.is_terminal)
        for u, s in zip(units, statuses, strict=True)
        if s.is_failed
    }


def _logs(args: argparse.Namespace) -> int:
    return asyncio.run(_logs_async(args))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "logs",
        help="print (and follow) the logs of an experiment's jobs",
        description=(
            "Print the last lines of the logs of an experiment's jobs. With several work units, lines are "
            "prefixed with [wid N]. With -f, keep printing new lines until every selected job has ended."
        ),
        epilog=EPILOG,
    )
    add_experiment_arguments(p)
    p.add_argument(
        "-n",
        "--lines",
        type=non_negative_int,
        default=10,
        metavar="LINES",
        help="last lines per log (default: 10)",
    )
    p.add_argument("-f", "--follow", action="store_true", help="follow new lines until the jobs end")
    p.add_argument(
        "--failed",
        action="store_true",
        help="only the units that failed (failed, timed out, out of memory), each under a heading",
    )
    p.set_defaults(func=_logs)
