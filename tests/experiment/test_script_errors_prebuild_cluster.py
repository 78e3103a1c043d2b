"""Before a slow build, what fails in seconds is checked (issue 18, point 5): a registry that does not answer
and a cluster whose host key is wrong are reported by `experiment.package` before any image is built.
Real podman, the real local registry and sshd; "nothing was built" is checked by the image's absence (from
podman's local store and from the registry), and a control build with good settings makes it present."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm.errors import HostKeyError, PackagingError, ValidationError

pytestmark = pytest.mark.cluster

_UNANSWERED = "127.0.0.1:5999"  # nothing listens there on the test machine


def _project(tmp_path: Path, lc: LocalCluster) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text(f"FROM {lc.image}\nRUN echo built > /built\n")
    return project


def _packageable(project: Path, tag: str) -> xm.Packageable:
    return xm_slurm.docker_container(executor_spec=xm_slurm.Slurm.Spec(tag=tag), context=project)


def _built_locally(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag], check=False).returncode == 0


def _forget_image(tag: str) -> None:
    subprocess.run(["podman", "rmi", "-f", tag], check=False, capture_output=True)


def _in_registry(lc: LocalCluster, repository: str) -> bool:
    return httpx.get(f"http://{lc.registry}/v2/{repository}/tags/list", timeout=10).status_code == 200


def _wrong_host_key(tmp_path: Path, cluster: xm_slurm.SlurmClusterConfig) -> xm_slurm.SlurmClusterConfig:
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    known_hosts = tmp_path / "known_hosts"
    public = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    known_hosts.write_text(f"[{cluster.ssh.host}]:{cluster.ssh.port} {public}\n")
    return dataclasses.replace(cluster, ssh=dataclasses.replace(cluster.ssh, known_hosts=str(known_hosts)))


async def test_an_unanswering_registry_is_reported_before_the_build(
    local_cluster: LocalCluster, tmp_path: Path, store: Path
) -> None:
    tag = f"{_UNANSWERED}/prebuild-{uuid.uuid4().hex[:8]}/app:latest"
    packageable = _packageable(_project(tmp_path, local_cluster), tag)
    started = time.monotonic()
    async with xm_slurm.create_experiment("registry down") as experiment:
        with pytest.raises(PackagingError) as raised:
            experiment.package([packageable])
    assert time.monotonic() - started < 20
    message = str(raised.value)
    assert message.startswith(f"before building (nothing was built): registry {_UNANSWERED} does not answer")
    assert raised.value.__cause__ is None and raised.value.__traceback__ is not None
    assert not _built_locally(tag)
    logs = store / "build-logs"
    assert not logs.exists() or not any(logs.iterdir())  # a build would have written its log there


def test_bad_input_is_refused_before_any_network_check(local_cluster: LocalCluster, tmp_path: Path) -> None:
    project = _project(tmp_path, local_cluster)
    missing = xm_slurm.docker_container(
        executor_spec=xm_slurm.Slurm.Spec(tag=f"{_UNANSWERED}/x/app:1"), dockerfile="nope", context=project
    )
    with pytest.raises(ValidationError, match=r"Dockerfile .*nope.* does not exist"):
        xm_slurm.SlurmExperiment.package([missing])


async def test_a_wrong_host_key_is_reported_before_the_build_and_a_good_one_builds(
    local_cluster: LocalCluster,
    tmp_path: Path,
    cluster: xm_slurm.SlurmClusterConfig,
    capfd: pytest.CaptureFixture[str],
) -> None:
    repository = f"prebuild-{uuid.uuid4().hex[:8]}/app"
    tag = f"{local_cluster.registry}/{repository}:latest"
    packageable = _packageable(_project(tmp_path, local_cluster), tag)
    async with xm_slurm.create_experiment("host key") as experiment:
        with pytest.raises(HostKeyError, match=r"^before building \(nothing was built\): SSH host key of "):
            experiment.package([packageable], clusters=[_wrong_host_key(tmp_path, cluster)])
        assert not _built_locally(tag) and not _in_registry(local_cluster, repository)

        # The control: the same packageable with the right known_hosts is built and pushed.
        capfd.readouterr()
        [executable] = experiment.package([packageable], clusters=[cluster])
        assert isinstance(executable, xm_slurm.RemoteImage)
        said = capfd.readouterr().err
        checked = (
            f"xm-slurm: before building: registry {local_cluster.registry} answers, cluster 'local' logs in"
        )
        assert checked in said and said.index(checked) < said.index("building " + tag), said
    assert _built_locally(tag) and _in_registry(local_cluster, repository)
    _forget_image(tag)


def test_the_script_sees_the_registry_problem_in_a_few_lines(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    project = _project(tmp_path, local_cluster)
    script = tmp_path / "launch.py"
    script.write_text(
        "import asyncio\nimport xm_slurm\n\n"
        "async def main():\n"
        "    async with xm_slurm.create_experiment('registry down') as experiment:\n"
        f"        experiment.package([xm_slurm.docker_container(executor_spec=xm_slurm.Slurm.Spec("
        f"tag='{_UNANSWERED}/x/app:1'), context={str(project)!r})])\n\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) <= 10, done.stderr
    frames = {line.strip().split('"')[1] for line in lines if line.startswith('  File "')}
    assert frames == {str(script)}, done.stderr
    assert "PackagingError: before building (nothing was built): registry 127.0.0.1:5999" in done.stderr
