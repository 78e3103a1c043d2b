"""GPU jobs on the local cluster's simulated GPUs (scripts/local-cluster): Slurm really allocates them and
each container sees exactly the devices of its own task, with CUDA_VISIBLE_DEVICES numbered from 0.

There is no CUDA here: a "GPU" is a device file (/dev/xmgpuN). What is real is Slurm's allocation (which
indices a job and each task get, and that two jobs never share one) and which device files the container
runtime puts into each container (Podman through the CDI names nvidia.com/gpu=N, the fake Apptainer's --nv
as a site with ConstrainDevices would)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from gpu_helpers import MIG_DEVICES, MIG_MAP, SEE_PROGRAM, Seen, read_seen
from local_cluster import LocalCluster
from render_helpers import cluster_config, request, sbatch_wait, shared_dir, write_script

from xm_slurm.config import ContainerRuntime, SlurmClusterConfig
from xm_slurm.rendering import JobScriptRequest, Trial

pytestmark = pytest.mark.cluster
RUNTIMES = [ContainerRuntime.PODMAN, ContainerRuntime.APPTAINER]


def _gpu_request(
    lc: LocalCluster, cluster: SlurmClusterConfig, state: str, wid: int, barrier: int, **requirements: object
) -> JobScriptRequest:
    return request(
        cluster,
        image=lc.python_image,
        entrypoint=("python3", "-c", SEE_PROGRAM),
        trials=(Trial(work_unit_id=wid, env_vars={"XM_TEST_BARRIER": str(barrier)}),),
        state_dir=state,
        requirements=requirements,
    )


def _run(tmp_path: Path, *requests: JobScriptRequest) -> str:
    scripts = [write_script(tmp_path, r, f"job{i}.sh") for i, r in enumerate(requests)]
    results = sbatch_wait(*scripts)
    logs = "\n".join(p.read_text(errors="replace") for p in Path(requests[0].experiment_dir).glob("*.out"))
    assert [rc for _, rc in results] == [0] * len(requests), logs
    return logs


def _assert_sees_exactly_its_gpus(seen: Seen, count: int) -> None:
    assert len(seen.host_ids) == count, seen
    assert seen.devices == sorted(f"xmgpu{i}" for i in seen.host_ids), seen
    ordinals = ",".join(str(i) for i in range(count))  # renumbered: the container's own numbering
    assert seen.env["CUDA_VISIBLE_DEVICES"] == ordinals and seen.env["GPU_DEVICE_ORDINAL"] == ordinals, seen


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_two_one_gpu_jobs_on_one_node_see_one_device_each_and_not_the_same(
    runtime: ContainerRuntime, local_cluster: LocalCluster, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    out, state = shared_dir(tmp_path / "out"), str(shared_dir(tmp_path / "state"))
    cluster = cluster_config(runtime, partition=local_cluster.partition, mounts={str(out): "/out"})
    jobs = [_gpu_request(local_cluster, cluster, state, wid, 2, GPU=1, location="node1") for wid in (1, 2)]
    logs = _run(tmp_path, *jobs)

    seen = read_seen(out)
    assert sorted(seen) == ["1-0", "2-0"], logs
    for view in seen.values():
        _assert_sees_exactly_its_gpus(view, 1)
        assert view.env["SLURM_STEP_NODELIST"] == "node1"
    # Both held their GPU at the same time (the barrier), so Slurm had to give them different ones.
    assert seen["1-0"].devices != seen["2-0"].devices, seen
    if runtime is ContainerRuntime.APPTAINER:
        assert "fake-apptainer: apptainer exec" in logs


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_two_tasks_of_two_gpus_each_get_their_own(
    runtime: ContainerRuntime, local_cluster: LocalCluster, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    out, state = shared_dir(tmp_path / "out"), str(shared_dir(tmp_path / "state"))
    cluster = cluster_config(runtime, partition=local_cluster.partition, mounts={str(out): "/out"})
    # One node, so that the two tasks would share GPUs if GPU=2 counted per node (--gres=gpu:2).
    job = _gpu_request(local_cluster, cluster, state, 7, 2, GPU=2, replicas=2, nodes=1, location="node1")
    assert "#SBATCH --gpus-per-task=2" in (script := write_script(tmp_path, job, "peek.sh")).read_text()
    assert "--gres=gpu" not in script.read_text()
    logs = _run(tmp_path, job)

    seen = read_seen(out)
    assert sorted(seen) == ["7-0", "7-1"], logs
    for view in seen.values():
        _assert_sees_exactly_its_gpus(view, 2)
    assert not set(seen["7-0"].devices) & set(seen["7-1"].devices), seen


def test_a_mig_slice_is_allocated_and_seen(local_cluster: LocalCluster, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    out, state = shared_dir(tmp_path / "out"), str(shared_dir(tmp_path / "state"))
    base = cluster_config(partition=local_cluster.partition, mounts={str(out): "/out"})
    cluster = dataclasses.replace(base, resources={**base.resources, **MIG_MAP})
    job = _gpu_request(local_cluster, cluster, state, 3, 0, H100_80GIB_1G_10GIB=1)
    logs = _run(tmp_path, job)

    [view] = read_seen(out).values()
    _assert_sees_exactly_its_gpus(view, 1)
    assert view.env["SLURM_STEP_NODELIST"] == "node2", view  # the only node with 1g.10gb slices
    assert set(view.devices) <= MIG_DEVICES, view
    shown = subprocess.run(
        ["scontrol", "show", "job", "-d", str(view.env["SLURM_JOB_ID"])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "gpu:1g.10gb:1" in shown, shown + logs


def test_one_task_per_node_on_two_nodes_each_sees_its_gpu(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    out, state = shared_dir(tmp_path / "out"), str(shared_dir(tmp_path / "state"))
    cluster = cluster_config(partition=local_cluster.partition, mounts={str(out): "/out"})
    job = _gpu_request(local_cluster, cluster, state, 5, 0, GPU=1, nodes=2, tasks_per_node=1)
    logs = _run(tmp_path, job)

    seen = read_seen(out)
    assert sorted(seen) == ["5-0", "5-1"], logs
    for view in seen.values():
        _assert_sees_exactly_its_gpus(view, 1)
    assert seen["5-0"].env["SLURM_STEP_NODELIST"] == "node[1-2]", seen
    assert {v.env["SLURM_NODEID"] for v in seen.values()} == {"0", "1"}, seen  # one task on each node
