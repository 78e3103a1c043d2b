"""A registry that demands a login: push with it, jobs pull with it, and the password leaks nowhere."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from pathlib import Path

import pytest
from e2e_helpers import (
    PROGRAM,
    CmdlineSampler,
    apptainer_cluster,
    context_with,
    exists,
    files_containing,
    forget_image,
    listing,
    password_registry,
    podman,
    run_job,
)
from experiment_fixtures import executor
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm.executables import RemoteImage
from xm_slurm.packaging.cluster_auth import remove_registry_auth
from xm_slurm.rendering.images import auth_file_path

pytestmark = pytest.mark.cluster


async def test_private_registry_login_reaches_jobs_and_no_secret_leaks(
    local_cluster: LocalCluster,
    cluster: xm_slurm.SlurmClusterConfig,
    unique: str,
    tmp_path: Path,
    store: Path,
) -> None:
    user, password = "xm-puller", f"pw-{uuid.uuid4().hex}"
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    with password_registry(tmp_path, user, password) as host:
        # The launcher's login, as `podman login` stores it (the password goes over stdin).
        auth = Path(os.environ["REGISTRY_AUTH_FILE"])
        podman("login", "--authfile", str(auth), "--username", user, "--password-stdin", host, input=password)
        ctx = context_with(
            tmp_path / "ctx",
            f'FROM {local_cluster.python_image}\nCOPY hello.py /hello.py\nENTRYPOINT ["python3", "/hello.py"]\n',
            **{"hello.py": PROGRAM},
        )
        tag = f"{host}/{unique}/private:latest"
        packageable = xm_slurm.docker_container(
            xm_slurm.Slurm.Spec(tag=tag), context=ctx, env_vars={"XM_APP": "private"}
        )
        async with xm_slurm.create_experiment("packaging e2e: private registry") as experiment:
            [image] = experiment.package([packageable])
            assert isinstance(image, RemoteImage) and image.image.startswith(
                f"{host}/{unique}/private@sha256:"
            )
            assert image.credentials is not None and image.credentials.username == user
            assert password not in repr(image)
            # Without the login the registry refuses the pull: the jobs below really need it.
            empty = tmp_path / "empty-auth.json"
            empty.write_text('{"auths": {}}')
            refused = podman("pull", "--authfile", str(empty), image.image, check=False)
            assert refused.returncode != 0 and "unauthorized" in refused.stderr.lower()

            # The launcher uploads the login (a private file) before it submits the job that needs it.
            transport = experiment.connections.transport(cluster.ssh)
            folder = await experiment.connections.experiment_dir(cluster.ssh, experiment.experiment_id)

            sif_cache = tmp_path / "sif-cache"
            with CmdlineSampler(password, token) as sampler:
                # Podman: the image is not on the node, so the job pulls it with --authfile.
                forget_image(tag, image.image)
                lines, _ = await run_job(experiment, xm.Job(executable=image, executor=executor(cluster)))
                assert "hello from private [] in /" in lines
                # The remote state folder is shared by every test whose store gave it the same xid: look
                # for this image's own login file, not at whatever else the folder holds.
                auth_path = auth_file_path(folder, image)
                assert auth_path is not None and exists(auth_path)
                assert stat.S_IMODE(os.stat(auth_path).st_mode) == 0o600
                assert stat.S_IMODE(os.stat(Path(auth_path).parent).st_mode) == 0o700
                # Apptainer (the fake): the conversion pulls with the login read into its environment.
                forget_image(tag, image.image)
                on_apptainer = executor(apptainer_cluster(local_cluster, sif_cache))
                lines, _ = await run_job(
                    experiment, xm.Job(executable=image, executor=on_apptainer, args=["a"])
                )
                assert "hello from private ['a'] in /" in lines
                assert any("fake-apptainer: apptainer build" in line for line in lines), lines
            assert sampler.samples > 20 and sampler.hits == []

            # The secret is in no file of the state folder but the private auth file (base64, as
            # podman writes it): not in the scripts, the job logs, or the launcher's local state.
            state = Path(folder)
            assert listing(state, "*.sh") and listing(state, "*.out")
            assert files_containing(state, password) == []
            assert files_containing(state, token) == [Path(auth_path)]
            assert files_containing(store, password) == [] and files_containing(store, token) == []
            assert files_containing(sif_cache, password) == []

            await remove_registry_auth(transport, folder)
            assert not exists(auth_path) and not exists(Path(auth_path).parent)
