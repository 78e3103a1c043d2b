"""A conda project (environment.yml) packaged with `mamba_container` (alias `conda_container`).

    source .local-cluster/env.sh && uv run python examples/conda/launch.py --base-image <a micromamba image>

The generated Dockerfile starts FROM a micromamba image (default `mambaorg/micromamba:bookworm-slim`),
installs environment.yml into its base environment and runs the entrypoint module there. The local test
cluster has no micromamba image and no access to conda-forge, so there this example only runs with
`--base-image` pointing at a micromamba image you pushed to its registry yourself.
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


def packageable(base_image: str) -> xm.Packageable:
    return xm_slurm.mamba_container(
        executor_spec=xm_slurm.Slurm.Spec(tag=local_site.image_tag("conda-simulate")),
        entrypoint=xm.ModuleName("simulate"),
        context=os.path.dirname(os.path.abspath(__file__)),
        environment="environment.yml",
        base_image=base_image,
    )


async def main(base_image: str) -> None:
    cluster = local_site.cluster()
    async with xm_slurm.create_experiment("conda example") as experiment:
        [executable] = experiment.package([packageable(base_image)])
        executor = xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
        )
        job = xm.Job(executable=executable, executor=executor)
        work_units = await experiment.add(job, args=[{"args": {"seed": seed}} for seed in (0, 1, 2)])
        print(f"experiment {experiment.experiment_id}")
        for wu in work_units:
            await wu.wait_until_complete()
            async for line in wu.logs(num_lines=3):
                print(f"work unit {wu.work_unit_id}: {line}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", default=xm_slurm.packageables.DEFAULT_MAMBA_IMAGE)
    asyncio.run(main(parser.parse_args().base_image))
