"""Cluster limits are read once per machine and hour, not once per launch: the second launch of a sweep asks
no `scontrol`; the cache is private, expires, and never keeps limits that were not read from the cluster."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from counting_transport import CountingTransport
from local_cluster import LocalCluster
from scale_helpers import Counting, busybox_job, held_gate, scancel

import xm_slurm
from xm_slurm.dependencies import afterok
from xm_slurm.scheduler.limits import cached_limits
from xm_slurm.scheduler.local_state import key_file_stem, transport_key
from xm_slurm.transport import LocalTransport, SSHTransport

pytestmark = [pytest.mark.cluster]


async def test_second_launch_reuses_the_limits_read_by_the_first(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, store: Path
) -> None:
    job = busybox_job(local_cluster, cluster)
    gate = held_gate()  # nothing needs to run: the sweeps wait behind a held job and are cancelled
    counts = []
    try:
        for _ in range(2):
            counting = Counting()
            async with xm_slurm.create_experiment("limits", transport_factory=counting) as experiment:
                units = await experiment.add(
                    job, args=[xm_slurm.JobArgs(args=[i]) for i in range(3)], dependency=afterok(gate)
                )
                limits = await experiment.launcher.limits(cluster.ssh)
                await experiment.launcher.cancel([j for u in units for j in u.slurm_jobs])
            counts.append((counting.count("scontrol"), counting.count("sbatch"), limits.source))
    finally:
        scancel(gate)
    assert counts == [(1, 1, "scontrol"), (0, 1, "cache")]
    [cached] = (store / "cluster-limits").glob("*.json")
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE(cached.parent.stat().st_mode) == 0o700
    assert json.loads(cached.read_text())["max_array_size"] == limits.max_array_size


async def test_cache_expires_and_keeps_only_limits_read_from_the_cluster(
    local_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = CountingTransport(LocalTransport())
    first = await cached_limits(transport, directory=tmp_path)
    again = await cached_limits(transport, directory=tmp_path)
    expired = await cached_limits(transport, directory=tmp_path, max_age=0)
    assert (first.source, again.source, expired.source) == ("scontrol", "cache", "scontrol")
    assert transport.counts["scontrol"] == 2
    assert again.max_array_size == first.max_array_size
    # A cluster whose limits cannot be read (here: no scontrol on the PATH) gets Slurm's defaults, uncached.
    monkeypatch.setenv("PATH", "/nonexistent")
    other = tmp_path / "blind"
    assert (await cached_limits(LocalTransport(), directory=other)).source == "default"
    assert not other.exists() or not any(other.iterdir())


async def test_partitions_are_cached_with_the_limits_and_an_older_cache_is_read_again(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    transport = CountingTransport(LocalTransport())
    first = await cached_limits(transport, directory=tmp_path)
    assert first.partition(local_cluster.partition) is not None
    assert first.default_partition == local_cluster.partition
    key = transport_key(transport)
    assert key is not None
    path = tmp_path / f"{key_file_stem(key)}.json"
    data = json.loads(path.read_text())
    assert data["partitions"] == [p.to_json() for p in first.partitions or ()]
    again = await cached_limits(transport, directory=tmp_path)
    assert (again.source, again.partitions, again.default_partition) == (
        "cache",
        first.partitions,
        first.default_partition,
    )
    # A file written before partitions were read counts as missing: read again, and rewritten whole.
    older = {k: v for k, v in data.items() if k not in ("partitions", "default_partition")}
    path.write_text(json.dumps(older))
    assert (await cached_limits(transport, directory=tmp_path)).source == "scontrol"
    assert transport.counts["scontrol"] == 2
    assert json.loads(path.read_text())["partitions"] == data["partitions"]


async def test_a_partition_the_cache_lacks_is_asked_again_before_the_launch_is_refused(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, store: Path
) -> None:
    # The cached read (as if made before an administrator added the partition) knows only "old".
    reader = SSHTransport(cluster.ssh)
    try:
        await cached_limits(reader)
    finally:
        await reader.close()
    [path] = (store / "cluster-limits").glob("*.json")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "partitions": [{"name": "old"}], "default_partition": "old"}))
    gate = held_gate()
    counting = Counting()
    try:
        async with xm_slurm.create_experiment("limits", transport_factory=counting) as experiment:
            unit = await experiment.add(busybox_job(local_cluster, cluster), dependency=afterok(gate))
            await experiment.launcher.cancel(unit.slurm_jobs)
    finally:
        scancel(gate)
    assert len(unit.slurm_jobs) == 1
    assert (counting.count("scontrol"), counting.count("sbatch")) == (1, 1)  # the fresh read, then sbatch
    assert local_cluster.partition in [p["name"] for p in json.loads(path.read_text())["partitions"]]
