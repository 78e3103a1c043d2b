"""The first failing build cancels the others: their processes (even a RUN step's) are gone, nothing is pushed."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path

import pytest
from packaging_helpers import RecordingRunner

from xm_slurm.errors import PackagingError
from xm_slurm.packaging import BuildRequest, ImageBuild, ImageBuilder

pytestmark = pytest.mark.cluster


def _processes_mentioning(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line holds `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
                with open(f"/proc/{entry}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if marker.encode() in cmdline and state != b"Z":
                found.append(int(entry))
    return found


def _setup(tmp_path: Path, base: str, unique: str, port: int) -> tuple[Path, Path, str]:
    # A base image only this test uses, so podman's leftover working container can be told apart.
    subprocess.run(
        ["podman", "tag", base, f"localhost/{unique}-base:latest"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    slow, bad = tmp_path / "slow", tmp_path / "bad"
    slow.mkdir()
    bad.mkdir()
    marker = f"{unique}-slow"
    (slow / "Dockerfile").write_text(f"FROM localhost/{unique}-base:latest\nRUN sleep 300 && echo {marker}\n")
    # Fails when the test says so (by listening on `port`; builds share the host network), which
    # it does once the slow step's process runs.
    wait = f"until nc 127.0.0.1 {port} </dev/null >/dev/null 2>&1; do sleep 0.1; done"
    (bad / "Dockerfile").write_text(f"FROM {base}\nRUN {wait}; echo giving-up; exit 7\n")
    return slow, bad, marker


def _remove_leftovers(unique: str) -> None:
    out = subprocess.run(
        ["podman", "ps", "-a", "--external", "--format", "{{.ID}} {{.Image}}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    ids = [line.split()[0] for line in out.stdout.splitlines() if f"{unique}-base" in line]
    if ids:
        subprocess.run(
            ["podman", "rm", "--force", "--storage", *ids], capture_output=True, timeout=60, check=False
        )
    subprocess.run(
        ["podman", "rmi", "--force", f"localhost/{unique}-base:latest"],
        capture_output=True,
        timeout=60,
        check=False,
    )


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@pytest.mark.timeout(180)
async def test_first_failure_cancels_the_rest(
    local_cluster, builder: ImageBuilder, recorder: RecordingRunner, unique: str, tmp_path: Path
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    slow, bad, marker = _setup(tmp_path, local_cluster.image, unique, listener.getsockname()[1])
    builds = [
        ImageBuild(BuildRequest(slow / "Dockerfile", slow), f"{local_cluster.registry}/{unique}/slow:latest"),
        ImageBuild(BuildRequest(bad / "Dockerfile", bad), f"{local_cluster.registry}/{unique}/bad:latest"),
    ]
    task = asyncio.ensure_future(builder.build_all(builds))
    server = None
    try:
        while not _processes_mentioning(marker):  # poll until the slow RUN step runs
            assert not task.done(), task
            await asyncio.sleep(0.1)
        # Now let the other build fail: accept (and close) its connection.
        server = await asyncio.start_server(_hang_up, sock=listener)
        with pytest.raises(PackagingError, match=r"bad:latest failed(.|\n)*giving-up"):
            await task
        assert recorder.count("build") == 2 and recorder.count("push") == 0
        # The RUN step of the cancelled build (which podman leaves running) was killed too.
        # (SIGKILL takes effect asynchronously: allow it a moment, polling.)
        for _ in range(200):  # at most about 10 s
            if not (left := _processes_mentioning(marker)):
                break
            await asyncio.sleep(0.05)
        assert left == []
    finally:
        task.cancel()
        if server is not None:
            server.close()
        listener.close()
        _remove_leftovers(unique)
