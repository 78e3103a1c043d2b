"""What the server checks before a route runs: the token, then the body's size (an ASGI wrapper).

The token is checked from the headers alone, before a single body byte is read: a request without a valid
token gets its 401 (a read-only token writing, its 403) at once, however large its body. A body is then
read up to `max_body_bytes` (16 MiB by default; `xm-slurm server run --max-body-mib`): a declared
Content-Length over the limit is refused before reading, and a streamed (chunked) body is counted as it
arrives and refused as soon as it passes the limit, with 413 either way. So the most one request makes the
server hold is the limit; uvicorn stops reading the socket while nothing consumes the body.

The limit leaves room for any one call of the library: the largest is a sweep's `replace_jobs` (about 600
bytes per trial: 10,000 trials are about 6 MB) and one unit's args are capped at 1,000,000 characters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from xm_slurm.api.server import tokens
from xm_slurm.api.sql import SqlClient
from xm_slurm.errors import MetadataError

MAX_BODY_BYTES = 16 * 2**20
#: The scope key where the checked token's `TokenInfo` waits for the routes.
TOKEN_KEY = "xm_slurm.token"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PUBLIC = frozenset({"/api/health"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _mib(size: int) -> str:
    return f"{size / 2**20:g} MiB"


class RequestGuard:
    """Wraps the app: authenticates `/api/*` requests from their headers, then caps their bodies."""

    def __init__(self, app: ASGIApp, *, client: SqlClient, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.client = client
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or path in _PUBLIC:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            info = await run_in_threadpool(self._lookup, headers.get("authorization", ""))
        except MetadataError as e:  # the database is busy or down: worth a retry
            await _answer(scope, receive, send, 503, str(e))
            return
        if info is None:  # missing, unknown or expired: the same answer, so nothing leaks about tokens
            await _answer(
                scope, receive, send, 401, "a valid, unexpired bearer token is required", bearer=True
            )
            return
        if scope["method"] not in READ_METHODS and not info.can_write:
            detail = f"token {info.name!r} is read-only: {scope['method']} is not allowed"
            await _answer(scope, receive, send, 403, detail)
            return
        scope[TOKEN_KEY] = info
        refusal = _declared_too_large(headers.get("content-length"), self.max_body_bytes)
        if refusal is not None:
            await _answer(scope, receive, send, *refusal)
            return
        body = await self._read_body(receive)
        if body is None:
            await _answer(scope, receive, send, 413, self._too_large("the streamed body"))
            return
        await self.app(scope, _replay(body, receive), send)

    def _lookup(self, authorization: str) -> tokens.TokenInfo | None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        return tokens.lookup(self.client, credentials.strip())

    def _too_large(self, what: str) -> str:
        return (
            f"{what} is over the server's limit of {_mib(self.max_body_bytes)} per request; send less at "
            "once (e.g. a smaller sweep), or ask the operator to raise `xm-slurm server run --max-body-mib`"
        )

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is never read)."""
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks)
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _declared_too_large(length: str | None, limit: int) -> tuple[int, str] | None:
    if length is None:
        return None
    if not length.strip().isdigit():
        return 400, f"Content-Length {length[:40]!r} is not a number of bytes"
    if int(length) > limit:
        return 413, (
            f"the request body ({int(length):,} bytes) is over the server's limit of {_mib(limit)} per "
            "request; send less at once (e.g. a smaller sweep), or ask the operator to raise "
            "`xm-slurm server run --max-body-mib`"
        )
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then the client's later messages."""
    done = False

    async def replay() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, *, bearer: bool = False
) -> None:
    # The body stays unread; uvicorn closes the connection after this answer rather than read it.
    headers = {"WWW-Authenticate": "Bearer", "Connection": "close"} if bearer else {"Connection": "close"}
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)
