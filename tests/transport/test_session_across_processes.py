"""One second factor for a working session: a launch script, a second launch, then `xm-slurm wait`, `show` and
`logs`, each a new process with no terminal, against the local cluster's sshd-mfa (key, then a TOTP code).

The first launch answers the code through its prompt_handler; every later process finds this machine's session
holder and answers nothing (it could not: no terminal, no handler). The sshd's log counts the second factors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from local_cluster import LocalCluster
from second_factor_helpers import accepted_second_factors, mfa_config, second_factor_sshd, stop_session_holder

pytestmark = pytest.mark.cluster

LAUNCH = """
import time
started = time.monotonic()
import asyncio, datetime as dt, json, sys
from xmanager import xm
import xm_slurm
from xm_slurm import config

a = json.loads(sys.argv[1])
code = a["code"]
answer = None
if code:
    sys.path[:0] = [a["helpers"], a["tests"]]
    from second_factor_helpers import totp
    answer = lambda prompt, echo: totp(a["secret_file"])
ssh = config.SSHConfig(
    endpoints=(config.Endpoint("127.0.0.1", a["port"]),),
    public_key=config.PublicKey(*a["key"]),
    user=a["user"],
    client_keys=[a["client_key"]],
    config_files=(),
    prompt_handler=answer,
)
cluster = xm_slurm.SlurmClusterConfig(
    name="mfa", ssh=ssh, runtime=xm_slurm.ContainerRuntime.PODMAN, partition=a["partition"]
)

async def main():
    async with xm_slurm.create_experiment("second factor once") as experiment:
        executor = xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
        )
        image = xm_slurm.RemoteImage(image=a["image"], entrypoint=["sh", "-c", "echo hello-from-mfa"])
        wu = await experiment.add(xm.Job(executable=image, executor=executor))
        first_job = time.monotonic() - started
        if a.get("wait"):  # the same experiment's handle: status polls over the same login
            await wu.wait_until_complete()
            print("waited:", (await wu.get_status()).status.name.lower())
        return json.dumps({"xid": experiment.experiment_id, "job": wu.launched_jobs[0].address,
                           "seconds_to_first_job": first_job})

out = asyncio.run(main())
print(out)
"""


def _run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A new process in a new session: no controlling terminal, stdin not a terminal."""
    return subprocess.run(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
        check=False,
    )


def test_a_launch_then_the_cli_in_new_processes_answer_the_second_factor_once(
    local_cluster: LocalCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sshd = second_factor_sshd()
    state = tmp_path / "state"
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(state))
    monkeypatch.delenv("XM_SLURM_API_BACKEND", raising=False)
    env = {**os.environ, "XM_SLURM_STATE_DIR": str(state), "XM_SLURM_SSH_PERSIST": "120"}
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    settings = {
        "port": sshd.port,
        "key": list(sshd.host_key),
        "user": sshd.user,
        "client_key": local_cluster.ssh_key,
        "secret_file": sshd.secret_file,
        "helpers": str(Path(__file__).parent),
        "tests": str(Path(__file__).parents[1]),
        "partition": local_cluster.partition,
        "image": local_cluster.image,
    }
    before = accepted_second_factors(sshd)
    try:
        first = _run([sys.executable, str(script), json.dumps({**settings, "code": True})], env)
        assert first.returncode == 0, first.stderr[-3000:]
        launched = json.loads(first.stdout.strip().splitlines()[-1])
        assert accepted_second_factors(sshd) == before + 1

        # A second launch script in the session, with nothing to answer a prompt with.
        second = _run([sys.executable, str(script), json.dumps({**settings, "code": False})], env)
        assert second.returncode == 0, second.stderr[-3000:]
        relaunched = json.loads(second.stdout.strip().splitlines()[-1])

        xid = str(launched["xid"])
        cli = [sys.executable, "-m", "xm_slurm.cli"]
        waited = _run([*cli, "wait", xid, "--json"], env)
        assert waited.returncode == 0, waited.stderr[-3000:]
        assert [u["status"] for u in json.loads(waited.stdout)["work_units"]] == ["completed"]
        shown = _run([*cli, "show", xid, "--json"], env)
        assert shown.returncode == 0, shown.stderr[-3000:]
        [unit] = json.loads(shown.stdout)["work_units"]
        assert unit["jobs"][0]["slurm_job_id"] == launched["job"] and unit["jobs"][0]["state"] == "COMPLETED"
        logs = _run([*cli, "logs", xid], env)
        assert logs.returncode == 0 and "hello-from-mfa" in logs.stdout.splitlines(), logs.stderr
        assert _run([*cli, "wait", str(relaunched["xid"])], env).returncode == 0

        # One second factor for the two launches, wait, show and logs.
        assert accepted_second_factors(sshd) == before + 1
    finally:
        stop_session_holder(mfa_config(local_cluster, sshd))
    with capsys.disabled():
        print(
            f"\n[figure] launch to first job with a second factor: first process "
            f"{launched['seconds_to_first_job']:.2f} s, second process in the session "
            f"{relaunched['seconds_to_first_job']:.2f} s"
        )


def test_without_a_session_holder_one_launch_process_still_logs_in_once(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    # XM_SLURM_SSH_PERSIST=0: the process answers its own prompt; every command, upload and poll of the
    # launch (state folder, mkdir, script upload, sbatch, status) goes over that one login.
    sshd = second_factor_sshd()
    env = {**os.environ, "XM_SLURM_STATE_DIR": str(tmp_path / "state"), "XM_SLURM_SSH_PERSIST": "0"}
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    settings = {
        "port": sshd.port,
        "key": list(sshd.host_key),
        "user": sshd.user,
        "client_key": local_cluster.ssh_key,
        "secret_file": sshd.secret_file,
        "helpers": str(Path(__file__).parent),
        "tests": str(Path(__file__).parents[1]),
        "partition": local_cluster.partition,
        "image": local_cluster.image,
        "code": True,
        "wait": True,
    }
    before = accepted_second_factors(sshd)
    launched = _run([sys.executable, str(script), json.dumps(settings)], env)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "waited: completed" in launched.stdout, launched.stdout
    assert accepted_second_factors(sshd) == before + 1
    assert not (tmp_path / "state" / "ssh").exists()  # no holder was involved

    # `xm-slurm wait` later, in a new process with no terminal and no holder: a clear error, soon.
    xid = str(json.loads(launched.stdout.strip().splitlines()[-1])["xid"])
    started = time.monotonic()
    waited = _run([sys.executable, "-m", "xm_slurm.cli", "wait", xid], env, timeout=120)
    assert waited.returncode != 0 and time.monotonic() - started < 60
    assert "no terminal and no prompt_handler" in waited.stderr, waited.stderr[-3000:]
