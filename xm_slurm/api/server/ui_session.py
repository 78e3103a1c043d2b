"""Dashboard sessions: a person posts a token once on the login page; the browser then holds a cookie.

The cookie holds a random session id, never the token: the server keeps (session id -> the token's SHA-256
digest) in memory, and checks the digest against the token table on every page, so a token revoked or
expired since the login ends its sessions at once (and the login page says which). Sessions are lost when
the server restarts (one login again). The cookie is HttpOnly, SameSite=Strict, and Secure over https.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import threading
import time

import sqlalchemy as sa

from xm_slurm.api.server import tokens
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage import schema as t

COOKIE = "xms_session"
#: A session unused this long is forgotten (seconds).
IDLE_SECONDS = 12 * 3600
#: Why the login page is shown (a fixed word in the URL, never anything of the token).
REASONS = {
    "revoked": "Your token was revoked: sign in with a current token.",
    "expired": "Your token has expired: sign in with a current token.",
    "unknown": "That token is not known to this server (revoked, or mistyped).",
    "signed-out": "Signed out.",
    "login": "Sign in with a token from `xm-slurm server token create` (a read-only token is enough).",
}


@dataclasses.dataclass
class _Session:
    token_sha256: str
    last_used: float


class Sessions:
    """Open sessions of one server process (thread-safe: FastAPI runs handlers in a thread pool)."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, _Session] = {}
        self._idle = idle_seconds

    def open(self, token: str) -> str:
        """A new session for `token` (already checked); returns its id, the cookie's value."""
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._forget_idle()
            self._by_id[session_id] = _Session(tokens.hash_token(token), time.monotonic())
        return session_id

    def close(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(session_id, None)

    def digest(self, session_id: str) -> str | None:
        """The token digest behind a live session (and marks it used), or None."""
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            now = time.monotonic()
            if now - session.last_used > self._idle:
                del self._by_id[session_id]
                return None
            session.last_used = now
            return session.token_sha256

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._by_id.items() if now - s.last_used > self._idle]:
            del self._by_id[key]


def check_digest(client: SqlClient, digest: str) -> tokens.TokenInfo | str:
    """The token a session stands for, or why it no longer counts ("revoked" or "expired")."""
    c = t.api_tokens.c
    with client.reading() as conn:
        row = conn.execute(sa.select(c.name, c.scope, c.expires_at).where(c.token_sha256 == digest)).first()
    if row is None:
        return "revoked"
    expires_at = row.expires_at
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=dt.timezone.utc)  # SQLite gives back naive UTC
    if expires_at is not None and expires_at <= dt.datetime.now(dt.timezone.utc):
        return "expired"
    return tokens.TokenInfo(name=row.name, scope=row.scope, expires_at=expires_at)


def check_token(client: SqlClient, token: str) -> tokens.TokenInfo | str:
    """A token typed on the login page: its info, or "unknown" / "expired"."""
    found = check_digest(client, tokens.hash_token(token))
    return "unknown" if found == "revoked" else found
