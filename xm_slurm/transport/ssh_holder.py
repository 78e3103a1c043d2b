"""The session holder: a small local process that keeps one logged-in SSH connection to a cluster open, so
that the processes of this machine (a launch script, `xm-slurm show`, `logs -f`, `wait`) answer a second
factor once per working session instead of once each.

Run as `python -m xm_slurm.transport.ssh_holder` by `ssh_session.start` (never by hand). It reads its settings
as one JSON line on stdin, logs in to the cluster (each keyboard-interactive prompt goes to its parent as a JSON
line on stdout, the answers come back on stdin: the parent has the terminal or the prompt_handler), then
listens on a unix socket in a private (0700) folder and says `{"ready": ...}`. Each client speaks SSH to it
over that socket, authenticated by the socket's folder and the peer's uid, verifying the holder's key (made at
start, its public half written beside the socket); every channel a client opens (a command, SFTP) is opened on
the one cluster connection and relayed byte for byte, exit status included. Host keys of the cluster are
verified as the transport does (strict, never off).

It exits when the cluster connection ends, or after `persist` seconds without a client, removing its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import sys
from typing import Any

import asyncssh

from xm_slurm.errors import AuthenticationError, HostKeyError, XmSlurmError
from xm_slurm.ssh_config import Endpoint, SlurmSSHConfig
from xm_slurm.transport.ssh_auth import Prompts
from xm_slurm.transport.ssh_connect import connect

log = logging.getLogger("xm_slurm.ssh_holder")
# A write to a channel the other side has just closed: dropped. Raised inside an asyncssh callback, it would
# end the whole connection, and with it every client's session.
_GONE = contextlib.suppress(BrokenPipeError, ConnectionError, OSError, asyncssh.Error)
#: Channels open at once on the cluster connection (sshd's MaxSessions is 10 by default); more wait.
UPSTREAM_CHANNELS = 9


def config_to_wire(config: SlurmSSHConfig) -> dict[str, Any]:
    """What the holder needs to log in as this machine would (local paths, never a secret)."""
    return {
        "endpoints": [list(e) for e in config.endpoints],
        "public_key": list(config.public_key) if config.public_key else None,
        "user": config.user,
        "client_keys": list(config.client_keys) if config.client_keys is not None else None,
        "known_hosts": config.known_hosts,
        "config_files": list(config.config_files) if config.config_files is not None else None,
    }


def config_from_wire(data: dict[str, Any]) -> SlurmSSHConfig:
    return SlurmSSHConfig(
        endpoints=[Endpoint(h, p) for h, p in data["endpoints"]],
        public_key=tuple(data["public_key"]) if data["public_key"] else None,  # type: ignore[arg-type]
        user=data["user"],
        client_keys=data["client_keys"],
        known_hosts=data["known_hosts"],
        config_files=data["config_files"],
    )


class _Parent:
    """The JSON-line pipe to the process that started us (prompts out, answers in)."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self.reader), sys.stdin)  # type: ignore[arg-type]

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the parent may be gone: it learns nothing more then
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    async def receive(self) -> dict[str, Any]:
        assert self.reader is not None
        line = await self.reader.readline()
        if not line:
            raise AuthenticationError("the process that started the session holder went away")
        data: dict[str, Any] = json.loads(line)
        return data

    async def answer(self, name: str, instructions: str, prompts: Prompts) -> list[str]:
        self.send(
            {"prompt": {"name": name, "instructions": instructions, "prompts": [list(p) for p in prompts]}}
        )
        reply = await self.receive()
        answers = reply.get("answers")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise AuthenticationError("no answer to the prompt")
        return answers


class _UpSession(asyncssh.SSHClientSession[bytes]):
    """The cluster side of one relayed channel: output, end of file and exit status go to the client."""

    def __init__(self, down: asyncssh.SSHServerChannel[bytes], release: Any) -> None:
        self._down = down
        self._release = release
        self._status: int | None = None
        self._signal: tuple[str, bool, str, str] | None = None

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        with _GONE:  # the client closed its channel first (a stream it stopped reading)
            self._down.write(data, datatype)

    def eof_received(self) -> bool:
        with _GONE:
            self._down.write_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self._status = status

    # Flow control the other way: a command that reads its input slowly slows the client's upload.
    def pause_writing(self) -> None:
        self._down.pause_reading()

    def resume_writing(self) -> None:
        self._down.resume_reading()

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self._signal = (signal, core_dumped, msg, lang)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        with _GONE:
            self._finish()

    def _finish(self) -> None:
        if self._signal is not None:
            self._down.exit_with_signal(*self._signal)
        elif self._status is not None:
            self._down.exit(self._status)
        else:  # no exit status: the client sees a lost channel, as it would without the holder
            self._down.close()


