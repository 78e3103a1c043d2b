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


def is_valid(client: SqlClient, token: str) -> bool:
    return lookup(client, token) is not None
