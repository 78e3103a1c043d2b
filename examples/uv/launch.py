"""A uv project (pyproject.toml + uv.lock + src/) packaged with `uv_container` and run as a 2-trial sweep.

    source .local-cluster/env.sh && uv run python examples/uv/launch.py

The image is built FROM a base image of your choice (`--base-image`; by default the local cluster's Python
image), `uv sync --frozen` installs exactly what uv.lock pins, and the entrypoint is the project's module.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys

from xmanager import xm

import xm_slurm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import local_site  # the site-specific part: your cluster config and registry


async def main(base_image: str) -> None:
    cluster = local_site.cluster()
    local_site.trust_host_certificates()
    async with xm_slurm.create_experiment("uv example") as experiment:
        # uv itself comes from an image holding /uv (ghcr.io/astral-sh/uv:<version> at a real site), unless
        # the base image already has it (the default base image, ghcr.io/astral-sh/uv:python3.11-bookworm-slim).
        [uv_image] = experiment.package([local_site.uv_image()])
        [executable] = experiment.package(
            [
                xm_slurm.uv_container(
                    executor_spec=xm_slurm.Slurm.Spec(tag=local_site.image_tag("uv-sweeper")),
                    entrypoint=xm.ModuleName("sweeper.train"),
                    context=".",  # this folder: relative to the launch script
                    base_image=base_image,
                    uv_image=uv_image.image,
                )
            ]
        )
        executor = xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=10)
        )
        job = xm.Job(executable=executable, executor=executor, args={"seed": 1})
        work_units = await experiment.add(job, args=[{"args": {"lr": lr}} for lr in (0.1, 0.01)])
        print(f"experiment {experiment.experiment_id}: work units {[wu.work_unit_id for wu in work_units]}")
        for wu in work_units:
            await wu.wait_until_complete()
            print(f"--- work unit {wu.work_unit_id}: {(await wu.get_status()).status.name}")
            async for line in wu.logs(num_lines=20):
                print(f"    {line}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-image", default=os.environ.get("XM_TEST_PYTHON_IMAGE", xm_slurm.packageables.DEFAULT_UV_IMAGE)
    )
    asyncio.run(main(parser.parse_args().base_image))
