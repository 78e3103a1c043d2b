"""`xm-slurm retry XID`: resubmit the failed trials of an experiment (only those), on the same work units.

Not registered by this module: the lead adds "retry" to `_SUBCOMMAND_MODULES` in `xm_slurm/cli/__init__.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from xm_slurm.cli import exit_codes
from xm_slurm.cli.output import print_json, print_table
from xm_slurm.cli.selection import add_experiment_arguments, opened, select_units

if TYPE_CHECKING:
    from xm_slurm.status import SlurmJobStatus

RETRY_EPILOG = """\
examples:
  xm-slurm retry 12                   # every failed work unit of experiment 12
  xm-slurm retry 12 --wid 3 --cancelled
  xm-slurm retry 12 --cancelled       # also the jobs Slurm cancelled because a dependency failed: they
                                      # wait for the retried jobs they depend on
"""


async def _retry_async(args: argparse.Namespace) -> int:
    # Deferred: the experiment layer loads xmanager, which `xm-slurm --help` must not pay for.
    from xm_slurm.experiment.retrying import retry_failed

    async with opened(args.xid) as (experiment, _):
        units = select_units(experiment, args.wid, args.identity, auxiliary=False)
        before = {u.unit_id: {j.job_id for j in u.slurm_jobs} for u in units}
        left_out: list[tuple[Any, SlurmJobStatus]] = []
        retried = await retry_failed(
            experiment.launcher,
            units,
            include_cancelled=args.cancelled,
            resume=args.resume,
            left_out=left_out,
        )
        rows = []
        for u in retried:
            new = [j for j in u.slurm_jobs if j.job_id not in before[u.unit_id]]
            # `retry_of[i]` is the stored lineage of `jobs[i]`: the job it replaced.
            rows.append(
                {
                    "wid": u.unit_id,
                    "jobs": [str(j.job_id) for j in new],
                    "retry_of": [str(j.retry_of) for j in new],
                }
            )
    _note_left_out(args.xid, left_out)
    if args.json:
        print_json({"xid": args.xid, "retried": rows})
    elif rows:
        table = [
            [f"wid {r['wid']}", job, old]
            for r in rows
            for job, old in zip(r["jobs"], r["retry_of"], strict=True)
        ]
        print_table(["unit", "new job", "retry of"], table)
    else:
        print(f"experiment {args.xid}: nothing to retry (no failed work unit among those selected)")
    return exit_codes.OK


def _note_left_out(xid: int, left_out: list[tuple[Any, SlurmJobStatus]]) -> None:
    """Say (on stderr) which cancelled jobs were left as they are, and how to retry them."""
    if not left_out:
        return
    for unit, status in left_out:
        print(f"not retried: {unit}: {status.describe()}", file=sys.stderr)
    print(
        f"cancelled work units are retried with `xm-slurm retry {xid} --cancelled` (a job cancelled because "
        "its dependency failed then waits for the retried jobs)",
        file=sys.stderr,
    )


def _retry(args: argparse.Namespace) -> int:
    return asyncio.run(_retry_async(args))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "retry",
        help="resubmit the failed trials of an experiment",
        description=(
            "Resubmit the failed jobs of an experiment's work units (or the selected ones), and only those: "
            "the failed tasks of each array run again under their original indices, from the script they "
            "were submitted with; the new jobs are recorded on the same work units. A retried job keeps its "
            "dependency, re-pointed at the retried jobs, and is submitted after them."
        ),
        epilog=RETRY_EPILOG,
    )
    add_experiment_arguments(p)
    p.add_argument(
        "--cancelled",
        action="store_true",
        help="retry cancelled work units too (those cancelled because a dependency failed wait for its retry)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep each job's run identity (XM_SLURM_RUN_ID, WANDB_RUN_ID): W&B/MLflow continue the run "
        "(default: the retry starts a new run identity)",
    )
    p.add_argument("--json", action="store_true", help="print what was resubmitted as JSON")
    p.set_defaults(func=_retry)
