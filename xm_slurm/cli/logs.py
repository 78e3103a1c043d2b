"""`xm-slurm logs XID`: the last lines of the jobs' logs, and with `-f` new lines until the jobs end.

With several units, each line is prefixed `[wid N] ` (a unit with several logs adds `[job name] `); with `-f`
their lines are interleaved as they arrive and the command ends when every followed job has ended.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

from xm_slurm.cli.selection import add_experiment_arguments, label, opened, select_units

EPILOG = """\
examples:
  xm-slurm logs 12                    # the last 10 lines of every job of experiment 12
  xm-slurm logs 12 --wid 3 -n 100
  xm-slurm logs 12 --identity seed-0 -f   # follow until the job ends
"""


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


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
        prefixes = {u.unit_id: (f"[{label(u)}] " if len(units) > 1 else "") for u in units}
        if not args.follow:
            for unit in units:  # one unit after the other: stable output
                async for line in unit.logs(num_lines=args.lines, wait=False, follow=False):  # a snapshot
                    _emit(prefixes[unit.unit_id] + line)
            return 0

        from xm_slurm.scheduler.logs import interleave

        async def lines_of(unit: Any) -> AsyncIterator[str]:
            async for line in unit.logs(num_lines=args.lines, follow=True):
                yield prefixes[unit.unit_id] + line

        async for line in interleave([lines_of(u) for u in units]):
            _emit(line)
    return 0


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
        type=_non_negative,
        default=10,
        metavar="LINES",
        help="last lines per log (default: 10)",
    )
    p.add_argument("-f", "--follow", action="store_true", help="follow new lines until the jobs end")
    p.set_defaults(func=_logs)
