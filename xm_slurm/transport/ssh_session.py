"""One login per working session: find, or start, this machine's session holder of a cluster.

When a cluster's sshd asks for keyboard-interactive (a second factor), the transport does not log in itself:
it starts a session holder (`ssh_holder`), answers its prompts (terminal or prompt_handler), and talks SSH to
it over a unix socket; every later process of this user on this machine (`xm-slurm show`, `logs`, `wait`, the
next launch) finds the socket and uses the same login without a prompt, for as long as the holder lives:
until `XM_SLURM_SSH_PERSIST` seconds (600 by default) pass without a client, or the cluster connection ends.
`XM_SLURM_SSH_PERSIST=0` turns this off: each process then answers its own prompts.

Where: `<state dir>/ssh/` (0700; `$XM_SLURM_STATE_DIR`, else `~/.local/state/xm-slurm`), one socket per
cluster (its endpoints, user and pinned key), named by a digest: `<digest>.sock`, the holder's public key
`<digest>.pub` (the client pins it: host-key checking stays strict on the local hop too), `<digest>.log` and
`<digest>.lock` (one process starts a holder at a time; the others wait, then use it). A state folder too deep
for a socket path (~100 bytes) uses `$TMPDIR/xm-slurm-<uid>/ssh/` (0700, ours) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import asyncssh

from xm_slurm.errors import AuthenticationError, ConnectionLostError, HostKeyError, ValidationError
from xm_slurm.paths import PRIVATE_DIR_MODE, local_state_dir
from xm_slurm.ssh_config import Endpoint, SlurmSSHConfig
from xm_slurm.transport.ssh_auth import MAX_CHALLENGES, Answerer, in_daemon_thread
from xm_slurm.transport.ssh_holder import config_to_wire

PERSIST_VARIABLE = "XM_SLURM_SSH_PERSIST"
DEFAULT_PERSIST = 600.0
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the holder imports this same xm_slurm
_holders: list[subprocess.Popen[bytes]] = []  # started by this process: kept so that none is reaped early


def persist_seconds() -> float:
    """`XM_SLURM_SSH_PERSIST`: seconds a session holder outlives its last client; 0 turns holders off."""
    if not hasattr(socket, "AF_UNIX"):  # no unix sockets (Windows): each process answers its own prompts
        return 0.0
    text = os.environ.get(PERSIST_VARIABLE, "").strip()
    if not text:
        return DEFAULT_PERSIST
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValidationError(
            f"{PERSIST_VARIABLE}={text!r} must be a number of seconds >= 0 (0: no session holder)"
        )
    return value


def _private_dir(path: Path) -> Path:
    """Create `path` and any missing parent 0700 (as the store does), and check it is ours."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=PRIVATE_DIR_MODE)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ConnectionLostError(f"{path} is not a folder of this user: refusing to keep SSH sessions there")
    if stat.S_IMODE(st.st_mode) != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def paths_for(config: SlurmSSHConfig, *, create: bool = False) -> dict[str, Path]:
    """The socket, key, lock and log files of the session holder of `config`'s cluster (`create`: make
    their folder, private, if missing)."""
    state = local_state_dir()
    # The state folder is part of the name: two of them (two stores) never share a holder, even when both
    # fall back to the folder under $TMPDIR.
    where = [list(e) for e in config.endpoints], config.user, list(config.public_key or ()), str(state)
    digest = hashlib.sha256(json.dumps(where).encode()).hexdigest()[:20]
    folder = state / "ssh"
    if len(str(folder / f"{digest}.sock")) > _MAX_SOCKET_PATH:
        folder = Path(tempfile.gettempdir()) / f"xm-slurm-{os.getuid()}" / "ssh"
    if create:
        _private_dir(folder.parent)  # the state folder, or the one under $TMPDIR: ours and 0700 too
        _private_dir(folder)
    return {ext: folder / f"{digest}.{ext}" for ext in ("sock", "pub", "lock", "log")}


