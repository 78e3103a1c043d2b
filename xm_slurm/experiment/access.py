"""The module-level entry points: `create_experiment`, `get_experiment`, `get_current_experiment`,
`get_current_work_unit` (re-exported by `xm_slurm` and `xm_slurm.experiment`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os

from xm_slurm.api import Experiment, XManagerAPI, client
from xm_slurm.errors import ValidationError, XmSlurmError
from xm_slurm.experiment.connections import ClusterConnections, TransportFactory, launch_transport_factory
from xm_slurm.experiment.experiment import SlurmExperiment, current_experiment
from xm_slurm.experiment.recovery import pending_rows, resolve_pending
from xm_slurm.experiment.units import SlurmExperimentUnit
from xm_slurm.text_rules import MAX_TITLE, check_line


def create_experiment(
    experiment_title: str = "", *, transport_factory: TransportFactory | None = None
) -> SlurmExperiment:
    """A new experiment; it is recorded in the metadata store when entered (`async with` / `with`)."""
    if not isinstance(experiment_title, str):
        raise ValidationError(f"experiment title {experiment_title!r} must be a string")
    check_line(experiment_title, "experiment title", MAX_TITLE)
    return SlurmExperiment(
        title=experiment_title, transport_factory=launch_transport_factory(transport_factory)
    )


def get_experiment(
    experiment_id: int, *, transport_factory: TransportFactory | None = None
) -> SlurmExperiment:
    """The stored experiment with its work units and jobs, with live handles (status, logs, stop).

    Use it as `async with get_experiment(xid) as e:` to add more work units; otherwise `await e.aclose()`
    when done with it.
    """
    if isinstance(experiment_id, bool) or not isinstance(experiment_id, int) or experiment_id < 1:
        raise ValidationError(f"experiment id {experiment_id!r} must be an integer >= 1")
    transport_factory = launch_transport_factory(transport_factory)  # the dry run, chosen once
    api = client()
    record = api.get_experiment(experiment_id)
    if pending_rows(record.work_units) and _resolve_now(api, record, transport_factory):
        record = api.get_experiment(experiment_id)
    return SlurmExperiment(api=api, record=record, transport_factory=transport_factory)


def _resolve_now(api: XManagerAPI, record: Experiment, transport_factory: TransportFactory | None) -> bool:
    """Resolve the record's pending submissions (synchronously: in a worker thread with its own event loop
    and connections, so it works inside and outside a running loop). True if the store changed."""

    async def resolve() -> bool:
        connections = ClusterConnections(transport_factory)
        try:
            return (await resolve_pending(api, record.xid, record.work_units, connections)).changed
        finally:
            await connections.aclose()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xm-slurm-resolve") as pool:
        return pool.submit(asyncio.run, resolve()).result()


def _env_id(name: str) -> int | None:
    """The id in `name`, or None when it is not set (not inside an xm_slurm job)."""
    value = os.environ.get(name)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise XmSlurmError(
            f"{name}={value!r} is not an id (every job xm_slurm launches has {name}=N, N >= 1)"
        )
    return int(value)


def get_current_experiment(*, transport_factory: TransportFactory | None = None) -> SlurmExperiment | None:
    """Inside a job: its experiment (from `XM_SLURM_EXPERIMENT_ID`). In a launch script while an
    experiment is entered: that experiment. Elsewhere: None (as in xmanager-slurm 0.4.x)."""
    xid = _env_id("XM_SLURM_EXPERIMENT_ID")
    if xid is None:
        return current_experiment.get()
    return get_experiment(xid, transport_factory=transport_factory)


def get_current_work_unit(*, transport_factory: TransportFactory | None = None) -> SlurmExperimentUnit | None:
    """Inside a job: its work unit (from `XM_SLURM_EXPERIMENT_ID` and `XM_SLURM_WORK_UNIT_ID`); else None."""
    wid = _env_id("XM_SLURM_WORK_UNIT_ID")
    if wid is None or _env_id("XM_SLURM_EXPERIMENT_ID") is None:
        return None
    experiment = get_current_experiment(transport_factory=transport_factory)
    return None if experiment is None else experiment.unit(wid)


__all__ = [
    "create_experiment",
    "get_current_experiment",
    "get_current_work_unit",
    "get_experiment",
]
