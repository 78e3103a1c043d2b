"""`xm-slurm list` (experiments in the metadata store) and `xm-slurm show XID` (units and LIVE job states).

`show` asks each cluster once: one batched `sacct` for every job (`squeue` where accounting is off), then,
only if some job is pending, one `squeue --start`-style query for the reason and the expected start time,
and only if some job has ended, ONE `sacct` for what the ended jobs used (`scheduler.usage`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING, Any

from xm_slurm.cli.output import print_json, print_table
from xm_slurm.cli.selection import add_experiment_arguments, label, opened, positive_int, select_units
from xm_slurm.cli.show_table import print_show_table

if TYPE_CHECKING:
    from xm_slurm.job_ids import SlurmJobId
    from xm_slurm.scheduler.usage import JobUsage
    from xm_slurm.status import SlurmJobStatus
    from xm_slurm.transport import Transport


# `squeue -O` fields of a pending job: its id (array tasks one per line with -r), start estimate, reason.
START_FORMAT = "JobArrayID:|,StartTime:|,Reason:"

LIST_EPILOG = """\
examples:
  xm-slurm list                       # the 20 newest experiments that hold a work unit, units per state
  xm-slurm list --no-states           # from the store alone, without asking the clusters
  xm-slurm list --all                 # also those without one (marked empty)
  xm-slurm list --tag baseline --title resnet --limit 5
  xm-slurm list --json | jq '.[].xid'
"""

SHOW_EPILOG = """\
examples:
  xm-slurm show 12                    # every unit and job of experiment 12, with live states
  xm-slurm show 12 --wid 3 --json
  xm-slurm show 12 --watch            # live until every job has ended, then the table