class _ProxySession(asyncssh.SSHServerSession[bytes]):
    """The client side of one relayed channel: an exec or a subsystem (SFTP), opened on the cluster."""

    def __init__(self, upstream: asyncssh.SSHClientConnection, slots: asyncio.Semaphore) -> None:
        self._upstream = upstream
        self._slots = slots
        self._down: asyncssh.SSHServerChannel[bytes] | None = None
        self._up: asyncssh.SSHClientChannel[bytes] | None = None
        self._pending: list[bytes] = []
        self._eof = False
        self._closed = False
        self._command: str | None = None
        self._subsystem: str | None = None
        self._opening: asyncio.Task[None] | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._down = chan

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        self._subsystem = subsystem
        return True

    def shell_requested(self) -> bool:
        return False

    def session_started(self) -> None:
        self._opening = asyncio.ensure_future(self._open())

    async def _open(self) -> None:
        assert self._down is not None
        await self._slots.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._slots.release()

        if self._closed:
            release()
            return
        try:
            up, _ = await self._upstream.create_session(
                lambda: _UpSession(self._down, release),  # type: ignore[arg-type]
                command=self._command,
                subsystem=self._subsystem,
                encoding=None,
            )
        except (asyncssh.Error, OSError) as e:
            release()
            log.warning("opening a channel on the cluster failed: %s", e)
            self._down.close()
            return
        self._up = up
        for data in self._pending:
            up.write(data)
        self._pending.clear()
        if self._eof:
            up.write_eof()
        if self._closed:
            up.close()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._up is None:
            self._pending.append(data)
            return
        with _GONE:  # the command ended first
            self._up.write(data)

    def eof_received(self) -> bool:
        self._eof = True
        if self._up is not None:
            with _GONE:
                self._up.write_eof()
        return True

    def signal_received(self, signal: str) -> None:
        if self._up is not None:
            with _GONE:
                self._up.send_signal(signal)

    # Flow control: a client that reads slowly slows the command down instead of filling our memory.
    def pause_writing(self) -> None:
        if self._up is not None:
            self._up.pause_reading()

    def resume_writing(self) -> None:
        if self._up is not None:
            self._up.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._up is not None:
            self._up.close()


class _Server(asyncssh.SSHServer):
    def __init__(self, holder: _Holder) -> None:
        self._holder = holder

    def begin_auth(self, username: str) -> bool:
        return False  # the socket's 0700 folder and the peer's uid already decided who may connect

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        return _ProxySession(self._holder.upstream, self._holder.slots)


class _Holder:
    def __init__(self, upstream: asyncssh.SSHClientConnection, persist: float) -> None:
        self.upstream = upstream
        self.slots = asyncio.Semaphore(UPSTREAM_CHANNELS)
        self._persist = persist
        self._clients = 0
        self._idle: asyncio.TimerHandle | None = None
        self.done = asyncio.Event()
        self._key = asyncssh.generate_private_key("ssh-ed25519")
        self._tasks: set[asyncio.Task[None]] = set()

    def public_key(self) -> str:
        return self._key.export_public_key().decode()

    def _arm_idle(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self._persist, self._idle_out)

    def _idle_out(self) -> None:
        log.info("no client for %g s: exiting", self._persist)
        self.done.set()

    async def serve(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._arm_idle()
        while True:
            sock, _ = await loop.sock_accept(listener)
            if not _same_user(sock):
                sock.close()
                continue
            task = asyncio.ensure_future(self._client(sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _client(self, sock: socket.socket) -> None:
        self._clients += 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        try:
            conn = await asyncssh.run_server(
                sock,
                server_factory=lambda: _Server(self),
                server_host_keys=[self._key],
                encoding=None,
                config=None,
                allow_scp=False,
                agent_forwarding=False,
                x11_forwarding=False,
                keepalive_interval=0,
            )
            await conn.wait_closed()
        except (asyncssh.Error, OSError) as e:
            log.info("a client connection ended: %s", e)
        finally:
            self._clients -= 1
            if self._clients == 0 and not self.done.is_set():
                self._arm_idle()


def _same_user(sock: socket.socket) -> bool:
    """The peer runs as our uid (Linux SO_PEERCRED; elsewhere the 0700 folder alone decides)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def _listen(path: str) -> socket.socket:
    """Bind the socket under a temporary name, then rename it over `path` (a stale one is replaced)."""
    tmp = f"{path}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        listener.bind(tmp)
    finally:
        os.umask(old)
    listener.listen(64)
    listener.setblocking(False)
    os.replace(tmp, path)
    return listener


async def _main() -> int:
    parent = _Parent()
    await parent.open()
    settings = await parent.receive()
    config = config_from_wire(settings["config"])
    if settings.get("first"):  # the endpoint that just answered the parent goes first
        first = Endpoint(*settings["first"])
        ordered = (first, *(e for e in config.endpoints if e != first))
        config = SlurmSSHConfig(
            endpoints=ordered,
            public_key=config.public_key,
            user=config.user,
            client_keys=config.client_keys,
            known_hosts=config.known_hosts,
            config_files=config.config_files,
        )
    path, key_path = settings["socket"], settings["key"]
    try:
        upstream = await connect(
            config,
            timeout=float(settings["connect_timeout"]),
            answer=parent.answer,
            prompt_timeout=float(settings["prompt_timeout"]),
        )
    except XmSlurmError as e:
        kind = (
            "hostkey"
            if isinstance(e, HostKeyError)
            else "auth"
            if isinstance(e, AuthenticationError)
            else "lost"
        )
        parent.send({"error": {"kind": kind, "message": str(e)}})
        return 1
    holder = _Holder(upstream, float(settings["persist"]))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(holder.public_key())
    listener = _listen(path)
    inode = os.stat(path).st_ino
    log.info("logged in to %s; serving %s (pid %d)", config.destination, path, os.getpid())
    parent.send({"ready": {"pid": os.getpid()}})
    # From here on nothing is said to the parent: its pipes may close at any time.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 1)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, holder.done.set)
    serving = asyncio.ensure_future(holder.serve(listener))
    closed = asyncio.ensure_future(upstream.wait_closed())
    ended = asyncio.ensure_future(holder.done.wait())
    await asyncio.wait({serving, closed, ended}, return_when=asyncio.FIRST_COMPLETED)
    log.info("ending (cluster connection %s)", "closed" if closed.done() else "still open")
    with contextlib.suppress(OSError):
        if os.stat(path).st_ino == inode:  # still ours, not a newer holder's
            os.unlink(path)
    listener.close()
    upstream.close()
    for task in (serving, closed, ended):
        task.cancel()
    return 0


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s[%(process)d] %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    sys.exit(asyncio.run(_main()))


if __name__ == "__main__":
    main()
