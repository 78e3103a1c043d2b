"""`xm-slurm` commands run as a user would (a subprocess) against the local cluster and a temp SQLite store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import launch, sacct_state, sh_job, xm_cli
from local_cluster import LocalCluster

import xm_slurm
from xm_slurm.cli import exit_codes

pytestmark = pytest.mark.cluster

# The experiment tests' helpers (local cluster config, held gate job), reused by import.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiment"))
from experiment_fixtures import cluster, cluster_literal, gate  # noqa: E402

__all__ = ["cluster"]


def _poll(predicate, what: str, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def test_wait_show_logs_of_completed_and_failed_units(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    jobs = [
        sh_job(local_cluster, cluster, "echo hello-1"),
        sh_job(local_cluster, cluster, "echo hello-2; echo second-2"),
        sh_job(local_cluster, cluster, "echo bad-3; exit 3"),
    ]
    xid, ids = asyncio.run(launch(jobs, "cli completed and failed", tags=["cli-test"]))

    result = xm_cli("wait", str(xid), "--json")
    assert result.returncode == exit_codes.JOBS_FAILED, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["ok"] is False
    assert [u["status"] for u in outcome["work_units"]] == ["completed", "completed", "failed"]
    assert "exit code 3" in outcome["work_units"][2]["message"]
    assert "work unit(s) 3 did not complete" in result.stderr
    assert xm_cli("wait", str(xid), "--wid", "1", "--wid", "2").returncode == exit_codes.OK

    shown = json.loads(xm_cli("show", str(xid), "--json").stdout)
    assert (
        shown["xid"] == xid and shown["title"] == "cli completed and failed" and shown["tags"] == ["cli-test"]
    )
    units = shown["work_units"]
    assert [u["wid"] for u in units] == [1, 2, 3]
    assert [u["status"] for u in units] == ["completed", "completed", "failed"]
    assert [u["jobs"][0]["slurm_job_id"] for u in units] == ids
    assert [u["jobs"][0]["state"] for u in units] == ["COMPLETED", "COMPLETED", "FAILED"]
    assert units[2]["jobs"][0]["exit_code"] == 3
    assert {u["jobs"][0]["source"] for u in units} <= {"squeue", "sacct"}  # squeue while it remembers them

    plain = xm_cli("show", str(xid))
    assert plain.returncode == 0
    assert f"Experiment {xid}: cli completed and failed" in plain.stdout
    # The one FAILED row is the failed job's (matching its id alone is not enough: on a fresh cluster the
    # id is "3", as in "3 units", or may look like clock digits).
    [failed_row] = [line for line in plain.stdout.splitlines() if "FAILED" in line]
    assert re.search(rf"(^|\s){re.escape(ids[2])}(\s|$)", failed_row) and "exit code 3" in failed_row

    logs = xm_cli("logs", str(xid)).stdout.splitlines()
    assert "[wid 1] hello-1" in logs and "[wid 2] second-2" in logs and "[wid 3] bad-3" in logs
    assert logs.index("[wid 1] hello-1") < logs.index("[wid 2] hello-2") < logs.index("[wid 3] bad-3")
    one = xm_cli("logs", str(xid), "--wid", "2", "-n", "1000").stdout.splitlines()
    assert "hello-2" in one and "second-2" in one and not any(line.startswith("[wid") for line in one)
    assert xm_cli("logs", str(xid), "--wid", "7").returncode == exit_codes.NOT_FOUND


def test_pending_reason_timeout_cancel(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    held = gate()
    try:
        job = sh_job(local_cluster, cluster, "echo never")
        xid, [job_id] = asyncio.run(
            launch([job], "cli pending", dependency=xm_slurm.dependencies.afterok(held))
        )

        shown = json.loads(xm_cli("show", str(xid), "--json").stdout)
        [entry] = shown["work_units"][0]["jobs"]
        assert entry["state"] == "PENDING" and shown["work_units"][0]["status"] == "pending"
        assert "Dependency" in entry["reason"]
        assert "expected_start" in entry  # None here: Slurm has no estimate for a job waiting on a held one
        plain = xm_cli("show", str(xid)).stdout
        assert "PENDING" in plain and "Dependency" in plain

        timed_out = xm_cli("wait", str(xid), "--timeout", "1")
        assert timed_out.returncode == exit_codes.TIMEOUT
        assert "still running after 1 s" in timed_out.stderr

        cancelled = xm_cli("cancel", str(xid))
        assert cancelled.returncode == exit_codes.OK, cancelled.stderr
        assert job_id in cancelled.stdout
        _poll(lambda: sacct_state(job_id) == "CANCELLED", f"job {job_id} CANCELLED in sacct")

        after = xm_cli("wait", str(xid), "--json")
        assert after.returncode == exit_codes.JOBS_FAILED
        assert json.loads(after.stdout)["work_units"][0]["status"] == "cancelled"
    finally:
        subprocess.run(["scancel", held], check=False)


def test_logs_follow_interleaves_and_stops_when_jobs_end(
    tmp_path: Path, local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    folder = tmp_path / "gate"
    folder.mkdir()
    gated = dataclasses.replace(cluster, mounts={str(folder): "/gate"})
    wait_for_go = "while [ ! -e /gate/go ]; do sleep 0.2; done"
    jobs = [
        sh_job(local_cluster, gated, f"echo first-1; {wait_for_go}; echo last-1"),
        sh_job(local_cluster, gated, f"echo first-2; {wait_for_go}; echo last-2"),
    ]
    xid, _ = asyncio.run(launch(jobs, "cli follow"))
    process = subprocess.Popen(
        [sys.executable, "-m", "xm_slurm.cli", "logs", str(xid), "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen: list[str] = []
        while not {"[wid 1] first-1", "[wid 2] first-2"} <= set(seen):
            line = process.stdout.readline()
            assert line, f"logs -f ended early: {seen} {process.stderr.read() if process.stderr else ''}"
            seen.append(line.rstrip("\n"))
        assert process.poll() is None  # still following: the jobs are running
        (folder / "go").touch()
        rest, err = process.communicate(timeout=180)  # ends by itself once both jobs have ended
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    lines = seen + rest.splitlines()
    assert "[wid 1] last-1" in lines and "[wid 2] last-2" in lines
    assert lines.count("[wid 1] first-1") == 1  # no line repeated by the follow


LAUNCH = """
import datetime as dt, sys
from xmanager import xm
import xm_slurm

