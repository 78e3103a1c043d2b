"""Give the cluster the registry logins of packaged images, without a secret in a script, command or log.

Packaging attaches the launcher's stored credentials to each `RemoteImage` of a private registry. The
experiment layer calls `upload_registry_auth` before it submits jobs that use such images: it writes, over
SFTP (no command line carries the content), one docker-style auth file per registry and user to
`<experiment dir>/registry-auth/<key>.json` (folder 0700, file 0600; the path comes from
`xm_slurm.rendering.images.auth_file_path`, which the job scripts use too). Podman reads it with
`--authfile`; the Apptainer/Singularity conversion reads it into its own environment.

`remove_registry_auth` deletes the folder once no job of the experiment can still need to pull (e.g. when
all of its jobs have finished). A job whose image is already on its node (Podman) or in the SIF cache
(Apptainer) needs no login, and scripts skip a missing file, so removing it early only matters for jobs
that have yet to pull.
"""

from __future__ import annotations

import base64
import json
import posixpath
from collections.abc import Iterable

from xm_slurm.executables import RemoteImage
from xm_slurm.rendering.images import AUTH_DIR, auth_file_path, registry_of
from xm_slurm.transport import Transport


def auth_file_text(image: RemoteImage) -> str:
    """The auth file for `image`'s registry, on one line (the Apptainer fragment reads it with sed)."""
    assert image.credentials is not None
    token = f"{image.credentials.username}:{image.credentials.password}".encode()
    entry = {"auth": base64.b64encode(token).decode("ascii")}
    return json.dumps({"auths": {registry_of(image.image): entry}}) + "\n"


def auth_files(experiment_dir: str, executables: Iterable[object]) -> dict[str, str]:
    """{remote path: content} for every packaged image that carries a registry login."""
    out: dict[str, str] = {}
    for executable in executables:
        if isinstance(executable, RemoteImage) and executable.credentials is not None:
            path = auth_file_path(experiment_dir, executable)
            assert path is not None
            out[path] = auth_file_text(executable)
    return out


async def upload_registry_auth(
    transport: Transport, experiment_dir: str, executables: Iterable[object]
) -> list[str]:
    """Write the auth files the jobs of `executables` need (private to the user); returns their paths.

    Idempotent: a file is rewritten atomically, so a refreshed token reaches jobs that have not pulled yet.
    """
    files = auth_files(experiment_dir, executables)
    if files:
        await transport.mkdir(posixpath.join(experiment_dir, AUTH_DIR), mode=0o700)
    for path, text in files.items():
        await transport.write_text(path, text, mode=0o600)
    return sorted(files)


async def remove_registry_auth(transport: Transport, experiment_dir: str) -> None:
    """Delete every registry login of the experiment from the cluster (nothing to do if there is none)."""
    await transport.run(["rm", "-rf", "--", posixpath.join(experiment_dir, AUTH_DIR)], idempotent=True)
