"""Bad packaging input through `experiment.package`: a clear error naming the value, before anything is pushed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from e2e_helpers import context_with, podman
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm.errors import PackagingError, ValidationError
from xm_slurm.executables import RemoteImage

pytestmark = pytest.mark.cluster


def _in_registry(ref: str) -> bool:
    found = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"], capture_output=True, timeout=60
    )
    return found.returncode == 0


def test_missing_files_and_tags_without_registry(local_cluster: LocalCluster, tmp_path: Path) -> None:
    spec = xm_slurm.Slurm.Spec(tag=f"{local_cluster.registry}/xm-e2e-bad/x:latest")
    ctx = context_with(tmp_path / "ctx", "FROM scratch\n")
    with pytest.raises(ValidationError, match=r"Dockerfile '.*/ctx/Nope\.Dockerfile' does not exist"):
        xm_slurm.SlurmExperiment.package(
            [xm_slurm.docker_container(spec, dockerfile=ctx / "Nope.Dockerfile", context=ctx)]
        )
    project = tmp_path / "uvproj"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    with pytest.raises(
        ValidationError, match=r"uv project file uv\.lock '.*/uvproj/uv\.lock' does not exist"
    ):
        xm_slurm.uv_container(executor_spec=spec, entrypoint=xm.ModuleName("x"), context=project)
    with pytest.raises(
        ValidationError, match=r"'me/train:latest' names no registry.*registry\.example\.org/me/train"
    ):
        xm_slurm.SlurmExperiment.package(
            [xm_slurm.docker_container(xm_slurm.Slurm.Spec(tag="me/train:latest"), context=ctx)]
        )


def test_built_image_without_entrypoint_is_refused_before_the_push(
    local_cluster: LocalCluster, unique: str, tmp_path: Path
) -> None:
    # FROM scratch with no ENTRYPOINT and no CMD: the image runs nothing.
    ctx = context_with(tmp_path / "ctx", "FROM scratch\nCOPY data.txt /data.txt\n", **{"data.txt": "x"})
    tag = f"{local_cluster.registry}/{unique}/nothing:latest"
    with pytest.raises(PackagingError, match=rf"image {tag} has neither ENTRYPOINT nor CMD.*ENTRYPOINT \["):
        xm_slurm.SlurmExperiment.package(
            [xm_slurm.docker_container(xm_slurm.Slurm.Spec(tag=tag), context=ctx)]
        )
    assert not _in_registry(tag)


def test_existing_image_without_entrypoint_is_a_clear_error(
    local_cluster: LocalCluster, unique: str, tmp_path: Path
) -> None:
    ctx = context_with(tmp_path / "ctx", "FROM scratch\nCOPY data.txt /data.txt\n", **{"data.txt": "x"})
    tag = f"{local_cluster.registry}/{unique}/data-only:latest"
    podman("build", "--quiet", "--tag", tag, str(ctx))
    podman("push", "--quiet", tag)
    with pytest.raises(PackagingError, match=r"data-only@sha256:\w+ has neither ENTRYPOINT nor CMD"):
        xm_slurm.SlurmExperiment.package([xm_slurm.docker_image(image=tag)])


def test_multi_arch_image_uses_its_linux_amd64_variant(local_cluster: LocalCluster, unique: str) -> None:
    # An image index (manifest list) in the real registry: the config is read from the amd64 manifest.
    index = f"{local_cluster.registry}/{unique}/multi:latest"
    podman("manifest", "create", index)
    podman("manifest", "add", index, f"docker://{local_cluster.python_image}")
    podman("manifest", "push", "--all", index, f"docker://{index}")
    [image] = xm_slurm.SlurmExperiment.package([xm_slurm.docker_image(image=index)])
    assert isinstance(image, RemoteImage) and "@sha256:" in image.image
    assert image.entrypoint.to_list() == ["/bin/bash"]  # the python image's CMD
    podman("manifest", "rm", index, check=False)
