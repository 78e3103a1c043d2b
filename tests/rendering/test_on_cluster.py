"""Rendered scripts run for real on the local cluster: values arrive byte for byte, requeue and signals work."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from local_cluster import LocalCluster
from render_helpers import (
    ODD_VALUES,
    cluster_config,
    request,
    sacct_state,
    sbatch_wait,
    shared_dir,
    write_script,
)

from xm_slurm.config import ContainerRuntime
from xm_slurm.rendering import JobScriptRequest, Trial

pytestmark = pytest.mark.cluster

ODD_ENV = {f"ODD_{i}": v for i, v in enumerate(ODD_VALUES)}


def _trials(first_wid: int, count: int) -> list[Trial]:
    # Every task gets the whole corpus as args and env, plus its own odd value in front.
    return [
        Trial(
            work_unit_id=first_wid + i,
            args=[ODD_VALUES[i % len(ODD_VALUES)], *ODD_VALUES],
            env_vars={**ODD_ENV, "ODD_MINE": ODD_VALUES[i % len(ODD_VALUES)]},
        )
        for i in range(count)
    ]


def _check_dumps(out: Path, trials: list[Trial]) -> None:
    for trial in trials:
        dump = json.loads((out / f"wu-{trial.work_unit_id}.json").read_text(encoding="utf-8"))
        mine = trial.env_vars["ODD_MINE"]
        assert dump["argv"] == [mine, *ODD_VALUES], f"work unit {trial.work_unit_id}"
        expected_env = {
            **ODD_ENV,
            "ODD_MINE": mine,
            "XM_SLURM_EXPERIMENT_ID": "42",
            "XM_SLURM_WORK_UNIT_ID": str(trial.work_unit_id),
        }
        assert dump["env"] == expected_env, f"work unit {trial.work_unit_id}"


@pytest.mark.parametrize("runtime", [ContainerRuntime.PODMAN, ContainerRuntime.APPTAINER])
def test_odd_values_reach_every_task(
    runtime: ContainerRuntime, local_cluster: LocalCluster, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    out_single, out_array = shared_dir(tmp_path / "single"), shared_dir(tmp_path / "array")
    state = str(shared_dir(tmp_path / "state"))
    single_trials, array_trials = _trials(1000, 1), _trials(0, 24)
    single = request(
        cluster_config(runtime, partition=local_cluster.partition, mounts={str(out_single): "/out"}),
        image=local_cluster.python_image,
        trials=single_trials,
        state_dir=state,
    )
    array = request(
        cluster_config(runtime, partition=local_cluster.partition, mounts={str(out_array): "/out"}),
        image=local_cluster.python_image,
        trials=array_trials,
        array=True,
        state_dir=state,
    )
    results = sbatch_wait(
        write_script(tmp_path, single, "single.sh"), write_script(tmp_path, array, "array.sh")
    )
    logs = "\n".join(p.read_text(errors="replace") for p in Path(single.experiment_dir).glob("*.out"))
    assert [rc for _, rc in results] == [0, 0], logs
    _check_dumps(out_single, single_trials)
    _check_dumps(out_array, array_trials)
    if runtime is ContainerRuntime.APPTAINER:
        assert "fake-apptainer: apptainer exec" in logs
    array_logs = sorted(Path(array.experiment_dir).glob(f"slurm-{results[1][0]}_*.out"))
    assert len(array_logs) == len(array_trials)


def test_requeue_until_max_attempts_then_failed(local_cluster: LocalCluster, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    out = shared_dir(tmp_path / "out")
    program = "import os, sys; open('/out/runs', 'a').write(os.environ.get('SLURM_RESTART_COUNT', '0') + '\\n'); sys.exit(42)"
    req = request(
        cluster_config(partition=local_cluster.partition, mounts={str(out): "/out"}),
        image=local_cluster.python_image,
        entrypoint=["python3", "-c", program],
        state_dir=str(shared_dir(tmp_path / "state")),
        requeue_max_attempts=1,  # Slurm delays each restart by about a minute
    )
    # A log an older job with the same id left behind (the cluster reuses ids): the first attempt empties
    # it, the requeued attempt appends to what the first one wrote.
    [(job_id, rc)] = sbatch_wait(write_script(tmp_path, req), before_release=_stale_log(req, "%j"))
    assert (out / "runs").read_text().splitlines() == ["0", "1"]  # first run + 1 restart
    assert rc != 0
    state, exit_code = sacct_state(job_id)[job_id].split("|")
    assert state == "FAILED" and exit_code == "42:0"
    log = Path(req.experiment_dir, f"slurm-{job_id}.out").read_text()
    assert "requeue_max_attempts=1 reached" in log and log.count("requeueing") == 1
    assert STALE not in log
    assert log.index("requeueing") < log.index("requeue_max_attempts=1 reached")  # attempt 1, then 2


STALE = "STALE LINE FROM AN OLDER JOB WITH THE SAME ID\n"


def _stale_log(req: JobScriptRequest, pattern: str) -> Callable[[str], None]:
    """Writes stale lines where the log of the held job `job_id` goes (pattern: %j, or %A_%a for task 0)."""

    def seed(job_id: str) -> None:
        name = f"slurm-{pattern.replace('%j', job_id).replace('%A', job_id).replace('%a', '0')}.out"
        Path(req.experiment_dir, name).write_text(STALE * 3)

    return seed


@pytest.mark.parametrize("kind", ["single", "array", "group"])
def test_first_attempt_empties_a_log_left_by_an_older_job_with_its_id(
    kind: str, local_cluster: LocalCluster, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    shape = {
        "single": {},
        "array": {"trials": [Trial(work_unit_id=1)], "array": True},
        "group": {"components": 2},
    }
    req = request(
        cluster_config(partition=local_cluster.partition),
        image=local_cluster.image,
        entrypoint=["echo", "fresh output"],
        state_dir=str(shared_dir(tmp_path / "state")),
        **shape[kind],  # type: ignore[arg-type]
    )
    pattern = "%A_%a" if kind == "array" else "%j"
    seed = _stale_log(req, pattern)

    def seed_all(job_id: str) -> None:
        seed(job_id)
        if kind == "group":  # the second component's own log too
            seed(f"{job_id}+1")

    [(job_id, rc)] = sbatch_wait(write_script(tmp_path, req), before_release=seed_all)
    names = {"array": [f"slurm-{job_id}_0.out"], "group": [f"slurm-{job_id}.out", f"slurm-{job_id}+1.out"]}
    for name in names.get(kind, [f"slurm-{job_id}.out"]):
        log = Path(req.experiment_dir, name).read_text()
        assert rc == 0, log
        assert STALE not in log, name
        assert log.count("fresh output") == 1, (name, log)  # a group's components log apart


def _job_alive(job_id: str) -> bool:
    """Whether squeue still lists the job (pending, running or completing)."""
    out = subprocess.run(
        ["squeue", "--noheader", "--jobs", job_id, "--format=%T"], capture_output=True, text=True
    )
    return bool(out.stdout.strip())


def _wait_for(path: Path, job_id: str) -> None:
    """Wait for `path` while its job lives: a busy cluster may keep the job pending for a long time,
    so only the job ending without writing the file is a failure (pytest-timeout bounds the rest)."""
    while not path.exists():
        if not _job_alive(job_id):
            assert path.exists(), f"{path} never appeared and job {job_id} has ended"
        time.sleep(0.2)


def test_timeout_signal_reaches_the_program_and_scancel_stops_the_container(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    out = shared_dir(tmp_path / "out")
    program = (
        "import os, signal, sys, time\n"
        "def on_signal(sig, frame):\n"
        # Written whole, then renamed: the test may look the moment the name appears.
        "    open('/out/signal.part', 'w').write(signal.Signals(sig).name)\n"
        "    os.rename('/out/signal.part', '/out/signal'); sys.exit(0)\n"
        "signal.signal(signal.SIGUSR2, on_signal)\n"
        "open('/out/container', 'w').write(open('/proc/self/cgroup').read())\n"
        "os.rename('/out/container', '/out/ready-' + os.environ['XM_SLURM_WORK_UNIT_ID'])\n"
        "time.sleep(600)\n"
    )
    cluster = cluster_config(partition=local_cluster.partition, mounts={str(out): "/out"})
    state = str(shared_dir(tmp_path / "state"))
    scripts = [
        write_script(
            tmp_path,
            request(
                cluster,
                image=local_cluster.python_image,
                entrypoint=["python3", "-c", program],
                trials=[Trial(work_unit_id=wid)],
                state_dir=state,
                requeue=False,
            ),
            f"job{wid}.sh",
        )
        for wid in (1, 2)
    ]
    ids = [
        subprocess.run(
            ["sbatch", "--parsable", str(s)], capture_output=True, text=True, check=True
        ).stdout.strip()
        for s in scripts
    ]
    try:
        for wid, job_id in zip((1, 2), ids, strict=True):
            _wait_for(out / f"ready-{wid}", job_id)
        # What `--signal=USR2@90` does at the time limit: signal the job's steps.
        subprocess.run(["scancel", "--signal=USR2", ids[0]], check=True)
        subprocess.run(["scancel", ids[1]], check=True)
        _wait_for(out / "signal", ids[0])
        assert (out / "signal").read_text() == "SIGUSR2"
        # scancel stopped the other container: podman forgets it (--rm) once it is gone.
        match = re.search(r"libpod-([0-9a-f]{64})", (out / "ready-2").read_text())
        assert match, (out / "ready-2").read_text()
        container_id = match.group(1)
        deadline = time.monotonic() + 60
        while subprocess.run(["podman", "container", "exists", container_id]).returncode == 0:
            assert time.monotonic() < deadline, f"container {container_id} still exists after scancel"
            time.sleep(0.2)
    finally:
        subprocess.run(["scancel", *ids], check=False)
