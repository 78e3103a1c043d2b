"""Bearer tokens of the REST server: random, shown once, stored only as their SHA-256 digest.

Each token has a scope and may expire:
* `read-write` (default): every route;
* `read-only`: GET routes only (dashboards, tools that inspect experiments); writes get 403.
An expired token is refused like an unknown one (401).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets

import sqlalchemy as sa

from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage import schema as t
from xm_slurm.errors import ValidationError

TOKEN_PREFIX = "xms_"
READ_WRITE = "read-write"
READ_ONLY = "read-only"
SCOPES = (READ_WRITE, READ_ONLY)


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    name: str
    scope: str
    expires_at: dt.datetime | None

    @property
    def can_write(self) -> bool:
        return self.scope == READ_WRITE


@dataclasses.dataclass(frozen=True)
class TokenRecord:
    """A stored token as `token list` shows it (the token itself is never stored)."""

    id: int
    name: str
    scope: str
    created_at: dt.datetime
    expires_at: dt.datetime | None

    def expired(self, now: dt.datetime | None = None) -> bool:
        now = dt.datetime.now(dt.timezone.utc) if now is None else now
        return self.expires_at is not None and self.expires_at <= now


def hash_token(token: str) -> str:
    # A token has 256 random bits, so a plain (unsalted) SHA-256 digest cannot be brute-forced.
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite gives back naive datetimes; they were stored in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def create_token(
    client: SqlClient, name: str = "", *, scope: str = READ_WRITE, expires_in: dt.timedelta | None = None
) -> str:
    """Create a token and return it; only its digest is stored, so this is the one time it is visible."""
    if scope not in SCOPES:
        raise ValidationError(f"token scope {scope!r} must be one of {', '.join(SCOPES)}")
    if expires_in is not None and (not isinstance(expires_in, dt.timedelta) or expires_in <= dt.timedelta(0)):
        raise ValidationError(f"expires_in={expires_in!r} must be a positive datetime.timedelta (or None)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = dt.datetime.now(dt.timezone.utc)
    with client.transaction() as conn:
        conn.execute(
            sa.insert(t.api_tokens).values(
                name=name,
                token_sha256=hash_token(token),
                created_at=now,
                expires_at=None if expires_in is None else now + expires_in,
                scope=scope,
            )
        )
    return token


def lookup(client: SqlClient, token: str) -> TokenInfo | None:
    """What `token` may do, or None if it is unknown or expired."""
    columns = t.api_tokens.c
    with client.reading() as conn:
        query = sa.select(columns.name, columns.scope, columns.expires_at).where(
            columns.token_sha256 == hash_token(token)
        )
        row = conn.execute(query).first()
    if row is None:
        return None
    expires_at = None if row.expires_at is None else _utc(row.expires_at)
    if expires_at is not None and expires_at <= dt.datetime.now(dt.timezone.utc):
        return None
    return TokenInfo(name=row.name, scope=row.scope, expires_at=expires_at)


def list_tokens(client: SqlClient) -> list[TokenRecord]:
    """Every stored token, oldest first (expired ones included, until revoked)."""
    c = t.api_tokens.c
    with client.reading() as conn:
        rows = conn.execute(sa.select(c.id, c.name, c.scope, c.created_at, c.expires_at).order_by(c.id)).all()
    return [
        TokenRecord(
            id=row.id,
            name=row.name,
            scope=row.scope,
            created_at=_utc(row.created_at),
            expires_at=None if row.expires_at is None else _utc(row.expires_at),
        )
        for row in rows
    ]


def revoke_token(client: SqlClient, token_id: int) -> TokenRecord:
    """Delete the token with this id (from `list_tokens`); the server refuses it from its next request on.

    Raises `ValidationError` naming the id when there is no such token.
    """
    if isinstance(token_id, bool) or not isinstance(token_id, int):
        raise ValidationError(f"token id {token_id!r} must be an integer (see `xm-slurm server token list`)")
    known = {record.id: record for record in list_tokens(client)}
    if token_id not in known:
        ids = ", ".join(map(str, sorted(known))) or "none"
        raise ValidationError(f"no token has id {token_id} (ids: {ids}; see `xm-slurm server token list`)")
    with client.transaction() as conn:
        conn.execute(sa.delete(t.api_tokens).where(t.api_tokens.c.id == token_id))
    return known[token_id]


def is_valid(client: SqlClient, token: str) -> bool:
    return lookup(client, token) is not None