"""


# --- list ---------------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    from xm_slurm.api import client

    api = client()
    summaries = api.list_experiments(
        title_contains=args.title, tag=args.tag, limit=args.limit, include_empty=args.all
    )
    counts: dict[int, dict[str, int] | None] = {}
    if args.states and summaries:
        from xm_slurm.cli.list_states import unit_state_counts

        records = [api.get_experiment(s.xid) for s in summaries if s.num_work_units]
        counts = asyncio.run(unit_state_counts(records))
    if args.json:
        print_json(
            [
                {
                    "xid": s.xid,
                    "title": s.title,
                    "description": s.description,
                    "note": s.note,
                    "tags": sorted(s.tags),
                    "num_work_units": s.num_work_units,
                    "empty": s.num_work_units == 0,
                    "created_at": s.created_at,
                    **({"states": counts.get(s.xid, {})} if args.states else {}),
                }
                for s in summaries
            ]
        )
        return 0
    from xm_slurm.cli.list_states import counts_text
    from xm_slurm.cli.output import Column

    rows = [
        [
            s.xid,
            s.title,
            s.tags,
            _units(s.num_work_units),
            *([counts_text(counts.get(s.xid, {}))] if args.states else []),
            _time(s.created_at),
        ]
        for s in summaries
    ]
    states = [Column("states")] if args.states else []
    print_table(
        [
            Column("xid", no_wrap=True),
            Column("title"),
            Column("tags"),
            Column("units", no_wrap=True),
            *states,
            Column("created"),
        ],
        rows,
    )
    return 0


def _units(count: int) -> str:
    # An experiment without work units: a launch killed before its first add, or one still starting.
    return f"{count}" if count else "0 (empty)"


def _time(iso: str | None) -> str | None:
    return None if iso is None else iso.replace("T", " ")[:19]


# --- show ---------------------------------------------------------------------------------------------


def parse_start_rows(stdout: str) -> dict[str, tuple[str | None, str]]:
    """`{job id: (expected start or None, reason)}` from `squeue -h -r -O START_FORMAT` output."""
    from xm_slurm.job_ids import SlurmJobId

    out: dict[str, tuple[str | None, str]] = {}
    for line in stdout.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 2 or not fields[0]:
            continue
        start = fields[1] if fields[1] not in ("", "N/A", "Unknown", "(null)") else None
        reason = fields[2] if len(fields) > 2 and fields[2] not in ("None", "(null)") else ""
        try:
            jid = SlurmJobId.parse(fields[0])
        except ValueError:
            continue
        if jid.array_spec is not None:  # a pending range that -r did not expand
            for task in jid.array_tasks():
                out[str(jid.task(task))] = (start, reason)
        else:
            out[str(jid)] = (start, reason)
    return out


async def pending_details(
    transport: Transport, job_ids: list[SlurmJobId]
) -> dict[str, tuple[str | None, str]]:
    """Expected start time and reason of pending jobs, ONE squeue for all of them (best effort)."""
    bases = sorted({str(j.job_id) for j in job_ids})
    if not bases:
        return {}
    argv = ["squeue", "-h", "-r", "-t", "PD", "-O", START_FORMAT, "-j", ",".join(bases)]
    result = await transport.run(argv, check=False, idempotent=True)
    return parse_start_rows(result.stdout) if result.exit_status == 0 else {}


def _detail(
    status: SlurmJobStatus | None,
    start: str | None,
    reason: str,
    retry_of: SlurmJobId | None = None,
    usage: JobUsage | None = None,
) -> str:
    parts = [] if retry_of is None else [f"retry of {retry_of}"]  # the stored lineage, not the name
    if status is None:
        return "; ".join(parts)
    if status.exit_code or status.signal:
        parts.append(f"exit code {status.exit_code}" + (f", signal {status.signal}" if status.signal else ""))
    reason = reason or status.reason
    if reason:
        parts.append(reason)
    if start:
        parts.append(f"expected start {start.replace('T', ' ')}")
    if usage is not None and usage.summary():
        parts.append(usage.summary())
    return "; ".join(parts)


async def ended_usage(transport: Transport, job_ids: list[SlurmJobId]) -> dict[str, JobUsage]:
    """What the ended jobs used: ONE sacct for all of them (nothing asked when none has ended)."""
    from xm_slurm.scheduler.usage import job_usage

    return await job_usage(transport, job_ids) if job_ids else {}


async def _show_async(args: argparse.Namespace) -> int:
    from xm_slurm.experiment.provenance import PREFIX as PROVENANCE_PREFIX
    from xm_slurm.experiment.provenance import provenance_of, summary
    from xm_slurm.status import SlurmJobState, SlurmWorkUnitStatus

    if args.watch:  # the live view until every job has ended (cli/live.py), then the table below
        from xm_slurm.cli.live import watch_show

        await watch_show(args)
    async with opened(args.xid) as (experiment, record):
        units = select_units(experiment, args.wid, args.identity)
        by_cluster: dict[Any, list[SlurmJobId]] = {}
        for unit in units:
            for job in unit.slurm_jobs:
                by_cluster.setdefault(job.ssh, []).append(job.job_id)
        clusters = list(by_cluster)
        answers = await asyncio.gather(*(experiment.connections.statuses(s, by_cluster[s]) for s in clusters))
        states = {
            (ssh, jid): st for ssh, found in zip(clusters, answers, strict=True) for jid, st in found.items()
        }
        pending = {
            ssh: [
                j
                for j in by_cluster[ssh]
                if (st := states.get((ssh, j))) and st.state is SlurmJobState.PENDING
            ]
            for ssh in clusters
        }
        ended = {
            ssh: [j for j in by_cluster[ssh] if (st := states.get((ssh, j))) and st.state.is_terminal]
            for ssh in clusters
        }
        used: dict[Any, dict[str, JobUsage]] = dict(
            zip(
                clusters,
                await asyncio.gather(
                    *(ended_usage(experiment.connections.transport(s), ended[s]) for s in clusters)
                ),
                strict=True,
            )
        )
        waiting = [ssh for ssh in clusters if pending[ssh]]
        starts: dict[Any, dict[str, tuple[str | None, str]]] = dict(
            zip(
                waiting,
                await asyncio.gather(
                    *(pending_details(experiment.connections.transport(s), pending[s]) for s in waiting)
                ),
                strict=True,
            )
        )

    stored = {wu.wid: wu for wu in record.work_units}
    out_units = []
    for unit in units:
        jobs = []
        for job in unit.slurm_jobs:
            st = states.get((job.ssh, job.job_id))
            start, reason = starts.get(job.ssh, {}).get(str(job.job_id), (None, ""))
            usage = used.get(job.ssh, {}).get(str(job.job_id))
            jobs.append(
                {
                    "name": job.name,
                    "slurm_job_id": str(job.job_id),
                    "retry_of": None if job.retry_of is None else str(job.retry_of),
                    "cluster": job.ssh.destination,
                    "state": st.state.value if st else None,
                    "status": st.work_unit_status.label if st else None,
                    "exit_code": st.exit_code if st else None,
                    "signal": st.signal if st else None,
                    "reason": reason or (st.reason if st else ""),
                    "expected_start": start,
                    "source": st.source if st else None,
                    "usage": None if usage is None else usage.to_json(),
                    "detail": _detail(st, start, reason, job.retry_of, usage),
                }
            )
        found = [s for j in unit.slurm_jobs if (s := states.get((j.ssh, j.job_id))) is not None]
        wu_record = stored.get(unit.unit_id)
        try:
            unit_args = json.loads(wu_record.args) if wu_record and wu_record.args else None
        except ValueError:
            unit_args = wu_record.args if wu_record else None
        out_units.append(
            {
                "wid": unit.unit_id,
                "role": "auxiliary" if label(unit).startswith("aux") else "work_unit",
                "identity": unit.identity,
                "status": SlurmWorkUnitStatus(found).status.label if found else "no jobs",
                "args": unit_args,
                "artifacts": {a.name: a.uri for a in wu_record.artifacts} if wu_record else {},
                "jobs": jobs,
            }
        )

    if args.json:
        print_json(
            {
                "xid": record.xid,
                "title": record.title,
                "description": record.description,
                "note": record.note,
                "tags": sorted(record.tags),
                "created_at": record.created_at,
                "artifacts": {a.name: a.uri for a in record.artifacts},
                "provenance": provenance_of({a.name: a.uri for a in record.artifacts}),
                "work_units": out_units,
            }
        )
        return 0
    print(f"Experiment {record.xid}: {record.title or '(untitled)'}")
    facts = [f"{len(record.work_units)} units"]
    if record.tags:
        facts.insert(0, "tags: " + ", ".join(sorted(record.tags)))
    if record.created_at:
        facts.append(f"created {_time(record.created_at)}")
    if len({c.destination for c in clusters}) == 1:
        facts.append(f"cluster {clusters[0].destination}")
    print("  " + " · ".join(facts))
    for a in record.artifacts:
        if not a.name.startswith(PROVENANCE_PREFIX):  # provenance: one summary line each (whole in --json)
            print(f"  artifact {a.name}: {a.uri}")
    for line in summary({a.name: a.uri for a in record.artifacts}):
        print(f"  {line}")
    print_show_table(out_units, several_clusters=len({c.destination for c in clusters}) > 1)
    return 0


def _show(args: argparse.Namespace) -> int:
    return asyncio.run(_show_async(args))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "list",
        help="list experiments, newest first",
        description=(
            "List the experiments of the metadata store, newest first. Experiments without work units (a "
            "launch killed before its first add, or one still starting) are left out unless --all is given."
        ),
        epilog=LIST_EPILOG,
    )
    p.add_argument("--title", default=None, metavar="TEXT", help="only titles containing TEXT")
    p.add_argument("--tag", default=None, help="only experiments with this tag")
    p.add_argument("--limit", type=positive_int, default=20, help="at most this many (default: 20)")
    p.add_argument(
        "--all",
        action="store_true",
        help="also experiments without work units (a launch killed before its first add), marked empty",
    )
    p.add_argument(
        "--no-states",
        dest="states",
        action="store_false",
        help="do not ask the clusters for the units' states (one status query per cluster otherwise)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (a list of objects) for scripts")
    p.set_defaults(func=_list)

    p = subparsers.add_parser(
        "show",
        help="an experiment's work units and jobs with live states",
        description=(
            "Show an experiment's work units and their Slurm jobs with their current states (one batched "
            "status query per cluster); for pending jobs, the reason Slurm gives and the expected start "
            "time where Slurm has one."
        ),
        epilog=SHOW_EPILOG,
    )
    add_experiment_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.add_argument(
        "--watch",
        action="store_true",
        help="a live view (counts per state, progress, why units wait) until every job has ended, then the table",
    )
    p.set_defaults(func=_show)
