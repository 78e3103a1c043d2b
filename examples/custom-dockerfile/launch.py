"""Build your own Dockerfile with `docker_container` and run the image it makes.

source .local-cluster/env.sh && uv run python examples/custom-dockerfile/launch.py
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
    async with xm_slurm.create_experiment("custom Dockerfile") as experiment:
        [executable] = experiment.package(
            [
                xm_slurm.docker_container(
                    executor_spec=xm_slurm.Slurm.Spec(tag=local_site.image_tag("custom-dockerfile")),
                    dockerfile="Dockerfile",  # a file of the context (default: <context>/Dockerfile)
                    context=".",
                    build_args={"BASE_IMAGE": local_site.python_image()},
                    env_vars={"MODE": "train"},  # baked into the executable, not the image
                )
            ]
        )
        print(f"built and pinned {executable.image}")  # type: ignore[attr-defined]
        executor = xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
        )
        wu = await experiment.add(xm.Job(executable=executable, executor=executor, args={"steps": 10}))
        await wu.wait_until_complete()
        print(
            f"experiment {experiment.experiment_id} work unit {wu.work_unit_id}: {(await wu.get_status()).status.name}"
        )
        async for line in wu.logs(num_lines=5):
            print(f"    {line}")


if __name__ == "__main__":
    asyncio.run(main())
