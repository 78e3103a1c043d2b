"""The live view of an experiment's units while they run: counts per state, a progress bar, elapsed time and
why pending units wait. `xm-slurm wait`, `xm-slurm show --watch` and `await experiment.wait(progress=True)`
all draw it.

It costs no command of its own. Each cluster's `JobWatcher` (the one status source of the process) follows
the jobs as `wait` always did, one status round per cluster per tick at the watcher's own pace; the view
only reads the watcher's cache (`latest`) a few times a second to redraw. The reason of a pending job is the
`Reason` squeue gave in that round.

On a terminal the view is a rich table redrawn in place; otherwise one line per change
(`[0:00:12] wid 2-3 running · pending 1, running 2, completed 1, failed 0, cancelled 0`), nothing else.
Every user text (identities, reasons) is a `rich.text.Text`, never markup.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler.resubmit import compact_ranges
from xm_slurm.ssh_config import SlurmSSHConfig
from xm_slurm.status import SlurmJobStatus, SlurmWorkUnitStatus, SlurmWorkUnitStatusEnum

if TYPE_CHECKING:
    from rich.console import RenderableType

    from xm_slurm.experiment.connections import ClusterConnections
    from xm_slurm.experiment.units import SlurmExperimentUnit

JobKey = tuple[SlurmSSHConfig, SlurmJobId]
STATES = tuple(SlurmWorkUnitStatusEnum)  # pending, running, completed, failed, cancelled
COLOURS = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}
REFRESH_SECONDS = 0.5  # redraws read the watchers' cache: no command
MAX_LISTED = 5  # pending reasons / failed units named in the view (the rest are counted)


@dataclasses.dataclass(frozen=True)
class Followed:
    """A unit the view follows: its label (`wid 3`, `aux 4`) and its jobs."""

    unit_id: int
    label: str
    jobs: tuple[JobKey, ...]


def followed(units: Iterable[SlurmExperimentUnit]) -> list[Followed]:
    """The units that have jobs, as the view follows them."""
    from xm_slurm.experiment.units import SlurmAuxiliaryUnit

    out = []
    for unit in units:
        jobs = tuple((j.ssh, j.job_id) for j in unit.slurm_jobs)
        if jobs:
            kind = "aux" if isinstance(unit, SlurmAuxiliaryUnit) else "wid"
            out.append(Followed(unit.unit_id, f"{kind} {unit.unit_id}", jobs))
    return out


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the watchers knew at one moment: each followed unit's status (None: not asked yet)."""

    units: tuple[tuple[Followed, SlurmWorkUnitStatus | None], ...]
    elapsed: float

    @property
    def known(self) -> bool:
        return all(status is not None for _, status in self.units)

    def counts(self) -> dict[str, int]:
        found = collections.Counter(label_of(s) for _, s in self.units)
        return {state.label: found[state.label] for state in STATES}

    @property
    def ended(self) -> int:
        return sum(1 for _, s in self.units if s is not None and s.status.is_terminal)

    def labels(self) -> dict[str, str]:
        """`{unit label: status label, with the reason of a pending unit}`: what a change line reports."""
        return {f.label: label_of(s) + (f" ({r})" if (r := pending_reason(s)) else "") for f, s in self.units}


def label_of(status: SlurmWorkUnitStatus | None) -> str:
    return "pending" if status is None else status.status.label


def pending_reason(status: SlurmWorkUnitStatus | None) -> str:
    """Why a pending unit waits (squeue's Reason of its pending jobs), or ""."""
    if status is None or status.status is not SlurmWorkUnitStatusEnum.PENDING:
        return ""
    reasons = {
        j.reason for j in status.jobs if j.work_unit_status is SlurmWorkUnitStatusEnum.PENDING and j.reason
    }
    return ", ".join(sorted(reasons))


def snapshot(
    connections: ClusterConnections, units: Sequence[Followed], started: float, now: float | None = None
) -> Snapshot:
    """The units' statuses from the watchers' cache (no command)."""
    rows = []
    for unit in units:
        found = [connections.watcher(ssh).latest(jid) for ssh, jid in unit.jobs]
        known = [s for s in found if s is not None]
        rows.append((unit, SlurmWorkUnitStatus(known) if len(known) == len(found) else None))
    return Snapshot(tuple(rows), (time.time() if now is None else now) - started)


def elapsed_text(seconds: float) -> str:
    whole = int(max(seconds, 0))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _wids(labels: Sequence[str]) -> str:
    """`wid 2-4, aux 7` from unit labels."""
    by_kind: dict[str, list[int]] = {}
    for text in labels:
        kind, _, number = text.partition(" ")
        by_kind.setdefault(kind, []).append(int(number))
    return ", ".join(f"{kind} {compact_ranges(ids)}" for kind, ids in by_kind.items())


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def change_lines(before: dict[str, str], now: Snapshot) -> list[str]:
    """One line per new status among the units that changed since `before` (the piped output)."""
    after = now.labels()
    groups: dict[str, list[str]] = {}
    for unit, text in after.items():
        if before.get(unit) != text:
            groups.setdefault(text, []).append(unit)
    stamp, counts = elapsed_text(now.elapsed), counts_text(now.counts())
    return [f"[{stamp}] {_wids(units)} {text} · {counts}" for text, units in groups.items()]


