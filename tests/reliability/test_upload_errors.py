"""A script upload that fails for good says that nothing was submitted, as a TransportError with the real
cause chained, over both transports (before, the transport's raw PermissionError / FileExistsError escaped
from `submit`)."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from local_cluster import LocalCluster
from reliability_helpers import jobs_named, ssh_config

from xm_slurm.errors import TransportError
from xm_slurm.scheduler import submit
from xm_slurm.transport import LocalTransport, SSHTransport, Transport

pytestmark = pytest.mark.cluster


def _script(name: str) -> str:
    return f"#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --output=/dev/null\ntrue\n"


@pytest.mark.parametrize("kind", ["ssh", "local"])
async def test_refused_upload_says_nothing_was_submitted(
    local_cluster: LocalCluster, tmp_path: Path, kind: str
) -> None:
    name = f"rel-upload-{uuid.uuid4().hex[:10]}"
    transport: Transport
    if kind == "ssh":
        # The non-root user cannot create anything under /root (0700): the server refuses the mkdir.
        config = dataclasses.replace(ssh_config(local_cluster), user=local_cluster.ssh_user_nonroot)
        transport, directory, cause = SSHTransport(config), f"/root/{name}", PermissionError
    else:
        # A regular file where a parent directory should be.
        (tmp_path / "file").write_text("")
        transport, directory, cause = LocalTransport(), str(tmp_path / "file" / name), FileExistsError
    async with transport:
        with pytest.raises(TransportError) as info:
            await submit(transport, _script(name), directory=directory, name=f"{name}.sh")
    message = str(info.value)
    assert f"{directory}/{name}.sh" in message and "nothing was submitted" in message, message
    assert isinstance(info.value.__cause__, cause), repr(info.value.__cause__)
    assert jobs_named(name) == []
