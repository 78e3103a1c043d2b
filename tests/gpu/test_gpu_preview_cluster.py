"""`xm-slurm preview --check` on the local cluster: Slurm's own `sbatch --test-only` accepts the GPU
directives of the Topology, MIG and nodes/tasks_per_node forms (and refuses a request no node can hold)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from experiment_fixtures import cluster_literal
from local_cluster import LocalCluster

pytestmark = pytest.mark.cluster

LAUNCH = """
import dataclasses, datetime as dt, sys
from xmanager import xm
import xm_slurm
from xm_slurm import ResourceType as R

FORMS = {{
    "topology": dict(GPU=xm_slurm.Topology("2x2", switches=1, switch_wait=dt.timedelta(days=1, hours=2))),
    "mig": dict(H100_80GIB_1G_10GIB=1, replicas=2),
    "nodes": dict(GPU=1, nodes=2, tasks_per_node=1),
    # 6 GPUs on each of 2 nodes: only node2 has 6 (one node holding 8 is refused by the pre-flight itself)
    "toomany": dict(GPU=3, nodes=2, tasks_per_node=2),
}}

@xm.run_in_asyncio_loop
async def main():
    cluster = dataclasses.replace({cluster}, resources={{R.H100_80GIB_1G_10GIB: "1g.10gb"}})
    image = xm_slurm.RemoteImage(image={image!r}, entrypoint=["sh", "-c", "true"])
    async with xm_slurm.create_experiment("gpu preview") as experiment:
        for name in sys.argv[1:]:
            requirements = xm_slurm.JobRequirements(CPU=1, cluster=cluster, **FORMS[name])
            executor = xm_slurm.Slurm(requirements=requirements, time=dt.timedelta(days=2))
            await experiment.add(xm.Job(executable=image, executor=executor, name=f"gpu-{{name}}"))

main()
"""


def _preview_check(tmp_path: Path, lc: LocalCluster, *forms: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH.format(cluster=cluster_literal(lc), image=lc.image))
    env = {**os.environ, "XM_SLURM_STATE_DIR": str(tmp_path / "state"), "XM_SLURM_API_BACKEND": "sqlite"}
    env.pop("XM_SLURM_DRY_RUN", None)
    return subprocess.run(
        [sys.executable, "-m", "xm_slurm.cli", "preview", "--check", str(script), *forms],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def test_sbatch_test_only_accepts_topology_mig_and_nodes_forms(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    result = _preview_check(tmp_path, local_cluster, "topology", "mig", "nodes")
    print(result.stdout[-3000:], result.stderr[-2000:])  # the sbatch --test-only lines, for the record
    assert result.returncode == 0, result.stderr + result.stdout
    scripts = result.stdout
    assert "#SBATCH --switches=1@1-02:00:00" in scripts and "#SBATCH --gpus-per-task=2" in scripts
    assert "#SBATCH --gpus-per-task=1g.10gb:1" in scripts
    assert "#SBATCH --nodes=2" in scripts and "#SBATCH --ntasks-per-node=1" in scripts
    checks = [line for line in scripts.splitlines() if line.startswith("check ")]
    assert len(checks) == 3 and all(": ok, expected start " in line for line in checks), checks
    # The MIG form can only go to node2, the one node with 1g.10gb slices; the two-node form needs both.
    assert "on node2" in checks[1] and "on node[1-2]" in checks[2], checks


def test_sbatch_test_only_refuses_more_gpus_than_a_node_has(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    result = _preview_check(tmp_path, local_cluster, "toomany")
    assert result.returncode != 0
    assert "REFUSED by sbatch" in result.stdout and "#SBATCH --gpus-per-task=3" in result.stdout
