"""The 0.5.0 directives against the local cluster's Slurm 22.05: the preview's `--check` (sbatch
--test-only) accepts every option this Slurm knows and refuses the newer ones, which `xm-slurm doctor`
reports as unsupported."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import xm_cli
from experiment_fixtures import cluster_literal
from local_cluster import LocalCluster
from surface_cases import DIRECTIVES

from xm_slurm.cli import exit_codes

pytestmark = pytest.mark.cluster

# One work unit per executor option (argv[1]: a JSON list of executor keyword dicts), GPU=1 so that the
# GPU bindings have GPUs to bind.
LAUNCH = """
import datetime as dt, json, sys
from xmanager import xm
import xm_slurm

@xm.run_in_asyncio_loop
async def main():
    cluster = {cluster}
    image = xm_slurm.RemoteImage(image={image!r}, entrypoint=["sh", "-c", "echo hi"])
    async with xm_slurm.create_experiment("surface") as experiment:
        for kw in json.loads(sys.argv[1]):
            executor = xm_slurm.Slurm(requirements=xm_slurm.JobRequirements(CPU=1, GPU=1, cluster=cluster),
                                      time=dt.timedelta(minutes=5), **kw)
            await experiment.add(xm.Job(executable=image, executor=executor))

main()
"""


@pytest.fixture
def reservation() -> Iterator[str]:
    """A reservation for `reservation=` to name: one core of node1 for the few seconds of the test (sbatch
    --test-only refuses a job for a reservation that starts later: "Invalid time specified")."""
    name = f"xm-test-resv-{os.getpid()}"
    subprocess.run(
        ["scontrol", "create", "reservation", f"ReservationName={name}", "StartTime=now",
         "Duration=10", "Nodes=node1", "CoreCnt=1", "Users=root", "Flags=IGNORE_JOBS"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield name
    finally:
        subprocess.run(["scontrol", "delete", f"ReservationName={name}"], check=False, capture_output=True)


def _preview_check(
    tmp_path: Path, lc: LocalCluster, options: list[dict[str, object]]
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH.format(cluster=cluster_literal(lc), image=lc.image))
    return xm_cli("preview", "--check", str(script), json.dumps(options), timeout=300)


def test_sbatch_test_only_accepts_the_options_slurm_22_05_knows(
    tmp_path: Path, local_cluster: LocalCluster, reservation: str
) -> None:
    known = [kw for kw, _, ok in DIRECTIVES if ok]
    options = [{"reservation": reservation} if "reservation" in kw else kw for kw in known]
    result = _preview_check(tmp_path, local_cluster, options)
    assert result.returncode == exit_codes.OK, result.stderr + result.stdout
    assert result.stdout.count(": ok") == len(options), result.stdout
    for kw, directive, _ in DIRECTIVES:
        if kw in known and "reservation" not in kw:
            assert f"#SBATCH {directive}\n" in result.stdout
    assert f"#SBATCH --reservation={reservation}\n" in result.stdout


def test_newer_options_are_refused_by_slurm_22_05_and_reported_by_doctor(
    tmp_path: Path, local_cluster: LocalCluster
) -> None:
    newer = [kw for kw, _, ok in DIRECTIVES if not ok]
    result = _preview_check(tmp_path, local_cluster, newer)
    assert result.returncode == exit_codes.FAILURE
    assert (
        f"sbatch --test-only refused {len(newer)} of {len(newer)} script(s)" in result.stderr + result.stdout
    )
    assert "unrecognized option '--tres-bind=gres/gpu:closest'" in result.stdout + result.stderr
    assert "Invalid --gres-flags specification" in result.stdout + result.stderr

    target = f"{local_cluster.ssh_user}@{local_cluster.ssh_host}:{local_cluster.ssh_port}"
    auth = ["--identity-file", local_cluster.ssh_key, "--known-hosts", local_cluster.known_hosts]
    doctor = xm_cli("doctor", target, *auth, "--json")
    assert doctor.returncode == exit_codes.OK, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["sbatch_options"] == {
        "--tres-bind=gres/gpu:closest": False,
        "--gres-flags=multiple-tasks-per-sharing": False,
        "--gres-flags=one-task-per-sharing": False,
        "--gres-flags=allow-task-sharing": False,
    }
    assert any("--tres-bind" in w for w in report["warnings"])