async def attach(config: SlurmSSHConfig, *, timeout: float = 10.0) -> asyncssh.SSHClientConnection | None:
    """A connection through this machine's live session holder of the cluster, or None (there is none)."""
    files = paths_for(config)
    if not files["sock"].exists():
        return None
    try:
        key = asyncssh.import_public_key(files["pub"].read_text())
    except (OSError, asyncssh.KeyImportError):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, str(files["sock"])), timeout)
        return await asyncio.wait_for(
            asyncssh.connect(
                sock=sock,
                host="xm-slurm-session",
                username=getpass.getuser(),
                known_hosts=([key], [], []),  # the holder's own key, and nothing else
                client_keys=None,
                agent_path=None,
                config=None,
                keepalive_interval=0,
                errors="replace",
            ),
            timeout,
        )
    except (OSError, asyncssh.Error, asyncio.TimeoutError):
        sock.close()  # a holder that has gone (a stale socket): the caller logs in and starts a new one
        return None


async def start(
    config: SlurmSSHConfig,
    answer: Answerer,
    *,
    connect_timeout: float,
    prompt_timeout: float,
    persist: float,
    first: Endpoint | None = None,
) -> asyncssh.SSHClientConnection:
    """Start the cluster's session holder (one process at a time), answer its prompts here, then attach.
    `first`: the endpoint that just answered (the holder tries it first: no second wait on a silent one)."""
    import fcntl  # POSIX, like the unix socket itself

    files = paths_for(config, create=True)
    budget = connect_timeout * (len(config.endpoints) + 1) + prompt_timeout * MAX_CHALLENGES
    fd = os.open(files["lock"], os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # Another process may be starting it (a person typing a code): wait for it, then use its login.
        await asyncio.wait_for(in_daemon_thread(lambda: fcntl.flock(fd, fcntl.LOCK_EX)), budget)
        conn = await attach(config)
        if conn is None:
            await _spawn(
                config,
                answer,
                files,
                settings={
                    "connect_timeout": connect_timeout,
                    "prompt_timeout": prompt_timeout,
                    "persist": persist,
                    "first": list(first) if first is not None else None,
                },
                budget=budget,
            )
            conn = await attach(config)
        if conn is None:
            raise ConnectionLostError(
                f"the SSH session holder of {config.destination} logged in but does not answer on "
                f"{files['sock']}; see {files['log']}"
            )
        return conn
    except asyncio.TimeoutError:
        raise ConnectionLostError(
            f"waited {budget:g} s for another process to log in to {config.destination} (it holds "
            f"{files['lock']}); nothing ran on the cluster"
        ) from None
    finally:
        os.close(fd)  # releases the lock


def _popen_holder(log: Path) -> subprocess.Popen[bytes]:
    path = os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xm_slurm.transport.ssh_holder"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_fd,
            start_new_session=True,  # no terminal, and a Ctrl-C of this process does not end it
            cwd="/",
            env={**os.environ, "PYTHONPATH": path},
        )
    finally:
        os.close(log_fd)
    _holders.append(proc)
    return proc


async def _spawn(
    config: SlurmSSHConfig,
    answer: Answerer,
    files: dict[str, Path],
    *,
    settings: dict[str, Any],
    budget: float,
) -> None:
    proc = _popen_holder(files["log"])
    assert proc.stdin is not None and proc.stdout is not None
    try:
        await asyncio.wait_for(_handshake(config, answer, proc.stdin, proc.stdout, files, settings), budget)
    except BaseException:
        with contextlib.suppress(OSError):
            proc.terminate()
        raise
    finally:
        proc.stdin.close()
        proc.stdout.close()


async def _handshake(
    config: SlurmSSHConfig,
    answer: Answerer,
    to_holder: IO[bytes],
    from_holder: IO[bytes],
    files: dict[str, Path],
    settings: dict[str, Any],
) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), from_holder)

    def send(message: dict[str, Any]) -> None:
        to_holder.write((json.dumps(message) + "\n").encode())
        to_holder.flush()

    try:
        send(
            {
                "config": config_to_wire(config),
                "socket": str(files["sock"]),
                "key": str(files["pub"]),
                **settings,
            }
        )
        while line := await reader.readline():
            message = json.loads(line)
            if "prompt" in message:
                p = message["prompt"]
                prompts = [(str(text), bool(echo)) for text, echo in p["prompts"]]
                send({"answers": await answer(p["name"], p["instructions"], prompts)})
            elif "ready" in message:
                return
            elif "error" in message:
                kind = message["error"].get("kind")
                error = {"hostkey": HostKeyError, "auth": AuthenticationError}.get(kind, ConnectionLostError)
                raise error(str(message["error"].get("message")))
        raise ConnectionLostError(
            f"the SSH session holder of {config.destination} exited before logging in; see {files['log']}"
        )
    finally:
        transport.close()
