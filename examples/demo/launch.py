"""A SPEC §1-style launch script against the local test cluster: one job and a 3-trial sweep.

Run it through `scripts/demo` (which sources `.local-cluster/env.sh`), or by hand:

    source .local-cluster/env.sh && uv run python examples/demo/launch.py

Only the cluster config is site-specific; the rest is what a launch script for any cluster looks like.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os

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
        # The live view: counts per state, a progress bar and why units wait, redrawn in place on a terminal
        # (one line per change when piped); then, for a unit that failed, its exit code and last log lines.
        statuses = await experiment.wait(progress=True)
        for wu in units:
            jobs = ", ".join(j.address or "" for j in wu.launched_jobs)
            print(f"--- work unit {wu.work_unit_id} ({jobs}): {statuses[wu.work_unit_id].status.name}")
            async for line in wu.logs(num_lines=20):
                print(f"    {line}")


if __name__ == "__main__":
    asyncio.run(main())
