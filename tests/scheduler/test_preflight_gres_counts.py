"""The pre-flight refuses a job that needs more of a gres on ONE node than any node of its partition holds:
GPUs per task (a task's GPUs are all on its node), times the tasks that share a node (tasks_per_node, or
tasks over nodes). Where Slurm places the tasks freely only the per-task count matters. Checked against the
local cluster's own sinfo output, and against `sbatch --test-only` there (never stricter than Slurm)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest
from local_cluster import LocalCluster

from xm_slurm.config import ContainerRuntime, SlurmClusterConfig, SlurmSSHConfig
from xm_slurm.executables import RemoteImage
from xm_slurm.executors import Slurm
from xm_slurm.experiment.planning import Submission
from xm_slurm.experiment.preflight import placement_problems
from xm_slurm.rendering import JobComponent, Trial
from xm_slurm.resources import JobRequirements, ResourceType
from xm_slurm.scheduler.limits import ClusterLimits, Partition, cached_limits, parse_limits
from xm_slurm.scheduler.preflight import GresNeed, gres_need, partition_problems
from xm_slurm.topology import Topology
from xm_slurm.transport import LocalTransport

#: The local cluster's `sinfo -a -h -o '%P|%G|%f'` (node1: 4 GPUs; node2: 4 + 2 `1g.10gb` MIG slices).
LOCAL_SINFO = "debug*|gpu:4|(null)\ndebug*|gpu:sim:4,gpu:1g.10gb:2|(null)\n"
LIMITS = parse_limits(
    f"MaxArraySize = 1001\nMaxJobCount = 10000\n#xm-slurm-partitions\n{LOCAL_SINFO}#xm-slurm-end\n"
)
MIG = ResourceType.H100_80GIB_1G_10GIB
CLUSTER = SlurmClusterConfig(
    name="local",
    ssh=SlurmSSHConfig(host="login.example.org", user="me"),
    runtime=ContainerRuntime.PODMAN,
    partition="debug",
    resources={MIG: "1g.10gb"},
)


def _problems(limits: ClusterLimits, partition: str | None = None, **resources: Any) -> list[str]:
    requirements = JobRequirements(CPU=1, cluster=CLUSTER, **resources)
    need = gres_need(requirements)
    return partition_problems(limits, "local", partition, requirements.gres, need)


#: (resources, refused) on the local cluster: the forms the GPU tests run must stay accepted.
FORMS: list[tuple[dict[str, Any], bool]] = [
    ({"GPU": 1}, False),
    ({"GPU": 4}, False),
    ({"GPU": 6}, False),  # node2: 4 whole GPUs + 2 slices, all gres/gpu
    ({"GPU": 7}, True),
    ({"GPU": 9}, True),
    ({"GPU": 2, "replicas": 2}, False),  # tests/gpu: GPU=2 x 2 tasks on one node
    ({"GPU": 4, "replicas": 2}, False),  # 8 GPUs: Slurm spreads the tasks, only the per-task count matters
    ({"GPU": 2, "nodes": 1, "tasks_per_node": 2}, False),
    ({"GPU": 3, "nodes": 1, "tasks_per_node": 2}, False),  # 6 on node2
    ({"GPU": 4, "nodes": 1, "tasks_per_node": 2}, True),  # 8 on one node
    ({"GPU": 1, "nodes": 2, "tasks_per_node": 1}, False),
    ({"GPU": 2, "replicas": 4, "nodes": 1}, True),  # the 4 tasks share the one node: 8
    ({"GPU": 2, "replicas": 5, "nodes": 2}, False),  # 3 tasks on one node: 6
    ({"GPU": 3, "replicas": 5, "nodes": 2}, True),  # 3 tasks on one node: 9
    ({"GPU": Topology("4x2")}, False),
    ({"GPU": Topology("4x2"), "nodes": 1}, True),
    ({MIG.name: 1, "replicas": 2}, False),
    ({MIG.name: 2}, False),
    ({MIG.name: 3}, True),  # only 2 slices on node2
    ({MIG.name: 1, "nodes": 1, "tasks_per_node": 3}, True),
]


@pytest.mark.parametrize(("resources", "refused"), FORMS, ids=[repr(r) for r, _ in FORMS])
def test_the_rule_on_the_local_clusters_nodes(resources: dict[str, Any], refused: bool) -> None:
    problems = _problems(LIMITS, **resources)
    assert bool(problems) == refused, problems


def test_the_message_names_the_request_the_most_a_node_has_and_what_to_do() -> None:
    [per_task] = _problems(LIMITS, GPU=9)
    for needle in ("GPU=9", "9 'gpu' per task", "partition 'debug'", "cluster 'local'", "has is 6"):
        assert needle in per_task
    assert "at most 6 per task and more replicas, e.g. GPU=3 with 3 times the replicas" in per_task
    [per_node] = _problems(LIMITS, GPU=4, nodes=1, tasks_per_node=2)
    assert "GPU=4 per task x 2 tasks on one node" in per_node and "needs 8 'gpu'" in per_node
    assert "has is 6" in per_node and "at most 1 of these tasks on one node" in per_node
    [mig] = _problems(LIMITS, **{MIG.name: 3})
    assert f"{MIG.name}=3" in mig and "'gpu:1g.10gb'" in mig and "has is 2" in mig


def test_several_partitions_and_unknown_counts() -> None:
    big = Partition("big", frozenset({"gpu"}), frozenset(), (("gpu", 16),))
    limits = dataclasses.replace(LIMITS, partitions=(*(LIMITS.partitions or ()), big))
    assert _problems(limits, "debug,big", GPU=9) == []  # a node of either may run it
    [problem] = _problems(limits, "debug,big", GPU=17)
    assert "partitions debug, big" in problem and "has is 16" in problem
    # A gres whose count the cluster did not tell refuses nothing; a missing gres is said once, not twice.
    unknown = ClusterLimits(partitions=(Partition("debug", frozenset({"gpu"})),), default_partition="debug")
    assert _problems(unknown, GPU=99) == []
    none = ClusterLimits(partitions=(Partition("debug"),), default_partition="debug")
    [missing] = _problems(none, GPU=1)
    assert "has the gres 'gpu'" in missing
    assert partition_problems(LIMITS, "local", None, ("gpu", None, None), GresNeed(7)) != []


def test_the_launch_preflight_passes_the_need() -> None:
    image = RemoteImage(image="reg/x:1", entrypoint=["true"])

    def submission(**resources: Any) -> Submission:
        requirements = JobRequirements(CPU=1, cluster=CLUSTER, **resources)
        executor = Slurm(requirements=requirements, time=dt.timedelta(hours=1))
        component = JobComponent(executable=image, executor=executor)
        return Submission(CLUSTER, [component], [Trial(work_unit_id=1)], False, None, adds=[object()])  # type: ignore[list-item]

    assert placement_problems([submission(GPU=2, replicas=2)], LIMITS) == []
    [problem] = placement_problems([submission(GPU=9), submission(GPU=9, replicas=2)], LIMITS)
    assert "GPU=9" in problem


def _slurm_refuses(requirements: JobRequirements, partition: str, tmp_path: Path) -> bool:
    """`sbatch --test-only` of these requirements' directives: no job is created."""
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    argv = ["sbatch", "--test-only", f"--partition={partition}", "--time=5", *requirements.to_directives()]
    result = subprocess.run([*argv, str(script)], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode == 0:
        return False
    assert "Requested node configuration is not available" in result.stderr, result.stderr
    return True


@pytest.mark.cluster
async def test_slurm_agrees_on_the_local_cluster(local_cluster: LocalCluster, tmp_path: Path) -> None:
    # The limits as a launch reads them (scontrol + sinfo, one command); then each form against sbatch.
    limits = await cached_limits(LocalTransport(), directory=tmp_path / "limits")
    assert limits.source == "scontrol"
    partition = local_cluster.partition
    disagree = []
    for resources, refused in FORMS:
        requirements = JobRequirements(CPU=1, cluster=CLUSTER, **resources)
        ours = partition_problems(limits, "local", partition, requirements.gres, gres_need(requirements))
        slurm = _slurm_refuses(requirements, partition, tmp_path)
        if (bool(ours), slurm) != (refused, refused):
            disagree.append(f"{resources}: pre-flight refuses={bool(ours)}, sbatch refuses={slurm}")
    assert not disagree, disagree
