"""`xm-slurm cancel XID` (one scancel per cluster) and `xm-slurm wait XID` (exit code = outcome)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from xm_slurm.cli import exit_codes
from xm_slurm.cli.output import confirm, print_json, print_table
from xm_slurm.cli.selection import add_experiment_arguments, non_negative_int, opened, select_units

if TYPE_CHECKING:
    from xm_slurm.job_ids import SlurmJobId

CANCEL_EPILOG = """\
examples:
  xm-slurm cancel 12                  # every job of experiment 12 (one scancel per cluster)
  xm-slurm cancel 12 --wid 3 --wid 4
  xm-slurm cancel latest --yes        # no question (on a terminal, cancelling several jobs asks first)
"""

WAIT_EPILOG = """\
examples:
  xm-slurm wait 12 && echo all done
  xm-slurm wait 12 --timeout 3600 --json

exit codes: 0 every work unit completed; 4 a work unit failed, timed out, ran out of memory or was
cancelled; 5 --timeout passed first; 3 no such experiment or unit; 1 the states could not be read.
"""


def _jobs_by_cluster(units: list[Any]) -> dict[Any, list[SlurmJobId]]:
    out: dict[Any, list[SlurmJobId]] = {}
    for unit in units:
        for job in unit.slurm_jobs:
            out.setdefault(job.ssh, []).append(job.job_id)
    return out


async def _cancel_async(args: argparse.Namespace) -> int:
    from xm_slurm.errors import NotFoundError
    from xm_slurm.scheduler import cancel

    async with opened(args.xid) as (experiment, _):
        units = select_units(experiment, args.wid, args.identity)
        by_cluster = _jobs_by_cluster(units)
        if not by_cluster:
            raise NotFoundError(f"experiment {args.xid}: the selected units have no Slurm job to cancel")
        count = sum(len(ids) for ids in by_cluster.values())
        # More than one job: ask on a terminal (--yes skips); scripts without a terminal proceed as before.
        question = f"Cancel {count} jobs of experiment {args.xid} ({len(units)} units)?"
        if count > 1 and not confirm(question, assume_yes=args.yes, unattended=True):
            print(f"xm-slurm cancel: experiment {args.xid}: nothing cancelled", file=sys.stderr)
            return exit_codes.FAILURE
        for ssh, ids in by_cluster.items():
            await cancel(experiment.connections.transport(ssh), ids)
            print(f"cancelled {len(ids)} job(s) on {ssh.destination}: {' '.join(str(i) for i in ids)}")
    return exit_codes.OK


def _cancel(args: argparse.Namespace) -> int:
    return asyncio.run(_cancel_async(args))


async def _wait_async(args: argparse.Namespace) -> int:
    from xm_slurm.cli.live import watch
    from xm_slurm.experiment.outcome import explain, outcomes, report_lines

    async with opened(args.xid) as (experiment, _):
        units = select_units(experiment, args.wid, args.identity, auxiliary=False)
        # The live view on stdout (a table on a terminal, a line per change otherwise); none with --json.
        try:
            final = await asyncio.wait_for(watch(experiment, units, quiet=args.json), args.timeout)
        except asyncio.TimeoutError:
            print(
                f"xm-slurm wait: experiment {args.xid}: jobs still running after {args.timeout:g} s",
                file=sys.stderr,
            )
            return exit_codes.TIMEOUT
        results = outcomes(units, final)
        explained, more = await explain(experiment.connections, results, final, num_lines=args.log_lines)
    outcome = [
        {
            "wid": r.unit.unit_id,
            "identity": r.unit.identity,
            "status": r.status.status.label if r.has_jobs else "no jobs",
            "message": r.status.message if r.has_jobs else "",
            "ok": r.ok,
        }
        for r in results
    ]
    ok = all(u["ok"] for u in outcome)
    if args.json:
        why = {e.label: e for e in explained}
        for u in outcome:
            e = why.get(f"wid {u['wid']}")
            if e is not None:
                u.update(jobs=list(e.jobs), notes=list(e.notes), log_tail=list(e.log))
        print_json({"xid": args.xid, "ok": ok, "work_units": outcome})
    else:
        rows = [[f"wid {u['wid']}", u["identity"], u["status"], u["message"]] for u in outcome]
        print_table(["unit", "identity", "status", "detail"], rows)
        hint = f" (xm-slurm logs {args.xid} --failed)"
        for line in report_lines(explained, more, more_hint=hint):
            print(line)
    if not ok:
        bad = [str(u["wid"]) for u in outcome if not u["ok"]]
        print(
            f"xm-slurm wait: experiment {args.xid}: work unit(s) {', '.join(bad)} did not complete",
            file=sys.stderr,
        )
        return exit_codes.JOBS_FAILED
    return exit_codes.OK


def _wait(args: argparse.Namespace) -> int:
    return asyncio.run(_wait_async(args))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cancel",
        help="cancel an experiment's jobs (scancel)",
        description="Cancel the Slurm jobs of an experiment, or of some of its units: one scancel per cluster.",
        epilog=CANCEL_EPILOG,
    )
    add_experiment_arguments(p)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask before cancelling several jobs")
    p.set_defaults(func=_cancel)

    p = subparsers.add_parser(
        "wait",
        help="wait until an experiment's work units end; exit 0 only if all completed",
        description=(
            "Wait until every work unit of an experiment (or the selected ones) has ended. Exits 0 only "
            "when all completed; see the exit codes below. Auxiliary units are not waited for."
        ),
        epilog=WAIT_EPILOG,
    )
    add_experiment_arguments(p)
    p.add_argument(
        "--timeout", type=_seconds, default=None, metavar="SECONDS", help="give up after this long"
    )
    p.add_argument(
        "--log-lines",
        type=non_negative_int,
        default=10,
        metavar="N",
        help="last log lines shown for each unit that did not complete (default: 10; 0: none)",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON (no live view)")
    p.set_defaults(func=_wait)
