"""The REST server's resources under hostile requests (finding 5 of issue 21): it checks the token before
reading a body, and caps bodies (a documented limit, 413 beyond it), so a 400 MB body costs it no memory.

Memory is the server process's peak resident size (VmHWM in /proc/PID/status), read before and after.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from xm_slurm.api.server.limits import MAX_BODY_BYTES
from xm_slurm.api.server.tokens import create_token
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage.engine import sqlite_url

BIG = 400 * 2**20  # the adversarial run's body
CHUNK = 2**20
# The body cap (16 MiB) is the most the server buffers for one request; the rest of the bound covers the
# allocator's slack and Python's objects for the answers. The unbounded server grew by over 1 GB.
MAX_GROWTH_KIB = 50 * 1024
CLI = "import sys; from xm_slurm.cli import main; sys.exit(main())"


@dataclasses.dataclass(frozen=True)
class Server:
    url: str
    token: str
    process: subprocess.Popen[bytes]

    def peak_kib(self) -> int:
        """The process's peak resident set size so far (VmHWM), in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc/PID/status")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """`xm-slurm server run` as an operator starts it (uvicorn in its own process)."""
    db = sqlite_url(tmp_path / "server.sqlite3")
    token = create_token(SqlClient.open(db), "tests")
    port = _free_port()
    command = ["server", "run", "--port", str(port), "--db", db, "--log-level", "warning"]
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, *command],
        env={**os.environ, "XM_SLURM_STATE_DIR": str(tmp_path / "state")},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the server did not answer"
            time.sleep(0.1)
    try:
        yield Server(url, token, process)
    finally:
        process.terminate()
        process.wait(timeout=15)


def _warm_up(server: Server) -> None:
    """Ordinary traffic first, so the baseline peak includes what serving normally costs."""
    auth = {"Authorization": f"Bearer {server.token}"}
    for i in range(20):
        xid = httpx.put(f"{server.url}/api/experiment", headers=auth, json={"title": f"t{i}"}).json()["xid"]
        httpx.get(f"{server.url}/api/experiment/{xid}", headers=auth)
        httpx.get(f"{server.url}/api/experiment")
    body = {"title": "x" * 900, "description": "d" * 90_000}
    httpx.put(f"{server.url}/api/experiment", headers=auth, json=body)


def _stream(server: Server, headers: dict[str, str], *, chunked: bool) -> tuple[int, str, int]:
    """Send a BIG body (declared, or chunked with no length) while a reader thread waits for the answer;
    stop sending once it came. Returns (status, answer text, bytes sent)."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG}"
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(
        f"PUT /api/experiment HTTP/1.1\r\nHost: {host}\r\n{head}Content-Type: application/json\r\n"
        f"{framing}\r\n\r\n".encode()
    )
    answer = bytearray()
    answered = threading.Event()

    def read() -> None:
        try:
            while chunk := sock.recv(65536):
                answer.extend(chunk)
                if b"\r\n\r\n" in answer:
                    answered.set()
        except OSError:
            pass
        answered.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    piece = b"x" * CHUNK
    sent = 0
    try:
        while sent < BIG and not answered.is_set():
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += CHUNK
        if chunked and not answered.is_set():
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed the connection after answering
    answered.wait(timeout=120)
    reader.join(timeout=5)
    sock.close()
    status_line, _, rest = bytes(answer).partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), f"no answer ({sent} bytes sent): {bytes(answer)[:200]!r}"
    return int(status_line.split()[1]), rest.decode(errors="replace"), sent


def test_a_400_mb_body_costs_the_server_no_memory(server: Server) -> None:
    _warm_up(server)
    before = server.peak_kib()

    status, text, sent = _stream(server, {}, chunked=False)
    assert status == 401, text
    assert sent < BIG  # answered before the body was read
    status, text, sent = _stream(server, {"Authorization": "Bearer xms_wrong"}, chunked=True)
    assert status == 401, text

    auth = {"Authorization": f"Bearer {server.token}"}
    status, text, sent = _stream(server, auth, chunked=False)
    assert status == 413, text
    assert sent < BIG and "16 MiB" in text  # refused on its declared length, and says the limit
    status, text, sent = _stream(server, auth, chunked=True)
    assert status == 413, text
    assert MAX_BODY_BYTES <= sent < BIG  # counted while streamed, refused past the limit

    after = server.peak_kib()
    growth = after - before
    print(f"server peak RSS (VmHWM): {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after")
    assert growth < MAX_GROWTH_KIB, f"the server's peak grew by {growth / 1024:.1f} MiB"
    assert httpx.get(f"{server.url}/api/experiment", headers=auth).status_code == 200  # still serving


def test_a_50_mb_title_is_refused_with_a_clear_message(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.token}"}
    response = httpx.put(f"{server.url}/api/experiment", headers=auth, json={"title": "x" * 50_000_000})
    assert response.status_code == 413
    assert "16 MiB" in response.json()["detail"]
    # Under the body cap, the field cap answers: a 2 MB title is a 422 naming the field and its limit.
    response = httpx.put(f"{server.url}/api/experiment", headers=auth, json={"title": "x" * 2_000_000})
    assert response.status_code == 422
    assert "ExperimentPatch.title" in response.text and "at most 1,000" in response.text
    assert all("x" * 100 not in s.title for s in _titles(server))


def _titles(server: Server) -> list[object]:
    from xm_slurm.api.rest import RestClient

    return list(RestClient(server.url, server.token).list_experiments(limit=1000))


def test_a_read_only_token_is_refused_before_its_body_is_read(server: Server, tmp_path: Path) -> None:
    from xm_slurm.api.server.tokens import READ_ONLY

    db = sqlite_url(tmp_path / "server.sqlite3")
    reader = create_token(SqlClient.open(db), "dashboard", scope=READ_ONLY)
    status, text, sent = _stream(server, {"Authorization": f"Bearer {reader}"}, chunked=False)
    assert status == 403 and "read-only" in text
    assert sent < BIG
