"""`experiment.package([...])` + `experiment.add(...)` on the local cluster (Podman), for every packageable."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from e2e_helpers import (
    PROGRAM,
    LineRecorder,
    cache_use,
    forget_image,
    podman,
    run_job,
    uv_image_context,
    uv_project,
)
from experiment_fixtures import executor
from local_cluster import LocalCluster
from packaging_helpers import registry_digest, uv_binary
from xmanager import xm

import xm_slurm
from xm_slurm.executables import RemoteImage
from xm_slurm.packaging import ImageBuilder, PodmanClient, package_async

pytestmark = pytest.mark.cluster


async def test_uv_container_runs_and_an_unchanged_rebuild_uses_the_cache(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, unique: str, tmp_path: Path
) -> None:
    uv = uv_binary()
    if uv is None:
        pytest.skip("no uv executable on this machine to put in the local uv image")
    registry = local_cluster.registry
    uv_ctx = uv_image_context(tmp_path / "uvimage", uv)
    [uv_image] = xm_slurm.SlurmExperiment.package(
        [xm_slurm.docker_container(xm_slurm.Slurm.Spec(tag=f"{registry}/{unique}/uv:latest"), context=uv_ctx)]
    )
    assert isinstance(uv_image, RemoteImage)
    project = uv_project(tmp_path / "proj", uv)
    tag = f"{registry}/{unique}/uvapp:latest"
    packageable = xm_slurm.uv_container(
        executor_spec=xm_slurm.Slurm.Spec(tag=tag),
        entrypoint=xm.ModuleName("hello"),
        context=project,
        base_image=local_cluster.python_image,
        uv_image=uv_image.image,
        env_vars={"XM_APP": "uv-app"},
    )

    async with xm_slurm.create_experiment("packaging e2e: uv") as experiment:
        started = time.monotonic()
        [executable] = experiment.package([packageable])
        cold = time.monotonic() - started
        assert isinstance(executable, RemoteImage)
        assert executable.image == f"{registry}/{unique}/uvapp@{registry_digest(tag)}"
        # What the job runs, read from the built image: its ENTRYPOINT and WORKDIR.
        assert executable.entrypoint.to_list() == ["python", "-m", "hello"]
        assert executable.workdir == "/workdir"

        # Rebuild with no change: every step after FROM comes from podman's cache; same digest.
        recorder = LineRecorder()
        builder = ImageBuilder(PodmanClient(runner=recorder))
        started = time.monotonic()
        [again] = await package_async([packageable], builder=builder)
        warm = time.monotonic() - started
        steps, cached = cache_use(recorder.lines)
        assert steps >= 5 and cached == steps, recorder.lines
        assert isinstance(again, RemoteImage) and again.image == executable.image

        # A new image on the node: the job pulls it (from the local registry) ...
        forget_image(tag, executable.image)
        assert podman("image", "exists", executable.image, check=False).returncode == 1
        job = xm.Job(executable=executable, executor=executor(cluster), args=["--seed", "1"])
        lines, new_image_start = await run_job(experiment, job)
        assert "hello from uv-app ['--seed', '1'] in /workdir" in lines
        assert podman("image", "exists", executable.image, check=False).returncode == 0
        # ... and the next job finds it there (podman pulls only what the node lacks).
        lines, cached_image_start = await run_job(experiment, job)
        assert "hello from uv-app ['--seed', '1'] in /workdir" in lines
    print(
        f"\nFIGURES uv example: cold build+push {cold:.1f} s, warm (cached) build+push {warm:.1f} s; "
        f"submission -> program start: new image {new_image_start:.2f} s, image on the node "
        f"{cached_image_start:.2f} s"
    )


async def test_python_and_dockerfile_containers_and_a_pushed_docker_image(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, unique: str, tmp_path: Path
) -> None:
    registry = local_cluster.registry
    project = tmp_path / "pyproj"
    project.mkdir()
    (project / "hello.py").write_text(PROGRAM)
    (project / "requirements.txt").write_text("# nothing to install\n")
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "hello.py").write_text(PROGRAM)
    (custom / "Dockerfile.custom").write_text(
        f"FROM {local_cluster.python_image}\nWORKDIR /srv/app\nCOPY hello.py .\n"
        'ENV XM_APP=custom\nENTRYPOINT ["python3", "/srv/app/hello.py"]\nCMD ["--ignored-default"]\n'
    )
    custom_tag = f"{registry}/{unique}/custom:v1"
    python_pkg = xm_slurm.python_container(
        executor_spec=xm_slurm.Slurm.Spec(tag=f"{registry}/{unique}/py:latest"),
        entrypoint=xm.ModuleName("hello"),
        context=project,
        base_image=local_cluster.python_image,
        env_vars={"XM_APP": "python-app"},
    )
    docker_pkg = xm_slurm.docker_container(
        xm_slurm.Slurm.Spec(tag=custom_tag), dockerfile=custom / "Dockerfile.custom", context=custom
    )

    async with xm_slurm.create_experiment("packaging e2e: python, Dockerfile, image") as experiment:
        python_exe, docker_exe = experiment.package([python_pkg, docker_pkg])
        # An existing image by tag: pinned, and what it runs read from the registry's config blob.
        [image_exe] = experiment.package([xm_slurm.docker_image(image=custom_tag, args=["from-image"])])
        assert isinstance(docker_exe, RemoteImage) and isinstance(image_exe, RemoteImage)
        assert image_exe.image == docker_exe.image  # the same digest
        # ENTRYPOINT wins; CMD (Docker's default args) is left out: the job's args take its place.
        assert image_exe.entrypoint.to_list() == ["python3", "/srv/app/hello.py"]
        assert image_exe.workdir == "/srv/app"

        lines, _ = await run_job(
            experiment, xm.Job(executable=python_exe, executor=executor(cluster), args=["a b"])
        )
        assert "hello from python-app ['a b'] in /workdir" in lines
        lines, _ = await run_job(
            experiment, xm.Job(executable=docker_exe, executor=executor(cluster), args=["x"])
        )
        assert "hello from custom ['x'] in /srv/app" in lines
        lines, _ = await run_job(experiment, xm.Job(executable=image_exe, executor=executor(cluster)))
        assert "hello from custom ['from-image'] in /srv/app" in lines
