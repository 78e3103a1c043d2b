"""Stopping a shared daemon of the local cluster, safely (test infrastructure).

Rules, because other tests (and other developers' pytest runs) share the cluster:
* disruptive tests are ordered last in their session (see conftest.py), so nothing else of this session runs;
* they skip when another pytest process is running on this machine (set XM_TEST_DISRUPTIVE=force to run
  anyway, =skip to never run them);
* while a daemon is down they hold the lock that `ensure_local_cluster` takes, so another session starting
  meanwhile waits instead of restarting the daemon under the test;
* the daemon is verified by pid + start time + executable (from `.local-cluster/pids/NAME.pid`), never found by
  name, and `scripts/local-cluster up` brings it back before the test ends, pass or fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".local-cluster"


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _ours() -> set[int]:
    """This process, its ancestors and its descendants."""
    ours, pid = {os.getpid()}, os.getpid()
    while pid > 1:
        pid = _ppid(pid)
        ours.add(pid)
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry)] = _ppid(int(entry))
    grew = True
    while grew:
        new = {p for p, parent in parents.items() if parent in ours and p not in ours}
        ours |= new
        grew = bool(new)
    return ours


def other_pytest_processes() -> list[int]:
    ours = _ours()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in ours:
            continue
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if any(b"pytest" in word for word in argv[:3]):
                found.append(int(entry))
    return found


def daemon_pid(name: str) -> int:
    """The pid recorded for `name`, checked against /proc (start time and executable)."""
    pid_s, start, exe = (STATE / "pids" / f"{name}.pid").read_text().split()
    pid = int(pid_s)
    stat = Path(f"/proc/{pid}/stat").read_text()
    assert stat.rsplit(")", 1)[1].split()[19] == start, f"pid {pid} of {name} was recycled"
    assert os.readlink(f"/proc/{pid}/exe") == exe, f"pid {pid} does not run {exe}"
    return pid


def bring_up() -> None:
    result = subprocess.run(
        [str(REPO / "scripts" / "local-cluster"), "up"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"local-cluster up failed:\n{result.stdout}\n{result.stderr}"


@contextlib.contextmanager
def stopped(name: str) -> Iterator[None]:
    """`name` (slurmctld, slurmdbd) is stopped inside the block and running again after it."""
    mode = os.environ.get("XM_TEST_DISRUPTIVE", "auto")
    if mode == "skip":
        pytest.skip("XM_TEST_DISRUPTIVE=skip")
    with open(STATE / ".pytest-up.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if mode != "force" and (others := other_pytest_processes()):
            pytest.skip(
                f"other pytest processes {others} share the local cluster; not stopping {name} under them "
                "(XM_TEST_DISRUPTIVE=force to run anyway)"
            )
        pid = daemon_pid(name)
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while os.path.exists(f"/proc/{pid}") and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
                assert time.monotonic() < deadline, f"{name} (pid {pid}) did not stop within 60 s"
                time.sleep(0.05)
            yield
        finally:
            bring_up()
