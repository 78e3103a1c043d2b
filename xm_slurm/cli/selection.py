"""What the experiment commands share: the XID / --wid / --identity arguments and picking units.

An XID is an experiment id (>= 1), `latest`, or a negative index into `xm-slurm list` (newest first, the
experiments without work units left out as there): -1 = latest, -2 the one before it.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xm_slurm.api import Experiment
    from xm_slurm.experiment.experiment import SlurmExperiment
    from xm_slurm.experiment.units import SlurmExperimentUnit


def int_at_least(least: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `least`, else a one-line error naming the text."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= {least}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


LATEST = "latest"


def experiment_id(text: str) -> int:
    """An XID argument: an id >= 1 as is; `latest` / -N resolved in the metadata store (at parse time, so
    every command sees a plain id)."""
    word = text.strip().lower()
    if word == LATEST:
        return newest(1)
    try:
        value = int(word)
    except ValueError:
        value = 0
    if value < 0:
        return newest(-value)
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an experiment id: give an integer >= 1, 'latest' or a negative index (-1 = latest)"
        )
    return value


def newest(position: int) -> int:
    """The id of the `position`-th newest experiment holding a work unit (as `xm-slurm list` orders them)."""
    from xm_slurm.cli.output import one_line

    try:
        from xm_slurm.api import client

        found = client().list_experiments(limit=position, include_empty=False)
    except Exception as e:  # the store unreachable or misconfigured: a usage-time error, on one line
        raise argparse.ArgumentTypeError(f"cannot resolve {_spelled(position)}: {one_line(e)}") from e
    if len(found) < position:
        have = f"only {len(found)}" if found else "none"
        raise argparse.ArgumentTypeError(
            f"no experiment {_spelled(position)}: the store holds {have} with work units (see `xm-slurm list`)"
        )
    return int(found[position - 1].xid)


def _spelled(position: int) -> str:
    return "'latest'" if position == 1 else f"-{position}"


def add_experiment_arguments(parser: argparse.ArgumentParser, *, units: bool = True) -> None:
    parser.add_argument(
        "xid",
        type=experiment_id,
        metavar="XID",
        help="the experiment id (see `xm-slurm list`), 'latest', or -N (-1 = latest, -2 the one before)",
    )
    if units:
        parser.add_argument(
            "--wid",
            type=positive_int,
            action="append",
            default=[],
            metavar="N",
            help="only work unit N (repeatable; default: every unit)",
        )
        parser.add_argument(
            "--identity",
            action="append",
            default=[],
            metavar="S",
            help="only the work unit launched with identity S (repeatable)",
        )


@contextlib.asynccontextmanager
async def opened(xid: int) -> AsyncIterator[tuple[SlurmExperiment, Experiment]]:
    """The stored experiment with live handles, and its store record; connections are closed on exit."""
    from xm_slurm.api import client
    from xm_slurm.experiment.experiment import SlurmExperiment

    api = client()
    record = await api.aget_experiment(xid)  # NotFoundError if there is none
    experiment = SlurmExperiment(api=api, record=record)
    try:
        # A launch killed between sbatch and its store write left pending rows: settle them first, so the
        # commands see the real jobs (a no-op without pending rows).
        if (await experiment.resolve_pending_submissions()).changed:
            record = await api.aget_experiment(xid)
            await experiment.aclose()
            experiment = SlurmExperiment(api=api, record=record)
        yield experiment, record
    finally:
        await experiment.aclose()


def all_units(experiment: SlurmExperiment, *, auxiliary: bool = True) -> list[SlurmExperimentUnit]:
    units: dict[int, Any] = dict(experiment.work_units)
    if auxiliary:
        units.update(experiment.auxiliary_units)
    return [units[i] for i in sorted(units)]


def select_units(
    experiment: SlurmExperiment,
    wids: Sequence[int] = (),
    identities: Sequence[str] = (),
    *,
    auxiliary: bool = True,
) -> list[SlurmExperimentUnit]:
    """Every unit, or those named by id / identity (in id order). Raises NotFoundError for a bad name."""
    from xm_slurm.errors import NotFoundError

    units = all_units(experiment, auxiliary=auxiliary)
    if not wids and not identities:
        return units
    by_id = {u.unit_id: u for u in units}
    chosen: dict[int, SlurmExperimentUnit] = {}
    for wid in wids:
        if wid not in by_id:
            have = f"ids {_ranges(sorted(by_id))}" if by_id else "no work units"
            raise NotFoundError(
                f"experiment {experiment.experiment_id} has no work unit {wid} (it has {have})"
            )
        chosen[wid] = by_id[wid]
    for identity in identities:
        found = [u for u in units if u.identity == identity]
        if not found:
            raise NotFoundError(
                f"experiment {experiment.experiment_id} has no work unit with identity {identity!r}"
            )
        chosen[found[0].unit_id] = found[0]
    return [chosen[i] for i in sorted(chosen)]


def label(unit: SlurmExperimentUnit) -> str:
    """`wid 3`, or `aux 4` for an auxiliary unit."""
    from xm_slurm.experiment.units import SlurmAuxiliaryUnit

    return f"{'aux' if isinstance(unit, SlurmAuxiliaryUnit) else 'wid'} {unit.unit_id}"


def _ranges(ids: list[int]) -> str:
    from xm_slurm.scheduler.resubmit import compact_ranges

    return compact_ranges(ids)
