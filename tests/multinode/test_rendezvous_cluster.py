"""Rendezvous on the real local cluster (two slurmd nodes): a two-node job's tasks find rank 0 and
all-reduce their ranks over TCP; two jobs on one node get different ports; XM_SLURM_DEBUG traces."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from local_cluster import LocalCluster
from multinode_helpers import EXCHANGE, cluster_config, debug, log_of, one_job, shared_dir, write_script
from render_helpers import sbatch_wait

pytestmark = pytest.mark.cluster

_XCHG = re.compile(r"XCHG (.*)")


def _fields(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in line.split())


def test_two_node_job_all_reduces_its_ranks(local_cluster: LocalCluster, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    req = one_job(
        cluster_config(partition=local_cluster.partition),
        local_cluster.python_image,
        ["python3", "-c", EXCHANGE],
        str(shared_dir(tmp_path / "state")),
        requirements={"replicas": 2, "tasks_per_node": 1},
    )
    [(job_id, rc)] = sbatch_wait(write_script(tmp_path, req))
    log = log_of(req, job_id)
    assert rc == 0, log
    ranks = sorted((_fields(m) for m in _XCHG.findall(log)), key=lambda f: f["rank"])
    print("two-node exchange:\n" + "\n".join(m.group(0) for m in _XCHG.finditer(log)))
    assert [f["rank"] for f in ranks] == ["0", "1"], log
    assert {f["world"] for f in ranks} == {"2"} and {f["sum"] for f in ranks} == {"1"}
    assert [f["node_rank"] for f in ranks] == ["0", "1"]  # one task per node ...
    assert [f["node"] for f in ranks] == ["node1", "node2"]  # ... on two different Slurm nodes
    assert {f["local_rank"] for f in ranks} == {"0"} and {f["local_world"] for f in ranks} == {"1"}
    [master] = {f["master"] for f in ranks}
    port = int(master.rsplit(":", 1)[1])
    assert port == 10000 + int(job_id) % 10000
    # node1 does not resolve on this machine: MASTER_ADDR is the address Slurm reaches it at.
    assert master.startswith("127.0.0.1:")


def test_local_world_size_counts_the_tasks_of_each_node(local_cluster: LocalCluster, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    program = (
        "import os; print('RDV', *(os.environ[k] for k in ('RANK', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', "
        "'NODE_RANK', 'WORLD_SIZE')), flush=True)"
    )
    req = one_job(
        cluster_config(partition=local_cluster.partition),
        local_cluster.python_image,
        ["python3", "-c", program],
        str(shared_dir(tmp_path / "state")),
        requirements={"replicas": 3, "nodes": 1},
    )
    [(job_id, rc)] = sbatch_wait(write_script(tmp_path, req))
    log = log_of(req, job_id)
    assert rc == 0, log
    rows = sorted(line.split()[1:] for line in log.splitlines() if line.startswith("RDV "))
    assert rows == [["0", "0", "3", "0", "3"], ["1", "1", "3", "0", "3"], ["2", "2", "3", "0", "3"]], log


def test_two_jobs_on_one_node_get_different_master_ports(local_cluster: LocalCluster, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    state = str(shared_dir(tmp_path / "state"))
    program = ["sh", "-c", 'echo "PORT $MASTER_ADDR $MASTER_PORT"; sleep 2']
    reqs = [
        one_job(
            cluster_config(partition=local_cluster.partition),
            local_cluster.image,
            program,
            state,
            requirements={"location": "node1"},
        )
        for _ in range(2)
    ]
    results = sbatch_wait(*(write_script(tmp_path, r, f"job{i}.sh") for i, r in enumerate(reqs)))
    ports = []
    for req, (job_id, rc) in zip(reqs, results, strict=True):
        log = log_of(req, job_id)
        assert rc == 0, log
        [line] = [x for x in log.splitlines() if x.startswith("PORT ")]
        ports.append(int(line.split()[2]))
        assert 10000 <= ports[-1] < 20000
    assert ports[0] != ports[1]


def test_debug_traces_the_script_the_pull_step_and_the_entrypoint(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    req = debug(
        one_job(
            cluster_config(partition=local_cluster.partition),
            local_cluster.image,
            ["echo", "traced-program"],
            str(shared_dir(tmp_path / "state")),
            requirements={"replicas": 4, "tasks_per_node": 2},
            env_vars={"SECRET_TOKEN": "do-not-log-me"},
        )
    )
    [(job_id, rc)] = sbatch_wait(write_script(tmp_path, req))
    log = log_of(req, job_id)
    assert rc == 0, log
    assert "+ xm_rendezvous " in log  # the job script
    assert "+ srun " in log and "--exact" in log
    # The set-up step pulls once per node: 4 tasks on 2 nodes, 2 pulls, before the tasks' step.
    assert log.count("+ podman image exists ") == 2, log
    assert log.rindex("+ podman image exists ") < log.index("srun --ntasks=4 --exact")
    assert log.count("+ exec echo traced-program") == 4  # the entrypoint, after its exports
    assert log.splitlines().count("traced-program") == 4
    assert "do-not-log-me" not in log  # the env values stay out of the trace


def test_a_port_in_use_on_the_first_node_is_skipped(local_cluster: LocalCluster, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    req = one_job(
        cluster_config(partition=local_cluster.partition),
        local_cluster.image,
        ["sh", "-c", 'echo "PORT $MASTER_PORT"'],
        str(shared_dir(tmp_path / "state")),
        requirements={"location": "node1"},
    )
    listeners: list[socket.socket] = []

    def occupy(job_id: str) -> None:  # what another job (or a service) listening there would look like
        listeners.append(socket.create_server(("127.0.0.1", 10000 + int(job_id) % 10000)))

    try:
        [(job_id, rc)] = sbatch_wait(write_script(tmp_path, req), before_release=occupy)
    finally:
        for listener in listeners:
            listener.close()
    log = log_of(req, job_id)
    assert rc == 0, log
    [line] = [x for x in log.splitlines() if x.startswith("PORT ")]
    assert int(line.split()[1]) == 10000 + (int(job_id) + 1) % 10000
