"""A stored SSH config says where a cluster is, never how to log in (finding 2 of issue 21).

Anyone with write access to the store (a read-write REST token, or the SQLite file) could write a job row
whose `slurm_ssh_config` named `config_files` (an OpenSSH config with a `ProxyCommand`), `client_keys` or
`known_hosts`; a teammate running `xm-slurm show` then ran that command. Now such a row is refused on write
(client and server) and its other fields are ignored on read, with a warning naming them: the reader's own
keys, known_hosts and config files (XM_SLURM_SSH_CONFIG, ~/.ssh/config) apply.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncssh
import httpx
import pytest
from local_cluster import LocalCluster
from reliability_helpers import RestServer

import xm_slurm
from xm_slurm.api import ExperimentPatch, SlurmJob, WorkUnitPatch
from xm_slurm.api.rest import RestClient
from xm_slurm.api.server.tokens import create_token
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage.engine import default_sqlite_path, sqlite_url
from xm_slurm.errors import ValidationError
from xm_slurm.transport import SSHTransport

pytestmark = pytest.mark.cluster


def _evil_config(lc: LocalCluster, tmp_path: Path, marker: Path) -> dict[str, object]:
    """What an attacker stores: the real cluster, plus an OpenSSH config whose ProxyCommand runs `id`."""
    evil = tmp_path / "evil_ssh_config"
    evil.write_text(f"Host *\n    ProxyCommand sh -c 'id > {marker}'\n")
    # Real files, so an honoured one would take effect: a key the server does not know, and a
    # known_hosts without the server's key (either would make the connection fail).
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(tmp_path / "attacker_key")
    (tmp_path / "attacker_known_hosts").write_text("")
    return {
        "host": lc.ssh_host,
        "port": lc.ssh_port,
        "user": lc.ssh_user,
        "host_public_key": None,
        "config_files": [str(evil)],
        "client_keys": [str(tmp_path / "attacker_key")],
        "known_hosts": str(tmp_path / "attacker_known_hosts"),
    }


async def _real_job(lc: LocalCluster) -> str:
    """A finished job of the local cluster, submitted with this machine's own SSH settings."""
    transport = SSHTransport(xm_slurm.SlurmSSHConfig(host=lc.ssh_host, port=lc.ssh_port, user=lc.ssh_user))
    try:
        result = await transport.run(["sbatch", "--parsable", "-p", lc.partition, "--wrap", "true"])
    finally:
        await transport.close()
    return result.stdout.strip().split(";")[0]


def _plant_row(db_path: Path, xid: int, job_id: str, ssh: dict[str, object]) -> None:
    # Raw sqlite3, as anyone with write access to the file would do it: no library check runs.
    db = sqlite3.connect(db_path)
    try:
        with db:
            (pk,) = db.execute(
                "SELECT id FROM work_units WHERE experiment_id = ? AND wid = 1", (xid,)
            ).fetchone()
            db.execute(
                "INSERT INTO jobs (work_unit_id, name, slurm_job_id, slurm_ssh_config) VALUES (?, ?, ?, ?)",
                (pk, "train", job_id, json.dumps(ssh)),
            )
    finally:
        db.close()


async def test_a_planted_proxy_command_never_runs(
    local_cluster: LocalCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    ssh = _evil_config(local_cluster, tmp_path, marker)
    job_id = await _real_job(local_cluster)
    api = xm_slurm.api.client()
    xid = api.insert_experiment(ExperimentPatch(title="planted ssh config"))
    api.insert_work_unit(xid, WorkUnitPatch(wid=1))
    _plant_row(default_sqlite_path(), xid, job_id, ssh)

    # A teammate runs `xm-slurm show` (its own OpenSSH config is XM_SLURM_SSH_CONFIG, see tests/conftest.py).
    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "xm_slurm.cli", "show", str(xid), "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=tmp_path,
        timeout=180,
        check=False,
    )
    assert not marker.exists(), f"the stored ProxyCommand ran: {marker.read_text()}"
    assert shown.returncode == 0, shown.stderr
    for field in ("config_files", "client_keys", "known_hosts"):
        assert field in shown.stderr, shown.stderr
    [unit] = json.loads(shown.stdout)["work_units"]
    assert unit["jobs"][0]["slurm_job_id"] == job_id
    assert unit["jobs"][0]["state"] in ("PENDING", "RUNNING", "COMPLETING", "COMPLETED")  # read over SSH

    # The library reading the experiment: same story, and the status really came over SSH.
    caplog.set_level(logging.WARNING, logger="xm_slurm.ssh_config")
    experiment = xm_slurm.get_experiment(xid)
    try:
        status = await experiment.work_units[1].get_status()
        assert status is not None
    finally:
        await experiment.aclose()
    assert not marker.exists()
    warned = [r.getMessage() for r in caplog.records if r.name == "xm_slurm.ssh_config"]
    assert any("'config_files'" in m and "'client_keys'" in m for m in warned), warned
    assert str(tmp_path) not in " ".join(warned)  # names the fields, not the attacker's values


def test_the_library_and_the_server_refuse_to_store_connection_options(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    ssh = _evil_config(local_cluster, tmp_path, marker)
    with pytest.raises(ValidationError, match="config_files"):
        SlurmJob(name="train", slurm_job_id="1", slurm_ssh_config=ssh)
    db = sqlite_url(tmp_path / "server.sqlite3")
    token = create_token(SqlClient.open(db), "writer")
    server = RestServer(db)
    try:
        client = RestClient(server.url, token)
        xid = client.insert_experiment(ExperimentPatch(title="refused"))
        client.insert_work_unit(xid, WorkUnitPatch(wid=1))
        for extra in ("config_files", "client_keys", "known_hosts"):
            body = {"name": "train", "slurm_job_id": "1", "slurm_ssh_config": json.dumps(ssh)}
            only = {**{k: ssh[k] for k in ("host", "port", "user")}, extra: ssh[extra]}
            body["slurm_ssh_config"] = json.dumps(only)
            response = httpx.put(
                f"{server.url}/api/experiment/{xid}/wu/1/job",
                headers={"Authorization": f"Bearer {token}"},
                json=body,
            )
            assert response.status_code == 422, response.text
            assert extra in response.json()["detail"]
        assert client.get_experiment(xid).work_units[0].jobs == ()
    finally:
        server.close()
    assert not marker.exists()
