"""A plain Python project (requirements.txt) packaged with `python_container` and evaluated on two splits.

    source .local-cluster/env.sh && uv run python examples/pip/launch.py

The generated Dockerfile starts FROM `base_image`, pip-installs requirements.txt, copies this folder and
runs the entrypoint module.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys

from xmanager import xm

import xm_slurm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import local_site  # the site-specific part: your cluster config and registry


async def main() -> None:
    cluster = local_site.cluster()
    local_site.trust_host_certificates()
    async with xm_slurm.create_experiment("pip example") as experiment:
        [executable] = experiment.package(
            [
                xm_slurm.python_container(
                    executor_spec=xm_slurm.Slurm.Spec(tag=local_site.image_tag("pip-evaluate")),
                    entrypoint=xm.ModuleName("evaluate"),
                    context=".",
                    requirements="requirements.txt",
                    base_image=local_site.python_image(),
                    # The local base image is Debian's bare python3, without pip; images such as
                    # python:3.11-slim have pip and need no extra system package.
                    extra_system_packages=["python3-pip"],
                )
            ]
        )
        executor = xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
        )
        job = xm.Job(executable=executable, executor=executor, args={"checkpoint": "ckpt-100"})
        work_units = await experiment.add(
            job, args=[{"args": {"split": split}} for split in ("valid", "test")]
        )
        print(f"experiment {experiment.experiment_id}")
        for wu in work_units:
            await wu.wait_until_complete()
            print(f"--- work unit {wu.work_unit_id}: {(await wu.get_status()).status.name}")
            async for line in wu.logs(num_lines=5):
                print(f"    {line}")


if __name__ == "__main__":
    asyncio.run(main())
