"""A hyper-parameter sweep: 6 trials (learning rate x seed) submitted as ONE Slurm job array.

    source .local-cluster/env.sh && uv run python examples/job-array-sweep/launch.py

Each trial becomes a work unit and an array task (`<array id>_<task>`) with its own args and env vars.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import sys

from xmanager import xm

import xm_slurm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import local_site  # the site-specific part: your cluster config and registry

# The program: an image already in the registry (experiment.package([...]) builds your own).
TRAIN = """
import os, sys
print(f"trial of work unit {os.environ['XM_SLURM_WORK_UNIT_ID']}: args {sys.argv[1:]} run={os.environ['RUN_NAME']}")
"""


async def main() -> None:
    cluster = local_site.cluster()
    executable = xm_slurm.RemoteImage(image=local_site.python_image(), entrypoint=["python3", "-c", TRAIN])
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, RAM=512 * xm.MiB, cluster=cluster),
        time=dt.timedelta(minutes=5),
    )
    trials = [
        xm_slurm.JobArgs(args={"lr": lr, "seed": seed}, env_vars={"RUN_NAME": f"lr{lr}-s{seed}"})
        for lr, seed in itertools.product((0.1, 0.01, 0.001), (0, 1))
    ]
    async with xm_slurm.create_experiment("job array sweep") as experiment:
        job = xm.Job(executable=executable, executor=executor, args={"epochs": 3})
        work_units = await experiment.add(job, args=trials)
        arrays = {j.job_id.job_id for wu in work_units for j in wu.slurm_jobs}
        print(
            f"experiment {experiment.experiment_id}: {len(work_units)} work units in job array(s) {sorted(arrays)}"
        )
        statuses = await asyncio.gather(
            *(wu.wait_until_complete() for wu in work_units), return_exceptions=True
        )
        for wu, result in zip(work_units, statuses, strict=True):
            state = "FAILED: " + str(result) if isinstance(result, BaseException) else "COMPLETED"
            print(f"--- work unit {wu.work_unit_id} ({wu.launched_jobs[0].address}): {state}")
            async for line in wu.logs(num_lines=5):
                print(f"    {line}")


if __name__ == "__main__":
    asyncio.run(main())
