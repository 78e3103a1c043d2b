"""Apptainer path (the FAKE apptainer): a pinned image is converted once into the shared SIF cache."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from e2e_helpers import PROGRAM, apptainer_cluster, context_with, finish, listing, read_lines, run_job
from experiment_fixtures import executor
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm.executables import RemoteImage

pytestmark = pytest.mark.cluster

# Long enough that both jobs, submitted together, reach the conversion while it runs.
CONVERSION_SECONDS = 4.0


async def test_two_jobs_starting_at_once_on_a_new_image_convert_it_once(
    local_cluster: LocalCluster, unique: str, tmp_path: Path
) -> None:
    cache = tmp_path / "sif-cache"
    cluster = apptainer_cluster(local_cluster, cache, build_seconds=CONVERSION_SECONDS)
    ctx = context_with(
        tmp_path / "ctx",
        f'FROM {local_cluster.python_image}\nWORKDIR /app\nCOPY hello.py .\nENTRYPOINT ["python3", "hello.py"]\n',
        **{"hello.py": PROGRAM + f"# {unique}: a new image, never converted\n"},
    )
    async with xm_slurm.create_experiment("packaging e2e: apptainer cache") as experiment:
        [image] = experiment.package(
            [
                xm_slurm.docker_container(
                    xm_slurm.Slurm.Spec(tag=f"{local_cluster.registry}/{unique}/app:latest"), context=ctx
                )
            ]
        )
        assert isinstance(image, RemoteImage)
        sif = cache / (image.image.split("@", 1)[1].replace(":", "-") + ".sif")
        jobs = [xm.Job(executable=image, executor=executor(cluster), args=[name]) for name in ("one", "two")]

        submitted = time.time()
        units = await asyncio.gather(*(experiment.add(job) for job in jobs))
        ids = {str(j.job_id) for wu in units for j in wu.slurm_jobs}
        assert len(ids) == 2  # two jobs, each running its own script (and its own conversion check)
        results = await asyncio.gather(*(finish(wu, submitted) for wu in units))

        for (lines, _), name in zip(results, ("one", "two"), strict=True):
            assert f"hello from ? ['{name}'] in /app" in lines
            assert any(f"fake-apptainer: apptainer exec {sif}" in line for line in lines), lines
        # Exactly one conversion; the other job waited on the lock and used its result.
        conversions = read_lines(cache / "fake-apptainer-conversions.log")
        assert len(conversions) == 1 and conversions[0].endswith(image.image), conversions
        converting = [any("xm_slurm: converting" in line for line in lines) for lines, _ in results]
        assert sorted(converting) == [False, True]
        assert listing(cache, "*.part-*") == []  # no half-written file left behind
        new_image_start = max(latency for _, latency in results)
        # Whether the second job arrived during the conversion (then it says so) depends on free slots.
        waited = any("another job is converting" in line for lines, _ in results for line in lines)

        # A later job finds the SIF in the cache: no conversion, a quicker start.
        lines, cached_start = await run_job(experiment, jobs[0])
        assert "hello from ? ['one'] in /app" in lines
        assert len(read_lines(cache / "fake-apptainer-conversions.log")) == 1
    print(
        f"\nFIGURES apptainer (fake, conversion {CONVERSION_SECONDS:.0f} s): submission -> program start "
        f"with a new image {new_image_start:.2f} s, with the image in the SIF cache {cached_start:.2f} s; the second job waited on the lock: {waited}"
    )