def render(title: str, now: Snapshot) -> RenderableType:
    """The terminal view: a header, a table of counts per state, a progress bar, why units wait."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    total = len(now.units)
    header = Text(title, style="bold")
    header.append(f" · {total} units · elapsed {elapsed_text(now.elapsed)}", style="default")
    counts = Table(show_edge=False, header_style="bold", pad_edge=False)
    for name in (s.label for s in STATES):
        counts.add_column(Text(name, style=COLOURS[name]), justify="right")
    counts.add_row(*(str(n) for n in now.counts().values()))
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=max(total, 1), completed=now.ended, width=40),
        Text(f"{now.ended}/{total} ended" + ("" if now.known else " (asking the cluster...)")),
    )
    parts: list[RenderableType] = [header, counts, bar]
    parts += _listed("waiting", _group(now, pending_reason), "yellow")
    parts += _listed("failed", _group(now, _failure), "red")
    return Group(*parts)


def _failure(status: SlurmWorkUnitStatus | None) -> str:
    if status is None or status.status is not SlurmWorkUnitStatusEnum.FAILED:
        return ""
    codes = sorted({j.exit_code for j in status.jobs if j.exit_code})
    states = sorted(
        {j.state.value for j in status.jobs if j.work_unit_status is SlurmWorkUnitStatusEnum.FAILED}
    )
    return ", ".join(states) + (f", exit code {', '.join(map(str, codes))}" if codes else "")


def _group(now: Snapshot, describe: Any) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for unit, status in now.units:
        text = describe(status)
        if text:
            groups.setdefault(text, []).append(unit.label)
    return groups


def _listed(title: str, groups: dict[str, list[str]], style: str) -> list[Any]:
    from rich.text import Text

    lines = []
    for i, (text, units) in enumerate(sorted(groups.items(), key=lambda kv: -len(kv[1]))):
        if i == MAX_LISTED:
            lines.append(Text(f"  ... {len(groups) - MAX_LISTED} more", style=style))
            break
        line = Text(f"{title}: ", style=style)
        line.append(f"{_wids(units)} ({text})", style="default")
        lines.append(line)
    return lines


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class View:
    """Draws snapshots: redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, title: str, stream: TextIO | None = None, *, terminal: bool | None = None) -> None:
        self.title = title
        self.stream = sys.stdout if stream is None else stream
        self.terminal = is_terminal(self.stream) if terminal is None else terminal
        self._seen: dict[str, str] = {}
        self._live: Any = None

    def __enter__(self) -> View:
        if self.terminal:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            console = Console(file=self.stream, force_terminal=True)
            self._live = Live(Text(""), console=console, auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def show(self, now: Snapshot) -> None:
        if self._live is not None:
            self._live.update(render(self.title, now), refresh=True)
            return
        if not now.known:  # a line for every unit's first answer would say nothing yet
            return
        for line in change_lines(self._seen, now):
            self.stream.write(line + "\n")
        self.stream.flush()
        self._seen = now.labels()


async def follow(
    connections: ClusterConnections,
    units: Sequence[Followed],
    view: View | None = None,
    *,
    started: float | None = None,
) -> dict[JobKey, SlurmJobStatus]:
    """Until every job of `units` has ended, drawing `view` meanwhile; returns the final job statuses.

    The cluster's watchers poll (one round per cluster per tick, `JobWatcher.wait`); errors they end with
    (e.g. a job unknown to Slurm) are raised after a last redraw.
    """
    started = time.time() if started is None else started
    by_cluster: dict[SlurmSSHConfig, list[SlurmJobId]] = {}
    for unit in units:
        for ssh, jid in unit.jobs:
            by_cluster.setdefault(ssh, []).append(jid)
    waits = [asyncio.ensure_future(connections.watcher(s).wait(ids)) for s, ids in by_cluster.items()]
    try:
        while True:
            if view is not None:
                view.show(snapshot(connections, units, started))
            if all(w.done() for w in waits):
                break
            done, _ = await asyncio.wait(waits, timeout=REFRESH_SECONDS, return_when=asyncio.FIRST_EXCEPTION)
            if any(w.exception() is not None for w in done if not w.cancelled()):
                if view is not None:
                    view.show(snapshot(connections, units, started))
                break
        results = await asyncio.gather(*waits)
    finally:
        for w in waits:
            w.cancel()
    return {
        (ssh, jid): st for ssh, found in zip(by_cluster, results, strict=True) for jid, st in found.items()
    }


class WaitHost(Protocol):
    """What `Waiting.wait` needs of its experiment (`SlurmExperiment` is one)."""

    connections: ClusterConnections

    @property
    def experiment_id(self) -> int: ...

    @property
    def experiment_title(self) -> str: ...

    @property
    def work_units(self) -> Any: ...


class Waiting:
    """`await experiment.wait(progress=True)`: a mixin of `SlurmExperiment` (see `wait`)."""

    async def wait(
        self,
        work_units: Sequence[SlurmExperimentUnit] | None = None,
        *,
        progress: bool = False,
        log_lines: int = 10,
        stream: TextIO | None = None,
    ) -> dict[int, SlurmWorkUnitStatus]:
        """Wait until the work units (default: all) have ended; returns `{work unit id: final status}`.

        progress: draw the live view meanwhile (a table redrawn in place on a terminal, one line per change
          otherwise, on `stream`, default stdout), then explain each unit that did not complete: its exit
          code, reason and the last `log_lines` lines of its log. Raises nothing for failed units.
        """
        from xm_slurm.experiment.outcome import explain, outcomes, report_lines

        host: WaitHost = self  # type: ignore[assignment]
        units = list(host.work_units.values()) if work_units is None else list(work_units)
        title = f"experiment {host.experiment_id}" + (
            f": {host.experiment_title}" if host.experiment_title else ""
        )
        view = View(title, stream) if progress else None
        with view if view is not None else contextlib.nullcontext():
            final = await follow(host.connections, followed(units), view)
        results = outcomes(units, final)
        if view is not None:
            explained, more = await explain(host.connections, results, final, num_lines=log_lines)
            for line in report_lines(explained, more):
                view.stream.write(line + "\n")
            view.stream.flush()
        return {r.unit.unit_id: r.status for r in results}
