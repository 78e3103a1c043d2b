"""A registry secret from the auth file reaches the RemoteImage (for the cluster's pull) and nothing else."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from packaging_helpers import RecordingRunner, all_text_under

import xm_slurm.packageables as pk
from xm_slurm.errors import PackagingError
from xm_slurm.executables import ImageCredentials, RemoteImage
from xm_slurm.executors import SlurmSpec
from xm_slurm.packaging import ImageBuilder, package_async

pytestmark = pytest.mark.cluster


def _write_files(auth_file: Path, auth: str, local_cluster, tmp_path: Path) -> None:
    # The file podman reads (REGISTRY_AUTH_FILE), holding a login for the local registry.
    auth_file.write_text(json.dumps({"auths": {local_cluster.registry: {"auth": auth}}}))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {local_cluster.image}\nRUN echo built\n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "Dockerfile").write_text(f"FROM {local_cluster.image}\nRUN echo failing && exit 1\n")


async def test_secret_never_on_a_command_line_log_or_error(
    local_cluster,
    builder: ImageBuilder,
    recorder: RecordingRunner,
    progress_stream: io.StringIO,
    isolated_env: dict[str, str],
    unique: str,
    tmp_path: Path,
) -> None:
    secret = f"S3cr3t-{unique}"
    auth = base64.b64encode(f"xmuser:{secret}".encode()).decode()
    _write_files(Path(isolated_env["REGISTRY_AUTH_FILE"]), auth, local_cluster, tmp_path)
    ctx = tmp_path / "ctx"

    good = pk.docker_container(SlurmSpec(tag=f"{local_cluster.registry}/{unique}/priv:latest"), context=ctx)
    existing = pk.docker_image(image=local_cluster.image)
    built, pinned = await package_async([good, existing], builder=builder)
    with pytest.raises(PackagingError) as failure:
        await package_async(
            [
                pk.docker_container(
                    SlurmSpec(tag=f"{local_cluster.registry}/{unique}/bad:1"), context=tmp_path / "bad"
                )
            ],
            builder=builder,
        )

    # The cluster gets the login to pull with...
    for executable in (built, pinned):
        assert isinstance(executable, RemoteImage)
        assert executable.credentials == ImageCredentials(username="xmuser", password=secret)
        assert secret not in repr(executable)
    # ...and nothing else shows it: not the commands we ran, their environment, the logs, the progress, the error.
    assert recorder.count("build") == 2 and recorder.count("push") == 1
    for argv, env in zip(recorder.calls, recorder.envs, strict=True):
        assert not any(secret in arg or auth in arg for arg in argv), argv
        assert not any(secret in value or auth in value for value in env.values())
    assert secret not in str(failure.value) and "failing" in str(failure.value)
    assert secret not in progress_stream.getvalue()
    assert secret not in all_text_under(tmp_path / "logs")
