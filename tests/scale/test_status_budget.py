"""Status at scale, counted at the transport: one squeue per cluster per poll round however many work units
ask or wait (plus one sacct only for jobs squeue no longer lists: none here), and processes on one machine
sharing their answers (one refresh serves all of them)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import counting_transport
import pytest
from local_cluster import LocalCluster
from scale_helpers import busybox_job, held_gate, scancel, ssh_config

import xm_slurm
from xm_slurm.dependencies import afterok

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

TRACKED = 1000


async def test_one_status_command_per_tick_for_many_tracked_jobs(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, counting
) -> None:
    gate = held_gate()  # keeps the whole sweep pending (one job record) while we count
    try:
        async with xm_slurm.create_experiment("scale status", transport_factory=counting) as experiment:
            units = await experiment.add(
                busybox_job(local_cluster, cluster),
                args=[xm_slurm.JobArgs(args=[i]) for i in range(TRACKED)],
                dependency=afterok(gate),
            )
            ids = [j.job_id for u in units for j in u.slurm_jobs]
            assert len(ids) == TRACKED
            # 1,000 work units asking for their status at once: ONE squeue (the controller lists them all,
            # so no sacct).
            before = counting.count("squeue"), counting.count("sacct")
            statuses = await asyncio.gather(*(u.get_status() for u in units))
            assert (counting.count("squeue"), counting.count("sacct")) == (before[0] + 1, before[1])
            assert {s.status.value for s in statuses} == {"pending"}
            # 1,000 work units waiting: ONE poll loop, one squeue per round that asked the cluster.
            watcher = experiment.connections.watcher(cluster.ssh)
            before, polls, reused = (
                (counting.count("squeue"), counting.count("sacct")),
                watcher.polls,
                watcher.reused,
            )
            waits = [asyncio.ensure_future(watcher.wait([j])) for j in ids]
            while watcher.polls + watcher.reused < polls + reused + 4:  # noqa: ASYNC110  (four rounds)
                await asyncio.sleep(0.05)
            asked = watcher.polls - polls
            assert asked >= 1
            assert (counting.count("squeue") - before[0], counting.count("sacct") - before[1]) == (asked, 0)
            scancel(gate, *{j.job_id for j in ids})
            finals = await asyncio.wait_for(asyncio.gather(*waits), 120)
            assert {s.state.value for f in finals for s in f.values()} == {"CANCELLED"}
    finally:
        scancel(gate)


CHILD = r"""
import asyncio, json, os, sys
sys.path.insert(0, os.environ["XM_TEST_FAKES"])  # tests/fakes: the counting wrapper
import xm_slurm
from xm_slurm.scheduler import JobWatcher
from counting_transport import CountingTransport
from xm_slurm.transport import SSHTransport

async def main(ids):
    config = xm_slurm.SlurmSSHConfig(**json.loads(sys.argv[1]))
    transport = CountingTransport(SSHTransport(config))
    states = {}
    for _ in range(3):
        # A new watcher each time (nothing cached in this process): only the answers shared through
        # $XM_SLURM_STATE_DIR/status-cache may spare a query. The freshness window is longer than the test.
        answers = await JobWatcher(transport).poll(ids, max_age=600)
        states = {str(k): v.state.value for k, v in answers.items()}
    await transport.close()
    print(json.dumps({"squeue": transport.counts["squeue"], "sacct": transport.counts["sacct"], "states": states}))

asyncio.run(main(sys.argv[2:]))
"""


async def test_processes_share_the_poll_budget(local_cluster: LocalCluster, tmp_path: Path) -> None:
    a, b = held_gate(), held_gate()
    try:
        lc = ssh_config(local_cluster)
        config = json.dumps(
            {
                "host": lc.host,
                "port": lc.port,
                "user": lc.user,
                "client_keys": list(lc.client_keys),
                "known_hosts": lc.known_hosts,
                "config_files": [],
            }
        )
        env = {
            **os.environ,
            "XM_SLURM_STATE_DIR": str(tmp_path / "shared-state"),
            "XM_TEST_FAKES": os.path.dirname(counting_transport.__file__),
        }
        wanted = [[a], [b], [a], [a, b]]
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CHILD,
                config,
                *ids,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for ids in wanted
        ]
        outputs = [await c.communicate() for c in children]
        results = []
        for child, (out, err) in zip(children, outputs, strict=True):
            assert child.returncode == 0, err.decode()
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        for ids, result in zip(wanted, results, strict=True):
            assert result["states"] == dict.fromkeys(ids, "PENDING")
        # Two distinct sets of jobs: at most one refresh each serves all 4 processes x 3 polls (12 without
        # sharing). Each refresh asks for every job any process wanted so far, so it is 2 when the first
        # refresh came before the other sets were asked for, 1 when after (squeue: the jobs are pending, so
        # no sacct).
        squeues = sum(r["squeue"] for r in results)
        assert 1 <= squeues <= 2 and sum(r["sacct"] for r in results) == 0, results
        cache = tmp_path / "shared-state" / "status-cache"
        assert cache.stat().st_mode & 0o777 == 0o700
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in cache.iterdir())
    finally:
        scancel(a, b)
