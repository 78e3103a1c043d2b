"""The REST server refuses missing, wrong and expired tokens, lets a read-only token read only, and the client
verifies TLS (a self-signed server is refused unless its CA is given explicitly)."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from reliability_helpers import RestServer, free_port

from xm_slurm.api import ExperimentPatch
from xm_slurm.api.rest import RestClient
from xm_slurm.api.server.tokens import READ_ONLY, create_token
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage.engine import sqlite_url
from xm_slurm.errors import ConfigurationError, MetadataError, ValidationError


@pytest.fixture
def db(tmp_path: Path) -> str:
    return sqlite_url(str(tmp_path / "server.sqlite3"))


@pytest.fixture
def server(db: str) -> Iterator[RestServer]:
    s = RestServer(db)
    try:
        yield s
    finally:
        s.close()


def test_missing_wrong_and_expired_tokens_get_401(server: RestServer, db: str) -> None:
    good = create_token(SqlClient.open(db), "alice")
    expired = create_token(SqlClient.open(db), "old", expires_in=dt.timedelta(microseconds=1))
    url = f"{server.url}/api/experiment"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer xms_wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {good}"}).status_code == 200
    # The client says the token was refused, and never shows it.
    with pytest.raises(ConfigurationError) as raised:
        RestClient(server.url, expired).list_experiments()
    assert "refused the token" in str(raised.value) and expired not in str(raised.value)


def test_read_only_token_reads_but_cannot_write(server: RestServer, db: str) -> None:
    writer = RestClient(server.url, create_token(SqlClient.open(db), "ci"))
    reader_token = create_token(SqlClient.open(db), "dashboard", scope=READ_ONLY)
    reader = RestClient(server.url, reader_token)
    xid = writer.insert_experiment(ExperimentPatch(title="shared"))
    assert reader.get_experiment(xid).title == "shared"
    with pytest.raises(ConfigurationError, match="HTTP 403"):
        reader.insert_experiment(ExperimentPatch(title="nope"))
    with pytest.raises(ConfigurationError, match="HTTP 403"):
        reader.delete_experiment(xid)
    assert [s.title for s in writer.list_experiments()] == ["shared"]


def test_token_options_are_validated(db: str) -> None:
    with pytest.raises(ValidationError, match="'admin'"):
        create_token(SqlClient.open(db), scope="admin")
    with pytest.raises(ValidationError, match="expires_in"):
        create_token(SqlClient.open(db), expires_in=dt.timedelta(seconds=-1))


TLS_SERVER = """
import sys, uvicorn
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.server.app import create_app
uvicorn.run(create_app(SqlClient.open(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]),
            ssl_certfile=sys.argv[3], ssl_keyfile=sys.argv[4], log_level="warning")
"""


@pytest.fixture
def tls_server(db: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", TLS_SERVER, db, str(port), str(cert), str(key)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "TLS server did not start"
                time.sleep(0.02)
        yield f"https://127.0.0.1:{port}", cert
    finally:
        proc.kill()
        proc.wait()


def test_tls_is_verified_unless_the_ca_is_given(tls_server: tuple[str, Path], db: str) -> None:
    url, cert = tls_server
    token = create_token(SqlClient.open(db))
    with pytest.raises(MetadataError) as raised:
        RestClient(url, token, max_tries=1).list_experiments()
    assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value) and token not in str(raised.value)
    assert RestClient(url, token, ca_bundle=str(cert)).list_experiments() == []
