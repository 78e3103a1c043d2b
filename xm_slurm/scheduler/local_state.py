"""Small files the scheduler layer keeps on THIS machine, shared by the user's processes.

They live in the local state folder (`paths.local_state_dir()`; folders 0700, files 0600), one per cluster
account, named by a hash of the account (`transport_key`): the cluster limits (`limits.cached_limits`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from xm_slurm.paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from xm_slurm.transport.base import Transport


def transport_key(transport: Transport) -> str | None:
    """Which cluster account a transport talks to, or None if it cannot tell (then nothing is cached for it)."""
    inner: Any = transport
    while hasattr(inner, "inner"):  # a wrapper: the dry run, the tests' CountingTransport
        inner = inner.inner
    config = getattr(inner, "config", None)
    destination = getattr(config, "destination", None)
    if isinstance(destination, str):
        return f"ssh:{destination}"
    if type(inner).__name__ == "LocalTransport":
        return f"local:{os.uname().nodename}:{os.getuid()}"
    return None


def key_file_stem(key: str) -> str:
    """The file name (without suffix) of an account's files."""
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def ensure_private_dir(directory: Path) -> None:
    """Create `directory` (and a missing parent) 0700."""
    if not directory.is_dir():
        # `parents=True` would create the state folder itself with the umask's mode (0755): make it 0700.
        directory.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        os.chmod(directory, PRIVATE_DIR_MODE)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None if it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` atomically with `data` (mode 0600): readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)
