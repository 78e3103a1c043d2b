"""A SPEC §1-style launch script against the local test cluster: one job and a 3-trial sweep.

Run it through `scripts/demo` (which sources `.local-cluster/env.sh`), or by hand:

    source .local-cluster/env.sh && uv run python examples/demo/launch.py

Only the cluster config is site-specific; the rest is what a launch script for any cluster looks like.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from typing import Any

from xmanager import xm

import xm_slurm

PROGRAM = (
    "import os, sys, time; time.sleep(3); "
    "print('work unit', os.environ['XM_SLURM_WORK_UNIT_ID'], 'args', sys.argv[1:], 'GREETING', os.environ.get('GREETING'))"
)


def local_cluster() -> xm_slurm.SlurmClusterConfig:
    env = os.environ
    return xm_slurm.SlurmClusterConfig(
        name="local",
        runtime=xm_slurm.ContainerRuntime.PODMAN,
        partition=env["XM_TEST_SLURM_PARTITION"],
        ssh=xm_slurm.SlurmSSHConfig(
            host=env["XM_TEST_SSH_HOST"],
            port=int(env["XM_TEST_SSH_PORT"]),
            user=env["XM_TEST_SSH_USER"],
            client_keys=(env["XM_TEST_SSH_KEY"],),
            known_hosts=env["XM_TEST_SSH_KNOWN_HOSTS"],
        ),
    )


async def follow_states(units: list[Any]) -> None:
    """Print each work unit's state whenever it changes, until every one has ended."""
    start = time.monotonic()
    seen: dict[int, str] = {}
    while True:
        # Concurrent status calls on one cluster share a single sacct.
        statuses = await asyncio.gather(*(wu.get_status() for wu in units))
        for wu, status in zip(units, statuses, strict=True):
            if seen.get(wu.work_unit_id) != status.status.name:
                seen[wu.work_unit_id] = status.status.name
                print(
                    f"[{time.monotonic() - start:5.1f} s] work unit {wu.work_unit_id}: {status.status.name}"
                )
        if not any(status.is_active for status in statuses):
            return
        await asyncio.sleep(0.5)


async def main() -> None:
    cluster = local_cluster()
    async with xm_slurm.create_experiment("demo") as experiment:
        experiment.context.annotations.tags.add("demo")
        # An image already in the cluster's registry; `experiment.package([...])` builds and pins your own.
        executable = xm_slurm.RemoteImage(
            image=os.environ["XM_TEST_PYTHON_IMAGE"], entrypoint=["python3", "-c", PROGRAM]
        )
        executor = xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
        )
        job = xm.Job(executable=executable, executor=executor, args={"seed": 0})
        single = await experiment.add(job)
        sweep = await experiment.add(
            job,
            args=[
                xm_slurm.JobArgs(args={"lr": lr}, env_vars={"GREETING": f"hello {lr}"})
                for lr in (0.1, 0.01, 0.001)
            ],
        )
        print(
            f"experiment {experiment.experiment_id}: work units {[wu.work_unit_id for wu in [single, *sweep]]}"
        )
        units = [single, *sweep]
        await follow_states(units)
        for wu in units:
            try:
                await wu.wait_until_complete()
            except xm.ExperimentUnitError as e:
                print(f"work unit {wu.work_unit_id} did not complete: {e}")
            status = await wu.get_status()
            print(
                f"--- work unit {wu.work_unit_id} ({', '.join(j.address or '' for j in wu.launched_jobs)}): "
                f"{status.status.name}"
            )
            async for line in wu.logs(num_lines=20):
                print(f"    {line}")


if __name__ == "__main__":
    asyncio.run(main())
