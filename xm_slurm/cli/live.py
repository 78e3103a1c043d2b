"""The live views of the CLI: `xm-slurm wait` and `xm-slurm show --watch` (drawing: experiment/progress.py).

Both follow the selected units until every job has ended: on a terminal a table redrawn in place (counts
per state, a progress bar, elapsed time, why pending units wait), otherwise one line per change. They cost
what `wait` always cost: each cluster's watcher polls once per tick (one squeue, plus one sacct for jobs
squeue no longer lists), at a pace that slows while nothing changes; redraws read its cache.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from xm_slurm.experiment.experiment import SlurmExperiment
    from xm_slurm.experiment.outcome import JobKey
    from xm_slurm.experiment.units import SlurmExperimentUnit
    from xm_slurm.status import SlurmJobStatus


def title_of(experiment: SlurmExperiment) -> str:
    title = experiment.experiment_title
    return f"experiment {experiment.experiment_id}" + (f": {title}" if title else "")


async def watch(
    experiment: SlurmExperiment,
    units: Sequence[SlurmExperimentUnit],
    *,
    stream: TextIO | None = None,
    terminal: bool | None = None,
    quiet: bool = False,
) -> dict[JobKey, SlurmJobStatus]:
    """Draw the live view of `units` (nothing if `quiet`) until every job has ended; returns the final job
    statuses."""
    from xm_slurm.experiment.progress import View, follow, followed

    if quiet:
        return await follow(experiment.connections, followed(units))
    with View(title_of(experiment), stream, terminal=terminal) as view:
        return await follow(experiment.connections, followed(units), view)


async def watch_show(args: argparse.Namespace) -> None:
    """`show --watch`: the live view of the selected units (auxiliary ones too) until every job has ended.
    With --json it is drawn on stderr, so that stdout holds the JSON alone."""
    from xm_slurm.cli.output import warn
    from xm_slurm.cli.selection import opened, select_units
    from xm_slurm.errors import StatusUnavailableError

    async with opened(args.xid) as (experiment, _):
        units = select_units(experiment, args.wid, args.identity)
        try:
            await watch(experiment, units, stream=sys.stderr if args.json else sys.stdout)
        except StatusUnavailableError as e:  # a job Slurm no longer knows: the table below says which
            warn("show", f"stopped watching: {e}")
