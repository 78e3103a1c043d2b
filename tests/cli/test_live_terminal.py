"""`xm-slurm wait` and `xm-slurm show --watch` in a real terminal (a pane of a private tmux server), against
the local cluster: the screen shows the counts per state changing while the jobs run and why a unit waits,
and `wait` ends with the failed unit's exit code and the last lines of its log. The same `wait` piped prints
one plain line per change. The screens are written to build/live-screens/ for a person to look at. And
`xm-slurm logs` of a job that has not started (pending, then cancelled before it started) says so and why."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import sh_job, xm_cli
from local_cluster import LocalCluster

import xm_slurm
from xm_slurm.cli import exit_codes

pytestmark = pytest.mark.cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiment"))
from experiment_fixtures import cluster, gate  # noqa: E402

__all__ = ["cluster"]

REPO = Path(__file__).resolve().parents[2]
SCREENS = REPO / "build" / "live-screens"
STATES = ("pending", "running", "completed", "failed", "cancelled")


class Tmux:
    """A tmux server of this test's own (its socket under tmp_path): one session per command, 100x30."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = str(tmp_path / "tmux.sock")
        self.env = {**os.environ, "TERM": "xterm-256color"}

    def _tmux(self, *args: str) -> str:
        argv = ["tmux", "-S", self.socket, "-f", "/dev/null", *args]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=True).stdout

    def start(self, name: str, *cli_args: str) -> None:
        command = shlex.join([sys.executable, "-m", "xm_slurm.cli", *cli_args])
        # The pane stays after the command ends, with its exit code, until the server is killed.
        self._tmux(
            "new-session", "-d", "-x", "100", "-y", "30", "-s", name, f"{command}; echo [exit $?]; sleep 600"
        )

    def screen(self, name: str, history: bool = False) -> str:
        return self._tmux("capture-pane", "-p", "-t", name, *(["-S", "-300"] if history else []))

    def kill(self) -> None:
        subprocess.run(
            ["tmux", "-S", self.socket, "kill-server"], env=self.env, capture_output=True, check=False
        )


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(tmp_path)
    yield server
    server.kill()  # this test's server only (its own socket)


def counts(screen: str) -> tuple[int, ...] | None:
    """The row of counts under the header naming the five states, or None if the screen has no table."""
    lines = screen.splitlines()
    for i, line in enumerate(lines):
        if all(s in line for s in STATES):
            for row in lines[i + 1 : i + 4]:
                numbers = re.findall(r"\d+", row)
                if len(numbers) == 5:
                    return tuple(int(n) for n in numbers)
    return None


async def launch(lc: LocalCluster, cluster: xm_slurm.SlurmClusterConfig) -> int:
    """Three units that run for a while (the second fails after writing its log) and a fourth that waits
    for the third (pending, reason Dependency)."""
    failing = "for i in $(seq 1 15); do echo line-$i; done; sleep 6; echo fatal-error; exit 3"
    async with xm_slurm.create_experiment("live terminal") as experiment:
        await experiment.add(sh_job(lc, cluster, "sleep 4; echo ok-1"))
        await experiment.add(sh_job(lc, cluster, failing))
        third = await experiment.add(sh_job(lc, cluster, "sleep 10; echo ok-3"))
        await experiment.add(sh_job(lc, cluster, "echo ok-4"), dependency=third.after_completed())
        return experiment.experiment_id


def test_wait_and_show_watch_in_a_terminal_and_piped(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, tmux: Tmux
) -> None:
    xid = asyncio.run(launch(local_cluster, cluster))
    piped = subprocess.Popen(
        [sys.executable, "-m", "xm_slurm.cli", "wait", str(xid)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    tmux.start("wait", "wait", str(xid))
    tmux.start("show", "show", str(xid), "--watch")
    screens: dict[str, list[str]] = {"wait": [], "show": []}
    deadline = time.monotonic() + 240
    while not all(s and "[exit " in s[-1] for s in screens.values()):
        assert time.monotonic() < deadline, f"still running: {screens['wait'][-1:]}"
        for name, seen in screens.items():
            now = tmux.screen(name)
            if not seen or now != seen[-1]:
                seen.append(now)
        time.sleep(0.2)
    out, err = piped.communicate(timeout=120)
    final = {name: tmux.screen(name, history=True) for name in screens}
    SCREENS.mkdir(parents=True, exist_ok=True)
    for name, seen in screens.items():
        (SCREENS / f"{name}.txt").write_text("\n\f\n".join([*seen, final[name]]))
    (SCREENS / "wait-piped.txt").write_text(out)

    for name, seen in screens.items():
        series = [c for c in map(counts, seen) if c is not None]
        assert len(set(series)) >= 3, f"{name}: the counts never changed: {series}"
        assert any(c[1] >= 1 for c in series), f"{name}: no screen showed a running unit: {series}"
        assert series[-1] == (0, 0, 3, 1, 0), f"{name}: {series[-1]}"
        assert any("waiting: wid 4 (Dependency)" in s for s in seen), f"{name} never said why wid 4 waits"
        assert "4/4 ended" in seen[-1] or "4/4 ended" in final[name]

    wait_end = final["wait"]
    assert f"[exit {exit_codes.JOBS_FAILED}]" in wait_end
    assert re.search(r"wid 2 failed: \d+ FAILED, exit code 3", wait_end), wait_end
    report = wait_end[wait_end.index("wid 2 failed:") :].splitlines()
    assert "  last 10 lines of its log:" in report
    tail = [line for line in report if line.startswith("  | ")]
    assert len(tail) == 10 and "  | line-15" in tail  # after it, the job's own last words and srun's
    assert tail[tail.index("  | line-15") + 1] == "  | fatal-error"
    show_end = final["show"]
    assert "[exit 0]" in show_end and f"Experiment {xid}: live terminal" in show_end and "FAILED" in show_end

    assert piped.returncode == exit_codes.JOBS_FAILED, err
    assert "\x1b" not in out  # piped: plain lines, no cursor movement or colour
    changes = [line for line in out.splitlines() if line.startswith("[")]
    assert len(changes) >= 4 and all(re.match(r"\[\d+:\d\d:\d\d\] (wid|aux) ", line) for line in changes)
    assert any(" running · " in line for line in changes) and any(
        "pending (Dependency)" in line for line in changes
    )
    assert changes[-1].endswith("pending 0, running 0, completed 3, failed 1, cancelled 0")
    assert "  | fatal-error" in out.splitlines()


def test_logs_of_a_job_that_has_not_started_says_so_and_why(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    held = gate()  # a held job: what depends on it stays pending, reason Dependency
    try:

        async def add() -> int:
            async with xm_slurm.create_experiment("logs before start") as experiment:
                after = xm_slurm.dependencies.afterok(held)
                await experiment.add(sh_job(local_cluster, cluster, "echo never"), dependency=after)
                return experiment.experiment_id

        xid = asyncio.run(add())
        pending = xm_cli("logs", str(xid))
        assert pending.returncode == exit_codes.NOT_FOUND and pending.stdout == ""
        assert re.search(r"wid 1: job \d+ has not started: PENDING \(Dependency\)", pending.stderr), (
            pending.stderr
        )
        assert xm_cli("cancel", str(xid)).returncode == 0
        cancelled = xm_cli("logs", str(xid))
        assert cancelled.returncode == exit_codes.NOT_FOUND
        assert re.search(r"wid 1: job \d+ ended before it started: CANCELLED", cancelled.stderr), (
            cancelled.stderr
        )
    finally:
        subprocess.run(["scancel", held], check=False)
