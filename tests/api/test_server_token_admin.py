"""`xm-slurm server token list | revoke` against a real server: a revoked token is refused at once, the
others keep working, and the listing never shows a token itself."""

from __future__ import annotations

import os
import pathlib

import httpx
from metadata_fixtures import run_cli, start_server, stop_server

from xm_slurm.api.storage import sqlite_url


def test_list_and_revoke_tokens_on_a_running_server(tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path / "server")
    db = sqlite_url(server.db_path)
    env = {**os.environ, "XM_SLURM_STATE_DIR": str(tmp_path / "server")}
    try:
        made = run_cli("server", "token", "create", "--name", "bob", "--read-only", "--db", db, env=env)
        assert made.returncode == 0, made.stderr
        bob = made.stdout.strip()

        listed = run_cli("server", "token", "list", "--db", db, env=env)
        assert listed.returncode == 0, listed.stderr
        rows = [line.split() for line in listed.stdout.splitlines()[1:]]
        assert [(r[1], r[2]) for r in rows] == [("tests", "read-write"), ("bob", "read-only")]
        assert server.token not in listed.stdout and bob not in listed.stdout

        def status(token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.get(f"{server.base_url}/api/experiment/1", headers=headers).status_code

        assert status(bob) == 404  # authenticated; no such experiment
        revoked = run_cli("server", "token", "revoke", rows[1][0], "--db", db, env=env)
        assert revoked.returncode == 0, revoked.stderr
        assert "revoked token" in revoked.stderr and "bob" in revoked.stderr
        assert status(bob) == 401  # the running server refuses it from the next request on
        assert status(server.token) == 404  # the other token still works

        again = run_cli("server", "token", "revoke", rows[1][0], "--db", db, env=env)
        assert again.returncode == 2
        assert f"no token has id {rows[1][0]}" in again.stderr and "Traceback" not in again.stderr
        after = run_cli("server", "token", "list", "--db", db, env=env)
        assert [line.split()[1] for line in after.stdout.splitlines()[1:]] == ["tests"]
    finally:
        stop_server(server)
