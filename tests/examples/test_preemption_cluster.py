"""The preemption example: the timeout signal makes it checkpoint and exit 42, the job script requeues it,
and the second run resumes at the checkpointed step."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from examples_helpers import ExampleEnv, experiment_id

pytestmark = pytest.mark.cluster


def _poll(what: str, check, timeout: float = 120) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _squeue(job_id: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True, check=False
    ).stdout.strip()


def _first_run_node(job_id: str) -> str:
    """The node of the first (requeued) run, once Slurm accounts it as REQUEUED; else ''."""
    rows = subprocess.run(
        ["sacct", "-D", "-X", "-n", "-P", "-j", job_id, "-o", "State,NodeList"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    return next((row.split("|")[1] for row in rows if row.startswith("REQUEUED|")), "")


def _nodes() -> list[str]:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, check=True).stdout
    return sorted(set(out.split()))


def test_preemption_checkpoints_requeues_and_resumes(example_env: ExampleEnv) -> None:
    proc = example_env.popen("preemption")
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline()
        match = re.match(r"experiment (\d+): job (\d+)", first)
        assert match, first + proc.stdout.read()
        xid, job_id = int(match.group(1)), match.group(2)
        progress = Path(example_env.shared, "preemption", f"{xid}-1.progress")
        # A few steps done: the program runs and its signal handler is installed.
        _poll("training progress", lambda: progress.exists() and int(progress.read_text() or 0) >= 3)
        # What Slurm does `timeout_signal_grace_period` before the time limit (`--signal=USR2@120`: the
        # job's steps, i.e. the container's program, get the signal; see xm_slurm/executors.py).
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        # A requeued job waits for a BeginTime (about 2 minutes on a stock Slurm): the old run's job
        # credential stays revoked on its node until then ("Job credential revoked" if started there).
        # With another node, start the second run there at once; on one node, wait for Slurm.
        _poll("the requeue", lambda: _squeue(job_id) == "PENDING BeginTime")
        node = str(_poll("the first run accounted as REQUEUED", lambda: _first_run_node(job_id)))
        if len(_nodes()) > 1:
            update = ["scontrol", "update", f"JobId={job_id}", "StartTime=now", f"ExcNodeList={node}"]
            subprocess.run(update, check=True)
        out = first + proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", job_id], check=False)
    assert proc.returncode == 0, out
    assert experiment_id(out) == xid
    checkpointed = re.search(r"run 0: timeout signal: checkpointed step (\d+), asking for a requeue", out)
    assert checkpointed, out
    step = int(checkpointed.group(1))
    assert 3 <= step < 30
    assert f"run 1: starting at step {step}" in out  # resumed, not restarted
    assert "run 1: finished all 30 steps" in out
    assert "requeueing" in out and "work unit 1: COMPLETED" in out
    [wu] = example_env.stored(xid).work_units
    assert [job.slurm_job_id for job in wu.jobs] == [job_id]
