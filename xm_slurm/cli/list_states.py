"""The state counts `xm-slurm list` shows: how many work units of each listed experiment are in each state.

Every listed experiment's current jobs (a retried job counts as its retry) are asked about together: one
status round per cluster for all of them (`ClusterConnections.statuses`), on connections shared by the whole
listing. A cluster that cannot be reached leaves its experiments' counts unknown (`?`), with one warning.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from xm_slurm.cli.output import one_line, warn

if TYPE_CHECKING:
    from xm_slurm.api import Experiment
    from xm_slurm.experiment.handles import SlurmLaunchedJob
    from xm_slurm.ssh_config import SlurmSSHConfig

#: The order counts are printed in: live first, then how units ended.
ORDER = ("pending", "running", "completed", "failed", "cancelled")


def _current(records: Sequence[Experiment]) -> dict[int, dict[int, list[SlurmLaunchedJob]]]:
    """{xid: {wid: its current jobs}} (pending rows, not submitted yet, have no job: none listed)."""
    from xm_slurm.experiment.handles import SlurmLaunchedJob, is_pending
    from xm_slurm.experiment.retrying import current_jobs

    out: dict[int, dict[int, list[SlurmLaunchedJob]]] = {}
    for record in records:
        out[record.xid] = {
            wu.wid: current_jobs(
                [SlurmLaunchedJob.from_record(j, record.xid) for j in wu.jobs if not is_pending(j)]
            )
            for wu in record.work_units
        }
    return out


async def unit_state_counts(records: Sequence[Experiment]) -> dict[int, dict[str, int] | None]:
    """{xid: {unit status label: count}}; None where a cluster of the experiment could not be asked."""
    from xm_slurm.experiment.connections import ClusterConnections
    from xm_slurm.status import SlurmWorkUnitStatus

    units = _current(records)
    by_cluster: dict[SlurmSSHConfig, set[Any]] = {}
    for per_unit in units.values():
        for jobs in per_unit.values():
            for job in jobs:
                by_cluster.setdefault(job.ssh, set()).add(job.job_id)
    clusters = list(by_cluster)
    connections = ClusterConnections()
    try:
        answers = await asyncio.gather(
            *(connections.statuses(s, sorted(by_cluster[s], key=str)) for s in clusters),
            return_exceptions=True,
        )
    finally:
        await connections.aclose()
    states: dict[tuple[Any, Any], Any] = {}
    unreachable = set()
    for ssh, answer in zip(clusters, answers, strict=True):
        if isinstance(answer, BaseException):
            unreachable.add(ssh)
            warn("list", f"states from {ssh.destination} unknown: {one_line(answer)}")
            continue
        states.update({(ssh, jid): st for jid, st in answer.items()})
    out: dict[int, dict[str, int] | None] = {}
    for xid, per_unit in units.items():
        if any(j.ssh in unreachable for jobs in per_unit.values() for j in jobs):
            out[xid] = None
            continue
        counts: Counter[str] = Counter()
        for jobs in per_unit.values():
            found = [st for j in jobs if (st := states.get((j.ssh, j.job_id))) is not None]
            counts[SlurmWorkUnitStatus(found).status.label if found else "no jobs"] += 1
        out[xid] = dict(counts)
    return out


def counts_text(counts: dict[str, int] | None) -> str:
    """`2 running, 1 failed` (known states first, in ORDER); `?` when unknown."""
    if counts is None:
        return "?"
    labels = sorted(counts, key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k))
    return ", ".join(f"{counts[k]} {k}" for k in labels if counts[k])
