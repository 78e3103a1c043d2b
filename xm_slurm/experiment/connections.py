"""One transport, one `JobWatcher` and one state folder per cluster, shared by an experiment's work units.

Clusters are keyed by their `SlurmSSHConfig` (the one thing a stored `SlurmJob` records), so an experiment
rebuilt from the metadata store finds the same connection for every job of a cluster. Transports open lazily
(on the first command) and are closed by `aclose()` when the experiment exits.

Which transport: `transport_factory(ssh_config)`; by default an `SSHTransport`. `local_transport_factory`
runs everything on this machine instead (the launch script runs on the cluster's login node). When
`xm-slurm preview` runs the launch script, `launch_transport_factory` (the one place this is decided) wraps
whichever factory in the dry run's (`dry_run.DryRun`), so that a preview never submits, whatever factory the
launch script passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from xm_slurm.errors import NotFoundError
from xm_slurm.experiment.dry_run import DryRun
from xm_slurm.experiment.state_recording import StateRecorder
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.paths import experiment_dir
from xm_slurm.scheduler import JobWatcher, state_root
from xm_slurm.ssh_config import SlurmSSHConfig
from xm_slurm.status import SlurmJobStatus
from xm_slurm.transport import LocalTransport, Transport

if TYPE_CHECKING:
    from xm_slurm.api import XManagerAPI
    from xm_slurm.api.store_info import StoreInfo

TransportFactory = Callable[[SlurmSSHConfig], Transport]


def ssh_transport_factory(config: SlurmSSHConfig) -> Transport:
    from xm_slurm.transport.ssh import SSHTransport  # asyncssh loads with the first connection

    return SSHTransport(config)


def local_transport_factory(config: SlurmSSHConfig) -> Transport:
    """Run sbatch/sacct/... locally: for launch scripts that run on the login node itself."""
    del config
    return LocalTransport()


def launch_transport_factory(
    factory: TransportFactory | None = None, *, dry_run: DryRun | None = None
) -> TransportFactory:
    """The transports of an experiment: `factory` (an SSH transport by default), recording instead of
    submitting under a dry run: `dry_run`, else the one `xm-slurm preview` set in this process's
    environment (`DryRun.from_env`). A factory this returned comes back unchanged."""
    chosen = factory or ssh_transport_factory
    dry_run = dry_run if dry_run is not None else DryRun.from_env()
    return chosen if dry_run is None else dry_run.wrap(chosen)


class ClusterConnections:
    def __init__(
        self, transport_factory: TransportFactory | None = None, *, api: XManagerAPI | None = None
    ) -> None:
        # The experiment's entry points (create_experiment, get_experiment) chose the factory, dry run
        # included (`launch_transport_factory`); None is plain SSH.
        self._factory = transport_factory or ssh_transport_factory
        self._transports: dict[SlurmSSHConfig, Transport] = {}
        self._watchers: dict[SlurmSSHConfig, JobWatcher] = {}
        self._roots: dict[SlurmSSHConfig, asyncio.Task[str]] = {}
        # The store whose experiments these are: it names their cluster folders (None: the old layout).
        self._api = api
        self._store: StoreInfo | None = None
        self.recorder: StateRecorder | None = None

    def transport(self, ssh: SlurmSSHConfig) -> Transport:
        if ssh not in self._transports:
            self._transports[ssh] = self._factory(ssh)
        return self._transports[ssh]

    def watcher(self, ssh: SlurmSSHConfig) -> JobWatcher:
        if ssh not in self._watchers:
            self._watchers[ssh] = JobWatcher(self.transport(ssh))
            if self.recorder is not None:
                self._watchers[ssh].listeners.append(self.recorder)
        return self._watchers[ssh]

    def record_states(self, xid: int) -> None:
        """Record the job states the watchers see into the store, as experiment `xid`'s (`state_recording`)."""
        if self._api is None or self.recorder is not None:
            return
        self.recorder = StateRecorder(self._api, xid)
        for watcher in self._watchers.values():
            watcher.listeners.append(self.recorder)

    async def state_root(self, ssh: SlurmSSHConfig) -> str:
        """The cluster's state folder (asked once per cluster; concurrent callers share the answer)."""
        task = self._roots.get(ssh)
        if task is None or (task.done() and task.exception() is not None):
            task = self._roots[ssh] = asyncio.ensure_future(state_root(self.transport(ssh)))
        return await asyncio.shield(task)

    async def store_id_for(self, experiment_id: int) -> str | None:
        """The store id naming this experiment's cluster folder (`paths.experiment_dir`), None for the old
        layout: experiments the store held before it had an id, or a server too old to say (asked once)."""
        if self._api is None:
            return None
        if self._store is None:
            try:
                self._store = await self._api.aget_store_info()
            except NotFoundError:  # a REST server without /store: everything stays in the old layout
                return None
        return self._store.folder_key(experiment_id)

    async def experiment_dir(self, ssh: SlurmSSHConfig, experiment_id: int) -> str:
        """The experiment's folder on this cluster (the one rule: `paths.experiment_dir`)."""
        root = await self.state_root(ssh)
        return experiment_dir(root, experiment_id, await self.store_id_for(experiment_id))

    async def statuses(
        self, ssh: SlurmSSHConfig, job_ids: Iterable[SlurmJobId]
    ) -> dict[SlurmJobId, SlurmJobStatus]:
        """Current states, from the cluster's one status source: concurrent calls share one round."""
        return await self.watcher(ssh).poll(job_ids)

    async def aclose(self) -> None:
        for watcher in self._watchers.values():
            await watcher.aclose()
        if self.recorder is not None:
            with contextlib.suppress(Exception):  # logged by the recorder
                await self.recorder.aclose()
        for task in self._roots.values():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for transport in self._transports.values():
            with contextlib.suppress(Exception):
                await transport.close()
        self._watchers.clear()
        self._transports.clear()
        self._roots.clear()
