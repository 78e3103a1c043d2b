"""Bring up (once) and describe the local single-node Slurm test cluster made by `scripts/local-cluster`."""

from __future__ import annotations

import fcntl
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_ENV_FIELDS = {
    "ssh_host": "XM_TEST_SSH_HOST",
    "ssh_port": "XM_TEST_SSH_PORT",
    "ssh_user": "XM_TEST_SSH_USER",
    "ssh_user_nonroot": "XM_TEST_SSH_USER_NONROOT",
    "ssh_key": "XM_TEST_SSH_KEY",
    "known_hosts": "XM_TEST_SSH_KNOWN_HOSTS",
    "partition": "XM_TEST_SLURM_PARTITION",
    "registry": "XM_TEST_REGISTRY",
    "image": "XM_TEST_IMAGE",
    "python_image": "XM_TEST_PYTHON_IMAGE",
}


@dataclass(frozen=True)
class LocalCluster:
    """Where the local test cluster listens and what it offers (see `scripts/local-cluster`)."""

    ssh_host: str
    ssh_port: int
    ssh_user: str  # root
    ssh_user_nonroot: str  # xmtest: its jobs run rootless podman
    ssh_key: str  # private key (0600, root only) that logs in as both users
    known_hosts: str  # OpenSSH known_hosts holding the server's host key
    partition: str
    registry: str  # host:port, plain HTTP, configured as insecure for podman
    image: str  # busybox image in that registry
    python_image: str  # Debian bookworm + python3 image in that registry


class LocalClusterError(RuntimeError):
    """The local test cluster could not be brought up or described (test infrastructure, not xm_slurm)."""


def parse_env_file(path: Path) -> dict[str, str]:
    """Reads the `export NAME=VALUE` lines that `scripts/local-cluster up` writes (values shell-quoted)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            values[name] = value
    return values


def load_local_cluster(env_file: Path) -> LocalCluster:
    values = parse_env_file(env_file)
    missing = [var for var in _ENV_FIELDS.values() if not values.get(var)]
    if missing:
        raise LocalClusterError(f"{env_file} lacks {', '.join(missing)}; rerun `scripts/local-cluster up`")
    fields: dict[str, str] = {field: values[var] for field, var in _ENV_FIELDS.items()}
    port = fields.pop("ssh_port")
    if not port.isdigit():
        raise LocalClusterError(f"{env_file}: XM_TEST_SSH_PORT={port!r} is not a port number")
    return LocalCluster(ssh_port=int(port), **fields)


def _run_script(script: Path, command: str, *, echo: bool) -> tuple[int, str]:
    """Runs `script command`, returning (exit code, combined output); echoes lines live if asked."""
    lines: list[str] = []
    with subprocess.Popen(
        [str(script), command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if echo:
                sys.stderr.write(f"[local-cluster {command}] {line}")
        proc.wait()
    return proc.returncode, "".join(lines)


def ensure_local_cluster(repo_root: str | Path) -> LocalCluster:
    """Runs `scripts/local-cluster up` unless `status` says everything runs, then reads its env.sh.

    A file lock serialises concurrent pytest processes (e.g. two developers' runs, or xdist workers), so
    only one of them runs `up`; the others wait and then find the cluster running.
    """
    root = Path(repo_root)
    script = root / "scripts" / "local-cluster"
    state = root / ".local-cluster"
    state.mkdir(exist_ok=True)
    # Not the script's own lock file: the script flocks that one itself, which would deadlock under ours.
    with open(state / ".pytest-up.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        status_rc, status_out = _run_script(script, "status", echo=False)
        if status_rc != 0:
            up_rc, up_out = _run_script(script, "up", echo=True)
            if up_rc != 0:
                raise LocalClusterError(
                    f"`{script} up` failed with exit code {up_rc}.\n"
                    f"--- status before ---\n{status_out}--- up output ---\n{up_out}"
                )
        return load_local_cluster(state / "env.sh")