MARK = sys.argv[1]

@xm.run_in_asyncio_loop
async def main():
    cluster = {cluster}
    executor = xm_slurm.Slurm(requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster),
                              time=dt.timedelta(minutes=5))
    image = xm_slurm.RemoteImage(image={image!r}, entrypoint=["sh", "-c", "echo hi"])
    async with xm_slurm.create_experiment(MARK) as experiment:
        job = xm.Job(executable=image, executor=executor, name=MARK)
        units = await experiment.add(job, args=[{{"args": {{"trial": i}}}} for i in range(3)])
        after = await experiment.add(job, dependency=units[0].after_completed())
        await after.wait_until_complete()  # answered by the dry run: no real job to wait for
        print("launched", [u.launched_jobs[0].address for u in [*units, after]])

main()
"""


def test_preview_prints_scripts_and_submits_nothing(
    tmp_path: Path, local_cluster: LocalCluster, store: Path
) -> None:
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH.format(cluster=cluster_literal(local_cluster), image=local_cluster.image))
    mark = f"xmpreview{time.time_ns() % 10**9}"
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))

    result = xm_cli("preview", str(script), mark)
    assert result.returncode == exit_codes.OK, result.stderr
    assert "launched ['900000001_0', '900000001_1', '900000001_2', '900000002']" in result.stderr
    assert "2 sbatch script(s), nothing submitted" in result.stderr
    out = result.stdout
    assert out.count("# ===== script ") == 2
    assert "#SBATCH --array=0-2" in out
    assert f"#SBATCH --job-name={mark}" in out
    assert f"#SBATCH --partition={local_cluster.partition}" in out
    assert "#SBATCH --dependency=afterok:900000001_0" in out
    assert "/dry-run/xm-slurm/" in out  # offline: the placeholder state folder

    checked = xm_cli("preview", "--check", "--keep", str(tmp_path / "kept"), str(script), mark)
    assert checked.returncode == exit_codes.OK, checked.stderr + checked.stdout
    assert checked.stdout.count(": ok, expected start ") == 2
    assert "/dry-run/" not in checked.stdout  # --check renders with the cluster's real state folder
    assert len(list((tmp_path / "kept" / "scripts").glob("*.sh"))) == 2

    # Nothing reached Slurm: no job with this name since the test started, and the user's store is empty.
    names = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=JobName", "-S", started],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert mark not in names
    queued = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True, check=True).stdout
    assert mark not in queued.split()
    assert json.loads(xm_cli("list", "--json").stdout) == []


def test_preview_reports_a_failing_launch_script(tmp_path: Path, store: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("import sys\nprint('about to fail')\nsys.exit(7)\n")
    result = xm_cli("preview", str(script))
    assert result.returncode == exit_codes.FAILURE
    assert "about to fail" in result.stderr  # the script's own output goes to stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"xm-slurm preview: error: launch script {script} exited with status 7 (after recording 0 script(s))"
    )
    missing = xm_cli("preview", str(tmp_path / "nope.py"))
    assert missing.returncode == exit_codes.USAGE and "is not a file" in missing.stderr


def test_doctor_reports_the_local_cluster(local_cluster: LocalCluster) -> None:
    target = f"{local_cluster.ssh_user}@{local_cluster.ssh_host}:{local_cluster.ssh_port}"
    auth = ["--identity-file", local_cluster.ssh_key, "--known-hosts", local_cluster.known_hosts]
    result = xm_cli("doctor", target, *auth, "--json")
    assert result.returncode == exit_codes.OK, result.stderr
    report = json.loads(result.stdout)
    assert report["cluster"] == target and report["understood_as"] == "host"
    assert report["slurm_version"].startswith("22.05")
    assert report["sacct"] == {"works": True, "error": None}
    assert report["max_array_size"] == 1001 and report["max_job_count"] == 10000
    assert report["runtimes"]["podman"]["path"].endswith("/podman")
    assert report["runtimes"]["apptainer"] is None
    assert report["state_folder"]["path"].endswith("/xm-slurm")
    assert report["decisions"] == {"status_source": "sacct", "array_chunk_size": 1001}
    assert local_cluster.partition in [p.rstrip("*") for p in report["partitions"]]

    plain = xm_cli("doctor", local_cluster.ssh_host, "--port", str(local_cluster.ssh_port), *auth)
    assert plain.returncode == exit_codes.OK, plain.stderr
    rows = {line.split("  ")[0]: line for line in plain.stdout.splitlines()}
    assert "1001" in rows["MaxArraySize"] and "works" in rows["sacct"] and "sacct" in rows["job states via"]


def test_doctor_errors_are_one_line(local_cluster: LocalCluster, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    target = f"{local_cluster.ssh_user}@{local_cluster.ssh_host}:{local_cluster.ssh_port}"
    result = xm_cli("doctor", target, "--identity-file", local_cluster.ssh_key, "--known-hosts", str(empty))
    assert result.returncode == exit_codes.FAILURE
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("xm-slurm doctor: error: SSH host key of ") and "Traceback" not in result.stderr
    debug = xm_cli(
        "--debug", "doctor", target, "--identity-file", local_cluster.ssh_key, "--known-hosts", str(empty)
    )
    assert debug.returncode == exit_codes.FAILURE and "Traceback (most recent call last)" in debug.stderr
