"""Scale-test helpers (a module name unique across the test folders)."""

from __future__ import annotations

import datetime as dt
import subprocess
from typing import Any

from counting_transport import CountingTransport
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm.transport import SSHTransport, Transport


def ssh_config(lc: LocalCluster) -> xm_slurm.SlurmSSHConfig:
    return xm_slurm.SlurmSSHConfig(
        host=lc.ssh_host,
        port=lc.ssh_port,
        user=lc.ssh_user,
        client_keys=(lc.ssh_key,),
        known_hosts=lc.known_hosts,
        config_files=(),
    )


def make_cluster(lc: LocalCluster, **kw: Any) -> xm_slurm.SlurmClusterConfig:
    return xm_slurm.SlurmClusterConfig(
        name="local",
        ssh=ssh_config(lc),
        runtime=xm_slurm.ContainerRuntime.PODMAN,
        partition=lc.partition,
        **kw,
    )


class Counting:
    """A transport factory whose (real SSH) transports count the commands they run."""

    def __init__(self) -> None:
        self.transports: list[CountingTransport] = []

    def __call__(self, config: xm_slurm.SlurmSSHConfig) -> Transport:
        transport = CountingTransport(SSHTransport(config))
        self.transports.append(transport)
        return transport

    def count(self, program: str) -> int:
        return sum(t.counts[program] for t in self.transports)


def busybox_job(
    lc: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, script: str = "true", **executor_kw: Any
) -> xm.Job:
    """The cheapest honest task: busybox `sh -c <script>` in the test image (args become $1, $2, ...)."""
    image = xm_slurm.RemoteImage(image=lc.image, entrypoint=["sh", "-c", script, "task"])
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster),
        time=dt.timedelta(minutes=5),
        **executor_kw,
    )
    return xm.Job(executable=image, executor=executor)


def held_gate() -> str:
    """A held job: whatever depends on it stays pending (one job record per array) until cancelled."""
    out = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--hold",
            "--output=/dev/null",
            "--time=1",
            "--job-name=xm-scale-gate",
            "--wrap",
            "true",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().split(";")[0]


def scancel(*job_ids: object) -> None:
    subprocess.run(["scancel", *map(str, job_ids)], check=False, capture_output=True)


def running_tasks(base_ids: list[int]) -> int:
    """How many tasks of these arrays squeue shows RUNNING right now."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-t", "RUNNING", "-j", ",".join(map(str, base_ids)), "-o", "%i"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return len([line for line in out.splitlines() if line.strip()])
