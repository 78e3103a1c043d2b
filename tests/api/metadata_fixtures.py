"""Helpers and fixtures of the metadata tests (a uniquely named module: test modules import from it)."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import os
import pathlib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy
from local_postgres import LocalPostgres

import xm_slurm.api
from xm_slurm.api import settings
from xm_slurm.api.storage import sqlite_url
from xm_slurm.api.storage.engine import WRITE_LOCK_KEY

CLI = "import sys; from xm_slurm.cli import main; sys.exit(main())"


@dataclasses.dataclass(frozen=True)
class Server:
    base_url: str
    token: str
    db_path: pathlib.Path  # the SQLite file, or a placeholder when db_url is PostgreSQL's
    process: subprocess.Popen[bytes]
    db_url: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], env=env, capture_output=True, text=True, check=False, timeout=120
    )


def start_server(folder: pathlib.Path, db_url: str | None = None) -> Server:
    """`xm-slurm server run` on `db_url` (default: a SQLite file in `folder`) with a read-write token."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "XM_SLURM_STATE_DIR": str(folder)}
    db_path = folder / "server.sqlite3"
    db_url = db_url or sqlite_url(db_path)
    created = run_cli("server", "token", "create", "--name", "tests", "--db", db_url, env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("xms_")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI,
            "server",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            db_url,
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # poll until it answers (or died)
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"{base_url}/api/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("server did not answer within 60 s")
        time.sleep(0.1)
    return Server(base_url=base_url, token=token, db_path=db_path, process=process, db_url=db_url)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("rest-server"))
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def rest_server_postgres(
    tmp_path_factory: pytest.TempPathFactory, local_postgres: LocalPostgres
) -> Iterator[Server]:
    """The same server on a fresh PostgreSQL database of the tests' PostgreSQL server."""
    server = start_server(tmp_path_factory.mktemp("rest-server-pg"), local_postgres.new_database())
    yield server
    stop_server(server)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    """Every test gets its own state folder (never ~/.local/state) and a fresh client cache."""
    folder = tmp_path / "state"
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(folder))
    for name in ("XM_SLURM_API_BACKEND", "XM_SLURM_REST_API_BASE_URL", "XM_SLURM_REST_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings.clear_cache()
    yield folder
    settings.clear_cache()


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    client: xm_slurm.api.XManagerAPI
    db_path: pathlib.Path  # the SQLite file behind the client (the server's, for rest)
    db_url: str  # the database behind the client, as a SQLAlchemy URL (PostgreSQL's for rest-postgres)

    @property
    def postgres(self) -> bool:
        return self.db_url.startswith("postgresql")


@pytest.fixture(params=["sqlite", "rest", "rest-postgres"])
def backend(
    request: pytest.FixtureRequest, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    if request.param in ("rest", "rest-postgres"):
        fixture = "rest_server" if request.param == "rest" else "rest_server_postgres"
        server: Server = request.getfixturevalue(fixture)
        monkeypatch.setenv("XM_SLURM_API_BACKEND", "rest")
        monkeypatch.setenv("XM_SLURM_REST_API_BASE_URL", server.base_url)
        monkeypatch.setenv("XM_SLURM_REST_API_TOKEN", server.token)
        return Backend(request.param, xm_slurm.api.client(), server.db_path, server.db_url)
    path = state_dir / "db.sqlite3"
    return Backend("sqlite", xm_slurm.api.client(), path, sqlite_url(path))


@contextlib.contextmanager
def hold_write_lock(backend: Backend) -> Iterator[None]:
    """Hold the database's write lock from another connection (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
    advisory lock every write transaction takes), so the store's writes wait until the block ends."""
    if backend.postgres:
        engine = sqlalchemy.create_engine(backend.db_url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({WRITE_LOCK_KEY})")
                try:
                    yield
                finally:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({WRITE_LOCK_KEY})")
        finally:
            engine.dispose()
        return
    blocker = sqlite3.connect(backend.db_path, isolation_level=None, timeout=60)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


@pytest.fixture
def api(backend: Backend) -> xm_slurm.api.XManagerAPI:
    return backend.client


@dataclasses.dataclass
class Flaky:
    """What the proxy does to the next `failures` write requests: answer `status`, after forwarding or not."""

    upstream: str
    failures: int = 0
    status: int = 503
    forward_first: bool = False
    seen: list[tuple[str, str, str | None]] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def _handler(flaky: Flaky) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = self.headers.get("Idempotency-Key")
            with flaky.lock:
                flaky.seen.append((self.command, self.path, key))
                fail = self.command != "GET" and flaky.failures > 0
                if fail:
                    flaky.failures -= 1
            if fail and not flaky.forward_first:
                return self._reply(flaky.status, b'{"detail": "flaky"}')
            forwarded = {
                k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")
            }
            if key:
                forwarded["Idempotency-Key"] = key
            upstream = httpx.request(
                self.command, flaky.upstream + self.path, content=body, headers=forwarded
            )
            if fail:  # the write happened, but the client is told it failed
                return self._reply(flaky.status, b'{"detail": "lost the answer"}')
            self._reply(upstream.status_code, upstream.content)

        def _reply(self, status: int, content: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


@pytest.fixture
def flaky(rest_server: Server) -> Iterator[tuple[Flaky, str]]:
    state = Flaky(upstream=rest_server.base_url)
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{proxy.server_address[1]}"
    proxy.shutdown()
    proxy.server_close()
