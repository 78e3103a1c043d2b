"""requeue_on_timeout on the real local cluster: a program that ignores every signal is requeued before its
time limit, and its second attempt runs."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from local_cluster import LocalCluster
from multinode_helpers import cluster_config, log_of, one_job, shared_dir, write_script
from render_helpers import sacct_state, sbatch_wait

pytestmark = pytest.mark.cluster

# Attempt 1 ignores every signal it can and never ends; attempt 2 (SLURM_RESTART_COUNT=1) says so and ends.
STUBBORN = (
    'trap "" HUP INT QUIT USR1 USR2 PIPE ALRM TERM CONT TSTP TTIN TTOU; '
    'attempt=$(( ${SLURM_RESTART_COUNT:-0} + 1 )); echo "attempt $attempt starts"; '
    'if [ "$attempt" -ge 2 ]; then echo "attempt $attempt done"; exit 0; fi; '
    "while :; do sleep 1; done"
)


def test_a_job_that_ignores_every_signal_is_requeued_before_its_limit(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    req = one_job(
        cluster_config(partition=local_cluster.partition),
        local_cluster.image,
        ["sh", "-c", STUBBORN],
        str(shared_dir(tmp_path / "state")),
        time=dt.timedelta(minutes=1),
        timeout_signal_grace_period=dt.timedelta(seconds=30),  # requeued 10 s before the limit
        requeue_on_timeout=True,
        requeue_max_attempts=1,
    )
    [(job_id, rc)] = sbatch_wait(write_script(tmp_path, req))
    log = log_of(req, job_id)
    assert rc == 0, log
    assert "attempt 1 starts" in log and "attempt 2 done" in log, log
    assert "time limit in 10 s: requeueing" in log
    assert log.index("requeueing") < log.index("attempt 2 starts")
    state, _ = sacct_state(job_id)[job_id].split("|")
    assert state == "COMPLETED"  # attempt 2 ended by itself: attempt 1 never reached TIMEOUT
    show = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=False
    ).stdout
    if show:  # still in slurmctld's memory (MinJobAge)
        assert "Restarts=1" in show
    restarts = subprocess.run(
        ["sacct", "-j", job_id, "-n", "-P", "-D", "--format=JobID,State"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SLURM_TIME_FORMAT": "standard"},
    ).stdout
    # -D lists every attempt: the first ended REQUEUED, the second COMPLETED.
    states = [line.split("|")[1].split()[0] for line in restarts.splitlines() if line.split("|")[0] == job_id]
    assert states == ["REQUEUED", "COMPLETED"], restarts
