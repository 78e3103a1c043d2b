"""A job group on the real local cluster: each component logs to its own file, `xm-slurm logs` prefixes
each line with its component's name, and every component sees the group variables. XM_SLURM_DEBUG=1 in
the launching shell traces the job."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import xm_cli
from experiment_fixtures import python_job
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm

pytestmark = pytest.mark.cluster

SHOW_GROUP = (
    "import os; print('GROUPVARS', *(f'{k}={v}' for k, v in sorted(os.environ.items()) "
    "if k.startswith('XM_SLURM_JOB_GROUP_')), flush=True)"
)


def _job_logs(leader: int) -> list[str]:
    """The group's two log files in the cluster's state folder (the tests run on the cluster's machine, as
    the user the jobs run as)."""
    root = Path(os.environ.get("XM_TEST_REMOTE_STATE", Path.home() / ".local/state/xm-slurm"))
    found = [
        sorted(
            p for pattern in ("*", "store-*/*") for p in root.glob(f"{pattern}/slurm-{leader}{suffix}.out")
        )
        for suffix in ("", "+1")
    ]
    assert [len(f) for f in found] == [1, 1], found
    return [str(f[0]) for f in found]


def _lines_with(path: str, marker: str) -> list[str]:
    return [line for line in Path(path).read_text().splitlines() if marker in line]


async def test_group_components_log_apart_and_see_the_group_variables(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    group = xm.JobGroup(
        trainer=python_job(local_cluster, cluster, SHOW_GROUP),
        evaluator=python_job(local_cluster, cluster, SHOW_GROUP),
    )
    async with xm_slurm.create_experiment("group logs") as experiment:
        wu = await experiment.add(group)
        await wu.wait_until_complete()
        xid = experiment.experiment_id
        leader = wu.slurm_jobs[0].job_id.job_id
    logs = _job_logs(leader)
    result = xm_cli("logs", str(xid), "-n", "50")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "GROUPVARS" in line]
    by_name = {line.split("] ", 1)[0].lstrip("["): line.split("GROUPVARS ", 1)[1].split() for line in lines}
    assert sorted(by_name) == ["evaluator", "trainer"], result.stdout
    nodelists = {}
    for index, name in enumerate(["trainer", "evaluator"]):
        variables = dict(v.split("=", 1) for v in by_name[name])
        assert variables["XM_SLURM_JOB_GROUP_INDEX"] == str(index)
        assert variables["XM_SLURM_JOB_GROUP_NAME"] == name
        nodelists = {k: v for k, v in variables.items() if k.endswith("_NODELIST")}
        assert set(nodelists) == {
            "XM_SLURM_JOB_GROUP_TRAINER_NODELIST",
            "XM_SLURM_JOB_GROUP_EVALUATOR_NODELIST",
        }
    # Slurm puts each component on its own node; both components see both lists.
    assert {
        nodelists["XM_SLURM_JOB_GROUP_TRAINER_NODELIST"],
        nodelists["XM_SLURM_JOB_GROUP_EVALUATOR_NODELIST"],
    } == {
        "node1",
        "node2",
    }
    # Each file holds its own component's output only.
    own = [_lines_with(path, "GROUPVARS") for path in logs]
    assert [len(x) for x in own] == [1, 1]
    assert "XM_SLURM_JOB_GROUP_NAME=trainer" in own[0][0] and "XM_SLURM_JOB_GROUP_NAME=evaluator" in own[1][0]


async def test_debug_in_the_launching_shell_traces_the_job(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XM_SLURM_DEBUG", "1")
    async with xm_slurm.create_experiment("debug") as experiment:
        wu = await experiment.add(python_job(local_cluster, cluster, "print('debugged')"))
        await wu.wait_until_complete()
        text = "\n".join([line async for line in wu.logs(num_lines=500)])
    assert "+ xm_rendezvous " in text and "+ exec python3 -c " in text and "debugged" in text, text
