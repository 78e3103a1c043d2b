"""A TCP proxy that cuts its connections on demand (test infrastructure for SSH faults).

It runs its own asyncio loop in a thread, so a cut never waits for the test's event loop (which runs the SSH
client). `cut_after(n)` arms it: once `n` more bytes have gone from clients to the server, it forwards up to
that byte and aborts every open connection (a TCP RST by default); `cut_now()` aborts them at once. New
connections are forwarded normally after a cut, so a client can reconnect through the same proxy.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from types import TracebackType


class CutProxy:
    def __init__(self, target_host: str, target_port: int, *, reset: bool = True) -> None:
        self.target = (target_host, target_port)
        self.reset = reset  # abort with a TCP RST (True) or a plain FIN (False)
        self.port = 0
        self.accepted = 0  # connections accepted so far
        self.cuts = 0  # how many times the open connections were cut
        self._armed: int | None = None  # bytes still allowed through before the next cut
        self._rearm: tuple[int, int] = (0, 0)  # (bytes, cuts still to come after the next one)
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="cut-proxy", daemon=True)

    def __enter__(self) -> CutProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start listening"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # --- control (from any thread) ---

    def cut_after(self, n: int, *, times: int = 1) -> None:
        """Cut every open connection once `n` more client-to-server bytes have been forwarded; with
        `times` > 1, count again from each cut and cut that many times in all (a fault that persists)."""
        armed = threading.Event()

        def arm() -> None:
            self._armed, self._rearm = n, (n, times - 1)
            armed.set()

        self._loop.call_soon_threadsafe(arm)
        assert armed.wait(10), "the proxy loop did not answer"  # armed before the caller sends a byte

    def cut_now(self) -> None:
        self._loop.call_soon_threadsafe(self._cut)

    # --- the proxy loop ---

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            if self.reset and sock is not None:
                # SO_LINGER with a zero timeout: the close sends RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._writers.clear()

    def _cut(self) -> None:
        n, left = self._rearm
        self._armed, self._rearm = (n, (n, left - 1)) if left > 0 else (None, (0, 0))
        self._abort_all()
        self.cuts += 1

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
        self._abort_all()  # the pumps see their sockets closed and end on their own
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        await asyncio.gather(
            self._pump(client_r, server_w, to_server=True), self._pump(server_r, client_w, to_server=False)
        )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, to_server: bool
    ) -> None:
        try:
            while (data := await reader.read(65536)) and not writer.transport.is_closing():
                if to_server and self._armed is not None:
                    if len(data) >= self._armed:
                        writer.write(data[: self._armed])
                        self._cut()
                        return
                    self._armed -= len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            # One side ended or failed: the other goes too, as it would through a real network cut.
            self._writers.discard(writer)
            writer.transport.abort()
