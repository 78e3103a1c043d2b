"""A launch killed between entering its experiment and its first add leaves an experiment without work units
(one that exits normally deletes it): `xm-slurm list` leaves it out, `xm-slurm list --all` shows it as empty."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cli_helpers import xm_cli

LAUNCH = """
import asyncio
import xm_slurm

async def main() -> None:
    async with xm_slurm.create_experiment("killed before any add") as experiment:
        print(experiment.experiment_id, flush=True)
        await asyncio.Event().wait()  # until killed, before any add

asyncio.run(main())
"""


def test_a_launch_killed_before_its_first_add_is_listed_only_with_all(store: Path) -> None:
    launch = subprocess.Popen(
        [sys.executable, "-c", LAUNCH],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        assert launch.stdout is not None
        line = launch.stdout.readline()  # the experiment is in the store once its id is printed
        assert line.strip().isdigit(), launch.stderr.read() if launch.stderr else line
        xid = int(line)
    finally:
        launch.send_signal(signal.SIGKILL)
        launch.communicate(timeout=60)
    assert launch.returncode == -signal.SIGKILL

    listed = xm_cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert xid not in [row["xid"] for row in json.loads(listed.stdout)]
    every = xm_cli("list", "--all", "--json")
    rows = {row["xid"]: row for row in json.loads(every.stdout)}
    assert (rows[xid]["title"], rows[xid]["num_work_units"], rows[xid]["empty"]) == (
        "killed before any add",
        0,
        True,
    )
    table = xm_cli("list", "--all").stdout.splitlines()
    assert "0 (empty)" in next(line for line in table if "killed before any add" in line)
